"""`dodas demo` and the CLI's view of a running Airflow: start it if needed, submit, watch, undeploy."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dodas_tasks.deploy.orchestrator_view import EventLike
from dodas_tasks.devstack.local_airflow import AirflowStack, StackError
from dodas_tasks.naming import SCALE_DAG_ID, SUBMIT_DAG_ID, UNDEPLOY_DAG_ID
from dodas_tasks.store import DeploymentStatus, Store

REPO = Path(__file__).resolve().parents[1]
DONE = {
    DeploymentStatus.CREATE_COMPLETE,
    DeploymentStatus.CREATE_FAILED,
    DeploymentStatus.UPDATE_COMPLETE,
    DeploymentStatus.UPDATE_FAILED,
    DeploymentStatus.DELETE_COMPLETE,
    DeploymentStatus.DELETE_FAILED,
}
Echo = Callable[[str], None]


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or REPO / ".airflow").resolve()


def stack() -> AirflowStack:
    """The Airflow this CLI drives: AIRFLOW_HOME (default <repo>/.airflow), UI on 127.0.0.1:DODAS_AIRFLOW_PORT."""
    home = airflow_home()
    os.environ["AIRFLOW_HOME"] = str(home)  # the store lives under it: CLI and Airflow must agree
    return AirflowStack(home, REPO / "dags", REPO / "plugins", port=int(os.environ.get("DODAS_AIRFLOW_PORT", "18080")))


def ensure_running(s: AirflowStack, echo: Echo) -> bool:
    """Start Airflow unless it runs; True when this call started it."""
    if s.is_running():
        return False
    echo(f"starting Airflow in {s.airflow_home} (SQLite, LocalExecutor, local cloud) ...")
    s.migrate()
    s.start()
    user, password = s.admin_credentials()
    echo(f"Airflow UI: {s.ui_url()}  (login {user} / {password})")
    return True


def submit(s: AirflowStack, conf: dict[str, Any], echo: Echo) -> str:
    """Through the dodas_submit DAG (conf: template or template_text, inputs, cloud), as a UI or REST user
    would; returns the deployment id once its DAG exists. A refusal raises StackError with the run's reason."""
    run_id = request(s, SUBMIT_DAG_ID, conf, timeout=300)
    info = s.rest.xcom(SUBMIT_DAG_ID, run_id, "register")
    echo(f"deployment {info['deployment_id']} registered (DAG {info['dag_id']})")
    s.rest.wait_for_dag(info["dag_id"], timeout=120, reparse_via=SUBMIT_DAG_ID)
    return str(info["deployment_id"])


def delegate(s: AirflowStack, access_token: str) -> str:
    """Delegate the user's IAM access token at the api-server (POST /dodas/orchestrator/delegations); returns the
    one-time handle a submission names instead of the token, which so never enters a DAG run's conf."""
    import httpx

    from dodas_tasks.deploy.orchestrator_view import API_PREFIX

    reply = httpx.post(
        f"{s.rest.base_url}{API_PREFIX}/delegations",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=60,
    )
    if reply.status_code != 201:
        json_body = reply.headers.get("content-type", "").startswith("application/json")
        detail = reply.json().get("message", "") if json_body else reply.text[:200]
        raise StackError(f"the IAM token was not delegated ({reply.status_code}): {detail}")
    return str(reply.json()["delegation"])


def request(s: AirflowStack, dag_id: str, conf: dict[str, Any], timeout: float = 120) -> str:
    """Run one of the request DAGs and return its run id once it succeeded; when it failed, StackError with the
    reason the run's note gives (the request tasks write it there)."""
    run_id = s.rest.trigger_dag(dag_id, conf)
    if s.rest.wait_for_run(dag_id, run_id, timeout=timeout) != "success":
        note = s.rest.run(dag_id, run_id).get("note")
        raise StackError(note or f"{dag_id} run {run_id} failed; its task logs are under {s.logs_dir}")
    return run_id


def last_event_id(deployment_id: str) -> int:
    with Store() as store:
        events = store.list_events(deployment_id, limit=1)
    return events[-1].id if events else 0


def watch(deployment_id: str, echo: Echo, until: set[str] = DONE, since: int = 0, timeout: float = 1800) -> str:
    """Print the deployment's events after `since` as they happen; return once a status change after `since`
    has brought it to one of `until` (so an old UPDATE_COMPLETE does not end the watch of a new update)."""
    deadline = time.monotonic() + timeout
    last, changed = since, False
    with Store() as store:
        while True:
            for event in store.list_events(deployment_id, limit=200, after_id=last):
                echo(event_line(event))
                last, changed = event.id, changed or event.kind == "status"
            status = store.get_deployment(deployment_id).status
            if changed and status in until:
                return status
            if time.monotonic() > deadline:
                raise StackError(f"deployment {deployment_id} still {status} after {timeout:.0f} s")
            time.sleep(0.5)


def event_line(event: EventLike) -> str:
    """How the CLI shows one event of a deployment's history (its time in UTC)."""
    return f"  {event.time:%H:%M:%S} {event.kind:<10} {event.message}"


def undeploy(s: AirflowStack, deployment_id: str) -> None:
    """Through the dodas_undeploy DAG; StackError with the reason when refused."""
    request(s, UNDEPLOY_DAG_ID, {"deployment_id": deployment_id})


def scale(s: AirflowStack, deployment_id: str, group: str, count: int) -> None:
    """Through the dodas_scale DAG; StackError with the reason when refused."""
    request(s, SCALE_DAG_ID, {"deployment_id": deployment_id, "group": group, "count": count})
