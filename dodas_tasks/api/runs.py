"""How a recorded request reaches its deployment DAG: the API records it in the store, then asks Airflow to show a
new deployment's DAG at once (its first run starts by itself) or to queue the next run of an existing one.

Both happen after the answer is sent, through this Airflow's REST API as dodas_submit's publish step does; if
Airflow cannot be reached the request stays recorded and the next run (or the periodic parse) applies it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)


class RunStarter(Protocol):
    async def publish(self, deployment_id: str) -> None:
        """Make a new deployment's DAG appear now rather than at the next periodic parse."""

    async def start(self, deployment_id: str, note: str) -> None:
        """Queue the next run of the deployment's DAG (it starts when the active one, if any, ends)."""


class AirflowRuns:
    """Through the `dodas_api` connection (the REST client tasks use)."""

    async def publish(self, deployment_id: str) -> None:
        from dodas_tasks.airflow.dag_factories.user_requests import publish_deployment_dag
        from dodas_tasks.naming import deployment_dag_id

        info = {"deployment_id": deployment_id, "dag_id": deployment_dag_id(deployment_id)}
        try:
            await run_in_threadpool(publish_deployment_dag, info)
        except Exception as exc:
            log.warning("deployment %s: no re-parse (%s); it appears at the next periodic one", deployment_id, exc)

    async def start(self, deployment_id: str, note: str) -> None:
        from dodas_tasks.airflow.hooks.airflow_api import rest_client
        from dodas_tasks.naming import deployment_dag_id

        api = await run_in_threadpool(rest_client)
        if api is None:
            log.warning("no dodas_api connection: deployment %s waits for its next run", deployment_id)
            return
        try:
            run_id = await api.atrigger_dag(deployment_dag_id(deployment_id), note=note)
        except Exception as exc:  # e.g. the DAG not parsed yet: its first run will apply the request
            log.warning("deployment %s: no run started (%s); the next run applies the request", deployment_id, exc)
            return
        log.info("deployment %s: run %s queued (%s)", deployment_id, run_id, note)
