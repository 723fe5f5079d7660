"""Marathon v2 client: PUT apps, wait for their deployments, check tasks and health, read the launch queue.

Requests go through a Transport: plain HTTP from the worker (`HttpTransport`), or curl on a master node over
SSH (`NodeCurlTransport`) with the credentials configure-Mesos left there, as DODAS's Ansible did from the
master VM; the latter needs only SSH to reach a cluster on a private network.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from dodas_tasks.configure.redaction import MASK
from dodas_tasks.frameworks.base import Node, Runner, Script


class MarathonError(RuntimeError):
    """Marathon refused a request or an app did not become healthy; the message names the app and why."""


class Transport(Protocol):
    def __call__(self, method: str, path: str, body: Any | None = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body or None)."""


class HttpTransport:
    """Marathon over HTTP(S) from this process; auth and TLS verification as given."""

    def __init__(
        self, base_url: str, auth: tuple[str, str] | None = None, verify: bool | str = True, timeout: float = 30
    ) -> None:
        self._client = httpx.Client(base_url=base_url, auth=auth, verify=verify, timeout=timeout, trust_env=False)

    def __call__(self, method: str, path: str, body: Any | None = None) -> tuple[int, Any]:
        response = self._client.request(method, path, json=body)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    def close(self) -> None:
        self._client.close()


_CURL = r"""set -eu
S="@STATE@"
[ -s "$S/marathon/url" ] || { echo "error: Marathon is not configured on this node" >&2; exit 1; }
if [ -n "${DODAS_BODY:-}" ]; then
    printf '%s' "$DODAS_BODY" | curl -sS --max-time 60 -K "$S/marathon/curlrc" -X "$DODAS_METHOD" \
        -H 'Content-Type: application/json' --data-binary @- -w '\n%{http_code}\n' "$(cat "$S/marathon/url")$DODAS_PATH"
else
    curl -sS --max-time 60 -K "$S/marathon/curlrc" -X "$DODAS_METHOD" -w '\n%{http_code}\n' \
        "$(cat "$S/marathon/url")$DODAS_PATH"
fi
"""


class NodeCurlTransport:
    """Marathon reached by curl on a master node (via the Runner), using the node's own credentials file."""

    def __init__(self, run: Runner, node: Node, state_dir: str = "$HOME/.dodas/mesos") -> None:
        self._run, self._node = run, node
        self._body = _CURL.replace("@STATE@", state_dir)

    def __call__(self, method: str, path: str, body: Any | None = None) -> tuple[int, Any]:
        env = {"DODAS_METHOD": method, "DODAS_PATH": path}
        if body is not None:
            env["DODAS_BODY"] = json.dumps(body)
        result = self._run(self._node, Script("marathon-request", env, self._body, log_output=False))
        if result.exit_status != 0:
            raise MarathonError(
                f"Marathon request {method} {path} from {self._node.name} failed: "
                f"{result.stderr.strip()[-300:] or result.exit_status}"
            )
        text, _, status = result.stdout.rstrip("\n").rpartition("\n")
        try:
            return int(status), json.loads(text) if text.strip() else None
        except ValueError:
            return int(status) if status.isdigit() else 0, None


CONFIG_LABEL = "DODAS_CONFIG"  # digest of the definition DODAS last PUT (secrets included), on every app
# Env values that only seed an app: the proxy cache exchanges the IAM token once for tokens of its own, so a
# fresher token alone is no reason to redeploy (and restart) it; a PUT for any other change carries the fresh one.
BOOTSTRAP_ENV = frozenset({"IAM_TOKEN"})


def without_bootstrap(app: Mapping[str, Any]) -> dict[str, Any]:
    """The app as compared and digested: without its BOOTSTRAP_ENV values."""
    env = app.get("env")
    if not isinstance(env, Mapping) or not BOOTSTRAP_ENV & set(env):
        return dict(app)
    return {**app, "env": {k: v for k, v in env.items() if k not in BOOTSTRAP_ENV}}


def contains(current: Any, desired: Any, *, masked: bool = False) -> bool:
    """Whether Marathon's app (which adds defaults) already holds everything in the desired definition.

    masked: Marathon's answer came through the SSH runner, which masks secrets (***) in everything it returns,
    so a masked part of a string stands for anything; the CONFIG_LABEL digest is what tells a changed secret.
    """
    if isinstance(desired, Mapping):
        return isinstance(current, Mapping) and all(
            contains(current.get(k), v, masked=masked) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(current) == len(desired)
            and all(contains(c, d, masked=masked) for c, d in zip(current, desired, strict=True))
        )
    if isinstance(desired, float) or isinstance(current, float):
        return isinstance(current, int | float) and abs(float(current) - float(desired)) < 1e-9
    if masked and isinstance(current, str) and isinstance(desired, str) and MASK in current:
        pattern = ".*".join(re.escape(part) for part in current.split(MASK))
        return re.fullmatch(pattern, desired, flags=re.DOTALL) is not None
    return current == desired


