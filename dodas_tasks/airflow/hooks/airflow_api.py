"""This Airflow's own REST API as seen from tasks and triggers, through the `dodas_api` http connection.

Tasks use it to re-parse the deployment DAG file at once and to write their run's note (the Task SDK cannot); the
elasticity trigger uses it to start a deployment run itself, so a scale-out does not wait for a worker slot to
resume the deferred task first.
Without the connection every caller falls back to what works without it (periodic parse, TriggerDagRunOperator).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from airflow.sdk import BaseHook

from dodas_tasks.airflow.rest_api import AirflowApiError, AirflowRestClient

log = logging.getLogger(__name__)
API_CONN_ID = "dodas_api"
TIMEOUT_S = 10.0


class AirflowApiHook(BaseHook):
    """The REST API as a connection (conn_type http): host, port, schema, and the user tasks act as."""

    conn_name_attr = "api_conn_id"
    default_conn_name = API_CONN_ID
    conn_type = "http"
    hook_name = "DODAS: this Airflow's REST API"

    def __init__(self, api_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.api_conn_id = api_conn_id

    def get_conn(self) -> AirflowRestClient:
        return client_from_connection(self.get_connection(self.api_conn_id))


def rest_client() -> AirflowRestClient | None:
    """The REST client from the `dodas_api` connection; None without it."""
    try:
        return AirflowApiHook().get_conn()
    except Exception:
        return None


def note_run(dag_run: Any, note: str) -> None:
    """Write `note` on the task's DAG run: the UI shows it on the run, REST callers read it with the run. The
    Task SDK has no call for it, so it goes through the REST API; without the connection it is only logged."""
    log.info("%s", note)
    api = rest_client()
    if api is None or dag_run is None:
        return
    try:
        api.set_run_note(dag_run.dag_id, dag_run.run_id, note)
    except (AirflowApiError, httpx.HTTPError) as exc:  # a note is a courtesy: never fail the task for it
        log.warning("could not write the run's note: %s", exc)


async def arest_client() -> AirflowRestClient | None:
    """The same from a trigger (the triggerer answers connection lookups asynchronously)."""
    try:
        return client_from_connection(await BaseHook.aget_connection(API_CONN_ID))
    except Exception:
        return None


def client_from_connection(conn: Any) -> AirflowRestClient:
    return AirflowRestClient(
        f"{conn.schema or 'http'}://{conn.host}:{conn.port}", conn.login or "", conn.password or "", timeout=TIMEOUT_S
    )
