"""Healing: a node is healthy when the cloud says it runs, SSH answers and the framework counts it.

A node unhealthy beyond `grace` is marked ERROR and the deployment DAG is asked to run (its provisioner deletes
and re-creates ERROR nodes, configure re-points the others: a worker's config digest includes the master's IP).
The cloud's word is final: a VM it reports gone, in ERROR or stopped is replaced at once; the grace is for what
can come back by itself (an SSH server or a framework daemon restarting, a slow network).
Replacements that keep failing back off exponentially, with the reason in the deployment's status.
Failed scale-outs of the elastic group (nodes that never served) belong to the autoscaler, not to healing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dodas_tasks.clouds.base import ACTIVE, BUILD
from dodas_tasks.configure import JumpHostUnreachable
from dodas_tasks.deploy.cloud_access import AccessTokens, TokensFor, driver_for
from dodas_tasks.deploy.components import deployment_framework
from dodas_tasks.deploy.ssh_access import SshAccess
from dodas_tasks.elastic.observe import SERVING
from dodas_tasks.elastic.policy import backoff_delay
from dodas_tasks.elastic.settings import ElasticSettings, resolve
from dodas_tasks.frameworks.base import WORKER_ROLES
from dodas_tasks.frameworks.cluster_view import cluster_of, framework_names
from dodas_tasks.naming import deployment_tags
from dodas_tasks.store import DeploymentRecord, NodeRecord, NodeState, Store

STATE_KEY = "_healing"
EVENT = "heal"
_JUDGED = {NodeState.CONFIGURED, NodeState.STARTED, NodeState.CREATED}
Log = Callable[[str], None]


@dataclass(frozen=True)
class Probe:
    """What the three witnesses said about one node; None = could not tell (e.g. the master is down)."""

    cloud: str | None
    ssh: bool | None
    framework: bool | None
    detail: str = ""

    @property
    def lost(self) -> bool:
        """The cloud says the VM is gone, broken or stopped: nothing to wait for."""
        return self.cloud not in (ACTIVE, BUILD)

    def problems(self) -> list[str]:
        found = []
        if self.cloud != ACTIVE:
            found.append(f"cloud says {self.cloud or 'gone'}")
        if self.ssh is False:
            found.append("SSH does not answer")
        if self.framework is False:
            found.append(self.detail or "the framework does not count it")
        return found


@dataclass
class HealReport:
    """One deployment's check: nodes marked ERROR, whether its DAG must run, and what was said."""

    deployment_id: str
    trigger: bool = False
    marked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def probe_nodes(
    store: Store, dep: DeploymentRecord, nodes: list[NodeRecord], tokens: AccessTokens | None = None
) -> dict[str, Probe]:
    """Cloud (one list call, as the owner where the site acts as the owners), SSH (in parallel) and framework
    (one load read per framework) for every node."""
    driver = driver_for(dep, tokens)
    servers = {s.id: s.status for s in driver.list_servers(deployment_tags(dep.id))}
    for node in nodes:  # not listed: ask for it alone before calling it gone (listings can lag)
        if node.cloud_id and node.cloud_id not in servers:
            server = driver.get_server(node.cloud_id)
            if server is not None:
                servers[node.cloud_id] = server.status
    ssh = SshAccess(store, dep.id, driver=driver).ssh_answers(nodes)  # the banner, through the jump hosts if any
    counted: dict[str, tuple[bool | None, str]] = {}
    for name in framework_names(dep.plan):
        cluster = cluster_of(dep.plan, nodes, name)
        try:
            healthy = set(deployment_framework(store, dep, name).load(cluster).healthy_nodes)
            answer: str | None = None
        except JumpHostUnreachable:  # the way to the framework's API is down, not the framework: cannot tell
            continue
        except Exception as exc:
            healthy, answer = set(), str(exc)[:200]
        for role, members in cluster.roles.items():
            for member in members:
                if answer is not None:  # the master is not answering: it is unhealthy, the workers unknown
                    counted[member.name] = (None, "") if role in WORKER_ROLES else (False, answer)
                elif role in WORKER_ROLES:
                    counted[member.name] = (member.name in healthy, f"{name} does not count it as a live {role}")
                else:
                    counted.setdefault(member.name, (True, ""))
    return {
        n.id: Probe(
            cloud=servers.get(n.cloud_id or ""),
            ssh=ssh[n.id],
            framework=counted.get(n.name, (None, ""))[0],
            detail=counted.get(n.name, (None, ""))[1],
        )
        for n in nodes
    }


def settings_of(dep: DeploymentRecord) -> ElasticSettings:
    return resolve(dep.plan.elasticity.settings, dep.options)