def with_config_label(app: Mapping[str, Any]) -> dict[str, Any]:
    """The app with CONFIG_LABEL set to the digest of its definition (bootstrap values left out)."""
    digest = hashlib.sha256(json.dumps(without_bootstrap(app), sort_keys=True).encode()).hexdigest()[:16]
    return {**app, "labels": {**(app.get("labels") or {}), CONFIG_LABEL: digest}}


def up_to_date(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Marathon runs exactly the desired definition: same digest label (what DODAS put, secrets included) and
    every field still as desired (nobody scaled or edited the app in Marathon since)."""
    if current is None:
        return False
    label = (current.get("labels") or {}).get(CONFIG_LABEL)
    return label == desired["labels"][CONFIG_LABEL] and contains(current, without_bootstrap(desired), masked=True)


@dataclass(frozen=True)
class AppState:
    """An app as far as readiness goes: instances wanted and running/healthy, and why not, if not."""

    app_id: str
    instances: int
    running: int
    healthy: int
    has_health_checks: bool
    problems: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return self.running >= self.instances and (not self.has_health_checks or self.healthy >= self.instances)


def app_state(app: Mapping[str, Any], queue: Iterable[Mapping[str, Any]] = ()) -> AppState:
    """Readiness of one app from GET /v2/apps/{id}?embed=app.tasks (+ its /v2/queue entry), with reasons."""
    app_id = app.get("id", "?")
    instances = int(app.get("instances", 0))
    tasks = app.get("tasks", []) or []
    running = sum(1 for t in tasks if t.get("state", "TASK_RUNNING") == "TASK_RUNNING")
    has_checks = bool(app.get("healthChecks"))
    healthy = int(app.get("tasksHealthy", 0))
    problems: list[str] = []
    for task in tasks:
        for result in task.get("healthCheckResults", []) or []:
            if not result.get("alive", True):
                cause = result.get("lastFailureCause") or "health check failing"
                problems.append(f"task {task.get('id', '?')} on {task.get('host', '?')} is unhealthy: {cause}")
    failure = app.get("lastTaskFailure")
    if failure and running < instances:
        problems.append(
            f"last task failure on {failure.get('host', '?')}: {failure.get('state')} "
            f"{failure.get('message', '')}".strip()
        )
    for entry in queue:
        if entry.get("app", {}).get("id") != app_id:
            continue
        summary = entry.get("processedOffersSummary") or {}
        rejected = [r for r in summary.get("rejectSummaryLastOffers", []) if r.get("declined")]
        reasons = ", ".join(f"{r['reason']} ({r['declined']}/{r.get('processed', '?')})" for r in rejected)
        problems.append(
            f"{entry.get('count', 0)} instance(s) waiting for Mesos offers"
            + (f"; offers declined for: {reasons}" if reasons else "")
        )
    return AppState(app_id, instances, running, healthy, has_checks, tuple(problems))


class MarathonClient:
    """The few Marathon v2 calls DODAS needs, with deadlines and errors that say which app and why."""

    def __init__(
        self,
        transport: Transport,
        *,
        poll_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._call = transport
        self.poll_seconds = poll_seconds
        self._clock, self._sleep = clock, sleep

    def _get(self, path: str) -> Any:
        status, body = self._call("GET", path)
        if status != 200:
            raise MarathonError(f"Marathon GET {path}: HTTP {status} {_message(body)}")
        return body

    def app(self, app_id: str) -> dict[str, Any] | None:
        """GET /v2/apps/{id} with its tasks; None when Marathon has no such app."""
        status, body = self._call("GET", f"/v2/apps/{_path(app_id)}?embed=app.tasks&embed=app.lastTaskFailure")
        if status == 404:
            return None
        if status != 200:
            raise MarathonError(f"Marathon GET app {app_id}: HTTP {status} {_message(body)}")
        return body["app"]

    def apps(self) -> list[dict[str, Any]]:
        return self._get("/v2/apps?embed=apps.tasks&embed=apps.lastTaskFailure")["apps"]

    def queue(self) -> list[dict[str, Any]]:
        """Apps with instances waiting for offers (GET /v2/queue)."""
        return self._get("/v2/queue?embed=lastUnusedOffers").get("queue", [])

    def deployment_ids(self) -> set[str]:
        return {d["id"] for d in self._get("/v2/deployments")}

    def put_app(self, app: Mapping[str, Any], *, force: bool = False) -> str | None:
        """PUT /v2/apps/{id} (creates or replaces); returns the deployment id Marathon started."""
        path = f"/v2/apps/{_path(app['id'])}" + ("?force=true" if force else "")
        status, body = self._call("PUT", path, dict(app))
        if status == 409:
            raise MarathonError(f"app {app['id']} is locked by a deployment in progress: {_message(body)}")
        if status not in (200, 201):
            raise MarathonError(f"Marathon refused app {app['id']}: HTTP {status} {_message(body)}")
        return (body or {}).get("deploymentId") or ((body or {}).get("deployments") or [{}])[0].get("id")

    def ensure_apps(self, apps: Iterable[Mapping[str, Any]], *, timeout: float = 900, force: bool = False) -> list[str]:
        """PUT the apps that differ from Marathon's, wait for their deployments, then for them to be healthy.

        Returns the ids of the apps that changed (none on a rerun with the same definitions).
        """
        apps = [with_config_label(app) for app in apps]
        changed, deployments = [], set()
        for app in apps:
            if up_to_date(self.app(app["id"]), app):
                continue
            deployment = self.put_app(app, force=force)
            changed.append(app["id"])
            if deployment:
                deployments.add(deployment)
        deadline = self._clock() + timeout
        self.wait_deployments(deployments, deadline, [a["id"] for a in apps])
        self.wait_ready([a["id"] for a in apps], deadline)
        return changed

    def remove_group(self, group: str, *, timeout: float = 900) -> list[str]:
        """DELETE /v2/groups/{group}?force=true and wait for that deployment; returns the app ids it held."""
        status, body = self._call("GET", f"/v2/groups/{_path(group)}")
        if status == 404:
            return []
        if status != 200:
            raise MarathonError(f"Marathon GET group {group}: HTTP {status} {_message(body)}")
        held = [a["id"] for a in (body or {}).get("apps", [])]
        status, body = self._call("DELETE", f"/v2/groups/{_path(group)}?force=true")
        if status not in (200, 202, 404):
            raise MarathonError(f"Marathon refused to delete group {group}: HTTP {status} {_message(body)}")
        deployment = (body or {}).get("deploymentId")
        if deployment:
            self.wait_deployments({deployment}, self._clock() + timeout, [])
        return held

    def wait_deployments(self, ids: set[str], deadline: float, app_ids: list[str]) -> None:
        while pending := ids & self.deployment_ids():
            if self._clock() >= deadline:
                raise MarathonError(
                    f"deployment(s) {', '.join(sorted(pending))} not finished in time; "
                    + describe_states(self.states(app_ids))
                )
            self._sleep(self.poll_seconds)

    def states(self, app_ids: Iterable[str]) -> list[AppState]:
        queue = self.queue()
        states = []
        for app_id in app_ids:
            app = self.app(app_id)
            states.append(app_state(app, queue) if app else AppState(app_id, 1, 0, 0, False, ("app is missing",)))
        return states

    def wait_ready(self, app_ids: list[str], deadline: float) -> list[AppState]:
        """Every app runs its instances and passes its health checks, or MarathonError naming those that do not."""
        while True:
            states = self.states(app_ids)
            if all(s.ready for s in states):
                return states
            if self._clock() >= deadline:
                raise MarathonError("apps not ready: " + describe_states(s for s in states if not s.ready))
            self._sleep(self.poll_seconds)


def describe_states(states: Iterable[AppState]) -> str:
    """One clause per app: running/healthy counts and its problems."""
    parts = []
    for s in states:
        what = f"{s.app_id}: {s.running}/{s.instances} running"
        if s.has_health_checks:
            what += f", {s.healthy}/{s.instances} healthy"
        if s.problems:
            what += " (" + "; ".join(s.problems[:3]) + ")"
        parts.append(what)
    return "; ".join(parts)


def _message(body: Any) -> str:
    if isinstance(body, Mapping):
        details = body.get("details")
        return str(body.get("message", "")) + (f" {json.dumps(details)[:300]}" if details else "")
    return ""


def _path(app_id: str) -> str:
    return quote(app_id.strip("/"), safe="/")
