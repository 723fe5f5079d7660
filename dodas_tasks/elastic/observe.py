"""What the autoscaler sees at one poll: the store (desired count, nodes, run state) and the framework's load."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from dodas_tasks.deploy.components import deployment_framework
from dodas_tasks.elastic.policy import NodeView, Observation
from dodas_tasks.elastic.settings import ElasticSettings, resolve
from dodas_tasks.frameworks.base import Load
from dodas_tasks.frameworks.cluster_view import cluster_of, framework_of_group
from dodas_tasks.store import DeploymentNotFoundError, DeploymentRecord, NodeRecord, NodeState, Store
from dodas_tasks.store.vocabulary import DeploymentStatus

RUN_ACTIVE = {
    DeploymentStatus.CREATE_IN_PROGRESS,
    DeploymentStatus.UPDATE_IN_PROGRESS,
    DeploymentStatus.DELETE_IN_PROGRESS,
}
SERVING = {DeploymentStatus.CREATE_COMPLETE, DeploymentStatus.UPDATE_COMPLETE, DeploymentStatus.UPDATE_FAILED}
GONE = {DeploymentStatus.DELETE_COMPLETE}


@dataclass(frozen=True)
class Target:
    """The elastic part of one deployment: its group, bounds and settings (read once per sensor run)."""

    deployment_id: str
    group: str
    min_count: int
    max_count: int
    cores_per_node: int
    framework: str | None
    settings: ElasticSettings

    @classmethod
    def of(cls, dep: DeploymentRecord) -> Target:
        plan = dep.plan
        elastic = plan.elasticity
        if not elastic.enabled or not elastic.group:
            raise ValueError(f"deployment {dep.id} has no elastic compute group")
        group = plan.group(elastic.group)
        return cls(
            deployment_id=dep.id,
            group=elastic.group,
            min_count=elastic.min_count,
            max_count=elastic.max_count,
            cores_per_node=group.num_cpus or 1,
            framework=framework_of_group(plan, elastic.group),
            settings=resolve(elastic.settings, dep.options),
        )


def read_load(store: Store, dep: DeploymentRecord, nodes: list[NodeRecord], framework_name: str) -> Load:
    """The framework's load, read with the deployment's site settings (ports, runtime) and runner if it needs one."""
    return deployment_framework(store, dep, framework_name).load(cluster_of(dep.plan, nodes, framework_name))


@dataclass(frozen=True)
class Seen:
    """One poll's result: an observation, or why there is nothing to decide (hold) or the deployment is gone."""

    observation: Observation | None = None
    hold: str = ""
    gone: bool = False


def observe(store: Store, target: Target, now: float) -> Seen:
    """Read the store and the framework; never raises for an unreadable framework (that is an observation)."""
    try:
        dep = store.get_deployment(target.deployment_id)
    except DeploymentNotFoundError:
        return Seen(gone=True)
    if dep.status in GONE:
        return Seen(gone=True)
    if dep.status not in SERVING and dep.status not in RUN_ACTIVE:
        return Seen(hold=f"deployment is {dep.status}: elasticity waits until it serves")
    all_nodes = store.list_nodes(dep.id)
    removal = set(dep.removal_list)
    group_nodes = [
        n
        for n in all_nodes
        if n.group == target.group and n.state != NodeState.DELETING and not ({n.id, n.name} & removal)
    ]
    load, error = None, ""
    if target.framework is not None:
        try:
            load = read_load(store, dep, all_nodes, target.framework)
        except Exception as exc:  # an unreachable master is an observation, healing deals with it
            error = str(exc)[:300]
    healthy = set(load.healthy_nodes) if load else set()
    for node in group_nodes:  # a node that ever served is not a failed scale-out when it breaks later
        if node.name in healthy and node.last_healthy_at is None:
            store.update_node(node.id, last_healthy_at=datetime.now(UTC))
    obs = Observation(
        now=now,
        desired=int(dep.desired_counts.get(target.group, len(group_nodes))),
        min_count=target.min_count,
        max_count=target.max_count,
        cores_per_node=target.cores_per_node,
        nodes=tuple(
            NodeView(
                id=n.id,
                name=n.name,
                index=n.index,
                state=str(n.state),
                ever_healthy=n.last_healthy_at is not None or n.name in healthy,
                reason=n.state_reason or "",
            )
            for n in group_nodes
        ),
        run_active=dep.status in RUN_ACTIVE,
        pending_demand=load.pending_demand if load else None,
        waiting_apps=load.waiting_apps if load else 0,
        healthy=frozenset(healthy),
        idle=frozenset(load.idle_nodes) if load else frozenset(),
        busy=frozenset(load.busy_nodes) if load else frozenset(),
        load_error=error or ("" if load else "no framework on the elastic group"),
    )
    return Seen(observation=obs)