def check_deployment(
    store: Store,
    dep: DeploymentRecord,
    now: datetime | None = None,
    log: Log = print,
    tokens: AccessTokens | None = None,
) -> HealReport:
    """Probe, update unhealthy_since / last_healthy_at, mark ERROR beyond grace, decide whether to run the DAG.

    `tokens`: the owner's access tokens of a delegated deployment, for sites that act as the owners."""
    now = now or datetime.now(UTC)
    report = HealReport(dep.id)
    if dep.status not in SERVING:
        report.notes.append(f"skipped: {dep.status}")
        return report
    settings = settings_of(dep)
    elasticity = dep.plan.elasticity
    elastic_group = elasticity.group if elasticity.enabled else None
    removal = set(dep.removal_list)
    nodes = [n for n in store.list_nodes(dep.id) if not ({n.id, n.name} & removal)]
    judged = [n for n in nodes if n.state in _JUDGED]
    probes = probe_nodes(store, dep, judged, tokens) if judged else {}
    for node in judged:
        probe = probes[node.id]
        problems = probe.problems()
        if not problems:
            if node.unhealthy_since is not None or node.last_healthy_at is None or _older(node.last_healthy_at, now):
                if node.unhealthy_since is not None:
                    store.add_event(dep.id, EVENT, f"{node.name}: healthy again", node.id)
                store.update_node(node.id, last_healthy_at=now, unhealthy_since=None)
            continue
        since = node.unhealthy_since or now
        if node.unhealthy_since is None:
            store.update_node(node.id, unhealthy_since=now)
            store.add_event(dep.id, EVENT, f"{node.name}: unhealthy ({'; '.join(problems)})", node.id)
        waited = (now - since).total_seconds()
        if probe.lost or waited >= settings.grace:
            reason = f"{'lost' if probe.lost else f'unhealthy for {waited:.0f} s'}: {'; '.join(problems)}"
            store.update_node(
                node.id, state=NodeState.ERROR, state_reason=reason, last_healthy_at=node.last_healthy_at or since
            )
            report.marked.append(node.name)
            log(f"{node.name}: {reason}")
    broken = [
        n
        for n in store.list_nodes(dep.id)
        if n.state == NodeState.ERROR
        and not ({n.id, n.name} & removal)
        and not (n.group == elastic_group and n.last_healthy_at is None)  # a failed scale-out: the autoscaler's
    ]
    _replace(store, dep, broken, settings, now, report, log)
    return report


def _older(when: datetime, now: datetime, seconds: float = 300.0) -> bool:
    return (now - when).total_seconds() > seconds


def _replace(
    store: Store,
    dep: DeploymentRecord,
    broken: list[NodeRecord],
    settings: ElasticSettings,
    now: datetime,
    report: HealReport,
    log: Log,
) -> None:
    """Ask for a run to replace the broken nodes, unless an earlier attempt failed recently (backoff)."""
    state = dict(dep.options.get(STATE_KEY) or {})
    attempts = int(state.get("attempts") or 0)
    if not broken:
        if attempts:
            store.modify_deployment(dep.id, lambda d: {"options": {**d.options, STATE_KEY: {}}})
        return
    stamp = now.timestamp()
    names = ", ".join(n.name for n in broken)
    if attempts and stamp < float(state.get("next_at") or 0):
        report.notes.append(f"backing off: next replacement of {names} in {float(state['next_at']) - stamp:.0f} s")
        return
    attempts += 1
    delay = backoff_delay(attempts, settings)
    new_state = {"attempts": attempts, "next_at": stamp + delay}
    store.modify_deployment(dep.id, lambda d: {"options": {**d.options, STATE_KEY: new_state}})
    why = next((n.state_reason for n in broken if n.state_reason), "no reason recorded")
    message = f"replacing {names} (attempt {attempts}; {why})"
    store.add_event(dep.id, EVENT, message)
    if attempts > 1:
        until = datetime.fromtimestamp(stamp + delay, UTC).strftime("%H:%M:%S UTC")
        reason = (
            f"healing: replacing {names} failed {attempts - 1} time(s) (last: {why}); attempt {attempts} now, "
            f"the next not before {until} (backoff {delay:g} s)"
        )
        store.set_status(dep.id, store.get_deployment(dep.id).status, reason)
    report.trigger = True
    log(message)


def check_all(
    store: Store, run_active: Callable[[str], bool], log: Log = print, tokens_for: TokensFor | None = None
) -> list[HealReport]:
    """Every serving deployment whose own run is not active; returns one report each (the caller triggers).

    `tokens_for`: a delegated deployment's owner tokens (sites that act as the owners need them)."""
    reports = []
    for dep in store.list_deployments(live_only=True):
        if dep.status not in SERVING:
            continue
        if run_active(dep.id):
            reports.append(HealReport(dep.id, notes=["skipped: its deployment DAG has a run queued or running"]))
            continue
        started = time.monotonic()
        try:
            tokens = tokens_for(dep) if tokens_for is not None else None
            reports.append(check_deployment(store, dep, log=log, tokens=tokens))
        except Exception as exc:  # one broken deployment must not stop healing the others
            log(f"deployment {dep.id}: health check failed: {exc}")
            reports.append(HealReport(dep.id, notes=[f"check failed: {exc}"]))
        log(f"deployment {dep.id}: checked in {time.monotonic() - started:.1f} s")
    return reports
