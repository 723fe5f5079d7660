"""Where the deployment commands act: this machine's Airflow and store (LocalBackend) or a remote DODAS service
through its orchestrator API (RemoteBackend). Each command is written once against Backend; both answer with the
orchestrator's view of a deployment (deploy/orchestrator_view.py), so both print the same."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from dodas_tasks.cli.app import fail
from dodas_tasks.deploy.orchestrator_resources import ResourceBody
from dodas_tasks.deploy.orchestrator_view import DeploymentResource, LogEntry

Echo = Callable[[str], None]
TOKEN_VARIABLE = "DODAS_ACCESS_TOKEN"
OIDC_TOKEN_TIMEOUT_S = 30


@dataclass(frozen=True)
class Submission:
    """What `dodas submit` was given: a template file (or a ready template's name), inputs and options."""

    template: str
    inputs: dict[str, Any] = field(default_factory=dict)
    cloud: str | None = None
    user_group: str | None = None
    callback: str | None = None


class Backend(Protocol):
    """The deployment commands' one interface; every method fails with CommandFailed (one line) when refused."""

    def deployments(self, include_deleted: bool) -> list[DeploymentResource]:
        """Every deployment (oldest first); deleted ones too when asked."""
        ...

    def deployment(self, reference: str) -> DeploymentResource:
        """The deployment a full id or its first 8+ characters names."""
        ...

    def resources(self, deployment_id: str, node_type: str | None = None) -> list[ResourceBody]: ...

    def events(self, deployment_id: str, limit: int) -> list[LogEntry]:
        """The newest `limit` events, oldest first."""
        ...

    def template(self, deployment_id: str) -> str: ...

    def submit(self, submission: Submission, echo: Echo) -> str:
        """Submit; the new deployment's id once it is recorded."""
        ...

    def scale(self, deployment_id: str, group: str, count: int) -> None: ...

    def undeploy(self, deployment_id: str) -> None: ...

    def mark(self, deployment_id: str) -> int:
        """Where the deployment's history is now (for watch's `since`)."""
        ...

    def watch(self, deployment_id: str, echo: Echo, until: frozenset[str], since: int) -> str:
        """Print the events after `since` as they happen; return the status once a status change after `since`
        has brought it to one of `until`."""
        ...


def connect(url: str | None, oidc_agent: str | None) -> Backend:
    """The remote service at `url` (--url or DODAS_URL) with the user's token, else this machine."""
    if url:
        from dodas_tasks.cli.remote import RemoteBackend

        return RemoteBackend(url, access_token(oidc_agent))
    from dodas_tasks.cli.local import LocalBackend

    return LocalBackend(lambda: access_token(oidc_agent))


def access_token(oidc_agent: str | None) -> str | None:
    """The user's IAM access token: from oidc-agent when asked (`oidc-token ACCOUNT`, as orchent's
    ORCHENT_AGENT_ACCOUNT), else DODAS_ACCESS_TOKEN; never echoed."""
    if not oidc_agent:
        return os.environ.get(TOKEN_VARIABLE) or None
    try:
        done = subprocess.run(["oidc-token", oidc_agent], capture_output=True, text=True, timeout=OIDC_TOKEN_TIMEOUT_S)
    except FileNotFoundError:
        fail(
            f"--oidc-agent {oidc_agent}: the oidc-token command (oidc-agent) is not installed or not on PATH; "
            f"install oidc-agent, or set {TOKEN_VARIABLE} to an access token instead"
        )
    except subprocess.TimeoutExpired:
        fail(f"oidc-token {oidc_agent} gave no token within {OIDC_TOKEN_TIMEOUT_S} s (is oidc-agent running?)")
    said = next((line.strip() for line in done.stderr.splitlines() if line.strip()), "")
    if done.returncode != 0:
        fail(f"oidc-token {oidc_agent} failed: {said[:200] or f'exit status {done.returncode}'}")
    token = done.stdout.strip()
    if not token:
        fail(f"oidc-token {oidc_agent} printed no token")
    return token
