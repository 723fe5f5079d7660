"""Airflow's REST API over httpx: the one client the dev stack, the CLI, tasks and triggers use.

No Airflow import here: the dev stack and the CLI drive an Airflow they do not load. Tasks and triggers build it
from the `dodas_api` connection (hooks/airflow_api.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx
from tenacity import retry, retry_if_result, stop_after_attempt, wait_exponential

FINISHED_RUN_STATES = frozenset({"success", "failed"})
NOTE_MAX_LENGTH = 1000  # Airflow's limit on a DAG run's note


class AirflowApiError(RuntimeError):
    """A REST call answered with an error status (`status`), or a wait ran out of time (`status` None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _database_busy(response: httpx.Response) -> bool:
    """On SQLite a busy database fails the request's transaction (rolled back, nothing created) with a 500
    "Database error"; the same request moments later goes through."""
    return response.status_code == 500 and "Database error" in response.text


class AirflowRestClient:
    """One Airflow's REST API as one user: a JWT from POST /auth/token, kept until a 401 (repr hides the password)."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self.timeout = timeout
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"AirflowRestClient({self.base_url!r}, username={self.username!r})"

    # ---------------------------------------------------------------- calls

    def api(self, method: str, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """Call the REST API (`path` like /api/v2/dags); returns the decoded JSON body or None.

        A busy database (see _database_busy) is retried with backoff; an expired token is renewed once.
        """
        response = self._send(method, path, json, params)
        if response.status_code >= 400:
            raise AirflowApiError(
                f"{method} {path} returned HTTP {response.status_code}: {response.text[:500]}", response.status_code
            )
        return response.json() if response.content else None

    def health(self) -> dict[str, Any]:
        """GET /api/v2/monitor/health (no auth needed)."""
        response = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5.0)
        response.raise_for_status()
        return response.json()

    def trigger_dag(self, dag_id: str, conf: Mapping[str, Any] | None = None, note: str | None = None) -> str:
        """Create a manual run (logical_date null; queued behind a running one when max_active_runs=1)."""
        return str(self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=_run_body(conf, note))["dag_run_id"])

    async def atrigger_dag(self, dag_id: str, conf: Mapping[str, Any] | None = None, note: str | None = None) -> str:
        """trigger_dag from a trigger's event loop (one attempt: the caller falls back when it fails)."""
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            if self._token is None:
                reply = await client.post(f"{self.base_url}/auth/token", json=self._login())
                self._token = self._access_token(reply)
            response = await client.post(
                f"{self.base_url}/api/v2/dags/{dag_id}/dagRuns",
                json=_run_body(conf, note),
                headers=self._auth(),
            )
        if response.status_code >= 400:
            status = response.status_code
            raise AirflowApiError(f"POST /api/v2/dags/{dag_id}/dagRuns returned HTTP {status}", status)
        return str(response.json()["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """One DAG run as the REST API shows it (state, note, conf, dates)."""
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def run_state(self, dag_id: str, run_id: str) -> str:
        """Current state of one DAG run (queued, running, success, failed)."""
        return self.run(dag_id, run_id)["state"]

    def set_run_note(self, dag_id: str, run_id: str, note: str) -> None:
        """Set a DAG run's note (cut to Airflow's 1000 characters), shown on the run in the UI."""
        if len(note) > NOTE_MAX_LENGTH:
            note = note[: NOTE_MAX_LENGTH - 1] + "…"
        self.api(
            "PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", json={"note": note}, params={"update_mask": "note"}
        )

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300.0, poll: float = 0.5) -> str:
        """Poll a run until success or failed; returns that state, AirflowApiError on timeout."""
        deadline = time.monotonic() + timeout
        state = self.run_state(dag_id, run_id)
        while state not in FINISHED_RUN_STATES:
            if time.monotonic() > deadline:
                raise AirflowApiError(f"run {run_id} of {dag_id} still {state!r} after {timeout:.0f} s")
            time.sleep(poll)
            state = self.run_state(dag_id, run_id)
        return state

    def dag_exists(self, dag_id: str) -> bool:
        """True when the DAG is in the metadata DB (has been parsed at least once)."""
        try:
            self.api("GET", f"/api/v2/dags/{dag_id}")
        except AirflowApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def wait_for_dag(
        self, dag_id: str, timeout: float = 120.0, reparse_via: str | None = None, poll: float = 0.5
    ) -> None:
        """Poll GET /api/v2/dags/{dag_id} until the DAG exists.

        `reparse_via`: id of a DAG already known from the same (generator) file; its file is then re-parsed
        immediately and again every 5 s, so a new row shows up in about a second instead of waiting
        for min_file_process_interval. Brand-new files are found by the bundle refresh.
        """
        deadline = time.monotonic() + timeout
        next_reparse = time.monotonic()
        while not self.dag_exists(dag_id):
            now = time.monotonic()
            if now > deadline:
                raise AirflowApiError(f"DAG {dag_id!r} not parsed within {timeout:.0f} s; see the dag-processor's log")
            if reparse_via is not None and now >= next_reparse:
                self.reparse_file_of(reparse_via)
                next_reparse = now + 5.0
            time.sleep(poll)

    def reparse_file_of(self, dag_id: str) -> None:
        """Ask the dag-processor to re-parse the file that defines `dag_id` now (PUT /api/v2/parseDagFile).

        The file token comes from GET /api/v2/dags/{dag_id}/details (`file_token`); it is signed with
        [api] secret_key and only works for files the DB already knows.
        A 409 means a request for that file is already queued (another caller asked first, e.g. the submit DAG
        and `dodas demo` at once): the file will be parsed, which is all that was asked.
        """
        token = self.api("GET", f"/api/v2/dags/{dag_id}/details")["file_token"]
        try:
            self.api("PUT", f"/api/v2/parseDagFile/{token}")
        except AirflowApiError as exc:
            if exc.status != 409:
                raise

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """Value of one XCom entry of a task instance."""
        entry = self.api(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"map_index": map_index},
        )
        return entry["value"]

    # ---------------------------------------------------------------- internals

    def _login(self) -> dict[str, str]:
        return {"username": self.username, "password": self._password}

    def _access_token(self, reply: httpx.Response) -> str:
        if not reply.is_success:
            status = reply.status_code
            raise AirflowApiError(f"POST /auth/token as {self.username!r} returned HTTP {status}", status)
        return str(reply.json()["access_token"])

    def _auth(self) -> dict[str, str]:
        if self._token is None:
            reply = httpx.post(f"{self.base_url}/auth/token", json=self._login(), timeout=self.timeout)
            self._token = self._access_token(reply)
        return {"Authorization": f"Bearer {self._token}"}

    @retry(
        retry=retry_if_result(_database_busy),
        wait=wait_exponential(multiplier=0.5),  # 0.5 s, 1 s, 2 s ...
        stop=stop_after_attempt(6),
        retry_error_callback=lambda state: state.outcome.result(),  # still busy: api() reports the last answer
    )
    def _send(self, method: str, path: str, json: Any, params: Mapping[str, Any] | None) -> httpx.Response:
        response = self._request(method, path, json, params)
        if response.status_code == 401:  # expired, or the secret changed: log in again once
            self._token = None
            response = self._request(method, path, json, params)
        return response

    def _request(self, method: str, path: str, json: Any, params: Mapping[str, Any] | None) -> httpx.Response:
        return httpx.request(
            method, f"{self.base_url}{path}", json=json, params=params, headers=self._auth(), timeout=self.timeout
        )


def _run_body(conf: Mapping[str, Any] | None, note: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
    if note:
        body["note"] = note
    return body
