"""The deployment commands on a remote DODAS service, through its orchestrator-compatible REST API with the user's
access token: what orchent did against the INDIGO PaaS orchestrator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dodas_tasks.cli.app import fail
from dodas_tasks.cli.backends import TOKEN_VARIABLE, Echo, Submission
from dodas_tasks.demo import REPO, event_line
from dodas_tasks.deploy.orchestrator_resources import ResourceBody
from dodas_tasks.deploy.orchestrator_view import DeploymentResource, LogEntry
from dodas_tasks.orchestrator_client import OrchestratorClient, OrchestratorError
from dodas_tasks.store import DeploymentStatus
from dodas_tasks.tosca.scaling import ScalingError, scale_group

READY_TEMPLATES = REPO / "templates"
POLL_S = 1.0
WATCH_TIMEOUT_S = 1800.0
HOW_TO_GET_A_TOKEN = (
    f"set {TOKEN_VARIABLE} to an IAM access token (e.g. $(oidc-token ACCOUNT)) or give --oidc-agent ACCOUNT"
)


class RemoteBackend:
    """The service at `url` (the api-server's address, or the API's own URL) as the owner of `token`."""

    def __init__(self, url: str, token: str | None) -> None:
        self._has_token = token is not None
        with self._refusals():
            self.client = OrchestratorClient(url, token)

    def deployments(self, include_deleted: bool) -> list[DeploymentResource]:
        if include_deleted:
            fail("--all: the orchestrator API does not list deleted deployments (the local store does)")
        with self._refusals():
            return self.client.deployments()

    def deployment(self, reference: str) -> DeploymentResource:
        with self._refusals():
            return self.client.deployment(reference)

    def resources(self, deployment_id: str, node_type: str | None = None) -> list[ResourceBody]:
        with self._refusals():
            return self.client.resources(deployment_id, node_type)

    def events(self, deployment_id: str, limit: int) -> list[LogEntry]:
        with self._refusals():
            return self.client.log(deployment_id)[-limit:] if limit > 0 else []

    def template(self, deployment_id: str) -> str:
        with self._refusals():
            return self.client.template(deployment_id)

    def submit(self, submission: Submission, echo: Echo) -> str:
        """POST the template's text with its inputs; the service chooses the clouds (its DODAS_CLOUDS)."""
        if submission.cloud:
            fail("--cloud: a remote service deploys on the clouds it is configured with (DODAS_CLOUDS); leave it out")
        text = _template_text(submission.template)
        with self._refusals():
            created = self.client.create(text, submission.inputs, submission.user_group, submission.callback)
        echo(f"deployment {created.uuid} registered (DAG {created.physicalId})")
        return created.uuid

    def scale(self, deployment_id: str, group: str, count: int) -> None:
        """PUT the deployment's template with the group's count changed, as orchestrator clients scale."""
        with self._refusals():
            current = self.client.template(deployment_id)
        try:
            update = scale_group(current, group, count)
        except ScalingError as exc:
            fail(f"cannot scale {group!r}: {exc}")
        with self._refusals():
            self.client.update(deployment_id, update.template, update.parameters)

    def undeploy(self, deployment_id: str) -> None:
        with self._refusals():
            self.client.delete(deployment_id)

    def mark(self, deployment_id: str) -> int:
        with self._refusals():
            return len(self.client.log(deployment_id))

    def watch(self, deployment_id: str, echo: Echo, until: frozenset[str], since: int) -> str:
        """Poll the log and the status; a deployment deleted meanwhile answers 404, which ends a deletion's watch."""
        deadline = time.monotonic() + WATCH_TIMEOUT_S
        seen, changed = since, False
        while True:
            try:
                entries = self.client.log(deployment_id)
                status = self.client.deployment(deployment_id).status
            except OrchestratorError as exc:
                if exc.status == 404 and DeploymentStatus.DELETE_COMPLETE in until:
                    return DeploymentStatus.DELETE_COMPLETE
                fail(self._explain(exc))
            for entry in entries[seen:]:
                echo(event_line(entry))
                changed = changed or entry.kind == "status"
            seen = max(seen, len(entries))
            if changed and status in until:
                return status
            if time.monotonic() > deadline:
                fail(f"deployment {deployment_id} still {status} after {WATCH_TIMEOUT_S:.0f} s")
            time.sleep(POLL_S)

    @contextmanager
    def _refusals(self) -> Iterator[None]:
        try:
            yield
        except OrchestratorError as exc:
            fail(self._explain(exc))

    def _explain(self, exc: OrchestratorError) -> str:
        """One line: the service's reason, with how to get a token when it refused the one given (or none)."""
        if exc.status == 401 and exc.title is not None:
            if not self._has_token:
                return f"no access token given: {HOW_TO_GET_A_TOKEN}"
            refused = "the service refused the access token (expired or invalid)"
            return f"{refused}: {exc.message}; {HOW_TO_GET_A_TOKEN}"
        return f"{exc.title}: {exc.message}" if exc.title is not None else exc.message


def _template_text(template: str) -> str:
    """A template file's text, or a ready template's (templates/ of this checkout) by its name."""
    for path in (Path(template), READY_TEMPLATES / template):
        if path.is_file():
            try:
                return path.read_text()
            except OSError as exc:
                fail(f"{path}: cannot read template: {exc.strerror}")
    fail(f"{template}: no such file, nor a ready template in {READY_TEMPLATES}")
