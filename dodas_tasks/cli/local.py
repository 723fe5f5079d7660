"""The deployment commands on this machine: the store under AIRFLOW_HOME for what they read, the request DAGs of
the Airflow `dodas demo` runs for what they change (as a UI or REST user would)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dodas_tasks import demo
from dodas_tasks.airflow.rest_api import AirflowApiError
from dodas_tasks.cli.app import fail
from dodas_tasks.cli.backends import Echo, Submission
from dodas_tasks.deploy.orchestrator_resources import ResourceBody, deployment_resources
from dodas_tasks.deploy.orchestrator_view import DeploymentResource, LogEntry, deployment_resource
from dodas_tasks.devstack.local_airflow import AirflowStack, StackError
from dodas_tasks.store import DeploymentIdError, DeploymentNotFoundError, Store

DEFAULT_CLOUD = "local"


class LocalBackend:
    """`token` gives the user's IAM access token, asked only by a submission (which delegates it)."""

    def __init__(self, token: Callable[[], str | None]) -> None:
        self._token = token
        self._stack = demo.stack()  # sets AIRFLOW_HOME: the store lives under it, CLI and Airflow must agree

    # -- reading the store -----------------------------------------------------------------------------------

    def deployments(self, include_deleted: bool) -> list[DeploymentResource]:
        with Store() as store:
            return [deployment_resource(d) for d in store.list_deployments(live_only=not include_deleted)]

    def deployment(self, reference: str) -> DeploymentResource:
        with Store() as store:
            try:
                deployment_id = store.resolve_id(reference)
            except DeploymentNotFoundError as exc:
                fail(f"{exc}; `dodas list --all` shows them")
            except DeploymentIdError as exc:
                fail(str(exc))
            return deployment_resource(store.get_deployment(deployment_id))

    def resources(self, deployment_id: str, node_type: str | None = None) -> list[ResourceBody]:
        with Store() as store:
            found = deployment_resources(store.get_deployment(deployment_id), store.list_nodes(deployment_id), "")
        return [r for r in found if not node_type or r.toscaNodeType == node_type]

    def events(self, deployment_id: str, limit: int) -> list[LogEntry]:
        with Store() as store:
            return [LogEntry(e.time, e.kind, e.message) for e in store.list_events(deployment_id, limit=limit)]

    def template(self, deployment_id: str) -> str:
        with Store() as store:
            return store.get_deployment(deployment_id).template

    def mark(self, deployment_id: str) -> int:
        return demo.last_event_id(deployment_id)

    def watch(self, deployment_id: str, echo: Echo, until: frozenset[str], since: int) -> str:
        with _refusals():
            return demo.watch(deployment_id, echo, until=set(until), since=since)

    # -- requests through the Airflow of `dodas demo` --------------------------------------------------------

    def submit(self, submission: Submission, echo: Echo) -> str:
        for flag, value in (("--user-group", submission.user_group), ("--callback", submission.callback)):
            if value:
                fail(f"{flag} needs a remote DODAS service (--url or DODAS_URL): dodas_submit does not take it")
        conf: dict[str, Any] = {"inputs": submission.inputs, "cloud": submission.cloud or DEFAULT_CLOUD}
        s = self._running()
        token = self._token()
        path = Path(submission.template)
        if path.is_file():
            conf["template_text"] = path.read_text()
        else:
            conf["template"] = submission.template
        with _refusals():
            if token:  # delegated at the api-server: the run's conf names the delegation, never the token
                conf["delegation"] = demo.delegate(s, token)
            return demo.submit(s, conf, echo)

    def scale(self, deployment_id: str, group: str, count: int) -> None:
        s = self._running()
        with _refusals():
            demo.scale(s, deployment_id, group, count)

    def undeploy(self, deployment_id: str) -> None:
        s = self._running()
        with _refusals():
            demo.undeploy(s, deployment_id)

    def _running(self) -> AirflowStack:
        if not self._stack.is_running():
            fail(f"Airflow is not running in {self._stack.airflow_home}; start it with `dodas demo` (it stays up)")
        return self._stack


@contextmanager
def _refusals() -> Iterator[None]:
    """A request DAG's refusal (the run's note) or an unreachable Airflow, as the command's one-line failure."""
    try:
        yield
    except (StackError, AirflowApiError) as exc:
        fail(str(exc))
