"""DAG factories: every DODAS DAG is built here; the files in dags/ only call them.

START: the start date all of them share (in the past, no catch-up: it only anchors schedules).
"""

from datetime import UTC, datetime

START = datetime(2024, 1, 1, tzinfo=UTC)
