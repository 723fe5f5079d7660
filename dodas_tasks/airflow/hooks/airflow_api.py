"""This Airflow's own REST API as seen from tasks and triggers, through the `dodas_api` http connection.

Tasks use it to re-parse the deployment DAG file at once; the elasticity trigger uses it to start a deployment
run itself, so a scale-out does not wait for a worker slot to resume the deferred task first.
Without the connection every caller falls back to what works without it (periodic parse, TriggerDagRunOperator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from airflow.sdk import BaseHook

API_CONN_ID = "dodas_api"
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class AirflowApi:
    """Base URL and the user tasks act as (its password never leaves this object: repr hides it)."""

    base: str
    login: str
    password: str

    def __repr__(self) -> str:
        return f"AirflowApi({self.base!r}, login={self.login!r})"

    @classmethod
    def _of(cls, conn: Any) -> AirflowApi:
        return cls(f"{conn.schema or 'http'}://{conn.host}:{conn.port}", conn.login or "", conn.password or "")

    @classmethod
    def connect(cls) -> AirflowApi | None:
        try:
            return cls._of(BaseHook.get_connection(API_CONN_ID))
        except Exception:
            return None

    @classmethod
    async def aconnect(cls) -> AirflowApi | None:
        """The same from a trigger (the triggerer answers connection lookups asynchronously)."""
        try:
            return cls._of(await BaseHook.aget_connection(API_CONN_ID))
        except Exception:
            return None

    def _credentials(self) -> dict[str, str]:
        return {"username": self.login, "password": self.password}

    def _headers(self, client: httpx.Client) -> dict[str, str]:
        reply = client.post(f"{self.base}/auth/token", json=self._credentials())
        reply.raise_for_status()
        return {"Authorization": f"Bearer {reply.json()['access_token']}"}

    def reparse_file_of(self, dag_id: str) -> None:
        """Ask the DAG processor to parse the file that defines `dag_id` now."""
        with httpx.Client(timeout=TIMEOUT_S) as client:
            headers = self._headers(client)
            details = client.get(f"{self.base}/api/v2/dags/{dag_id}/details", headers=headers)
            details.raise_for_status()
            token = details.json()["file_token"]
            client.put(f"{self.base}/api/v2/parseDagFile/{token}", headers=headers).raise_for_status()

    async def atrigger_run(self, dag_id: str, note: str) -> str:
        """Create a run of `dag_id` (queued behind a running one: max_active_runs=1); returns its run id."""
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            reply = await client.post(f"{self.base}/auth/token", json=self._credentials())
            reply.raise_for_status()
            headers = {"Authorization": f"Bearer {reply.json()['access_token']}"}
            run = await client.post(
                f"{self.base}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "note": note}, headers=headers
            )
            run.raise_for_status()
            return str(run.json()["dag_run_id"])
