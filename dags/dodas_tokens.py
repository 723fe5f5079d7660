"""dodas_token_refresh: every 6 hours, keep each live deployment's refresh token alive and mark the dead ones."""

from __future__ import annotations

from dodas_tasks.airflow.dag_factories.maintenance import token_refresh_dag

dodas_token_refresh = token_refresh_dag()
