"""DAG factories: every DODAS DAG is built here; the files in dags/ only call them.

START: the start date all of them share (in the past, no catch-up: it only anchors schedules).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import DAG

START = datetime(2024, 1, 1, tzinfo=UTC)


def service_dag(dag_id: str, *, tags: tuple[str, ...] = (), **kwargs: Any) -> DAG:
    """A DAG of the service itself (requests, healing, maintenance, elasticity): running from the moment it is
    parsed, never catching up, tagged `dodas`; `kwargs` are the DAG's own arguments."""
    return DAG(
        dag_id=dag_id,
        start_date=START,
        catchup=False,
        is_paused_upon_creation=False,
        tags=["dodas", *tags],
        **kwargs,
    )
