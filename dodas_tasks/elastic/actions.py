"""What a decision does: drain workers, record the desired state and the reason; the deployment DAG does the rest.

Runs in a task (not in the triggerer): draining talks SSH. Every decision leaves an "elastic" event with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dodas_tasks.deploy import service
from dodas_tasks.elastic.observe import Target, read_load
from dodas_tasks.elastic.policy import BACKOFF, DROP_FAILED, RETRY, SCALE_IN, SCALE_OUT, Decision, PolicyState
from dodas_tasks.store import Store
from dodas_tasks.store.vocabulary import DeploymentStatus

STATE_KEY = "_elastic"  # the policy's memory, kept in the deployment's options between sensor runs
EVENT = "elastic"
Log = Callable[[str], None]


def load_state(store: Store, deployment_id: str) -> PolicyState:
    return PolicyState.from_dict(store.get_deployment(deployment_id).options.get(STATE_KEY))


def save_state(store: Store, deployment_id: str, state: PolicyState) -> None:
    store.modify_deployment(deployment_id, lambda d: {"options": {**d.options, STATE_KEY: state.to_dict()}})


def apply(store: Store, target: Target, decision: Decision, state: PolicyState, log: Log = print) -> bool:
    """Carry out a decision; True when the deployment DAG must run. The state is saved in every case."""
    dep_id, group = target.deployment_id, target.group
    count, why = int(decision.count or 0), f"elasticity: {decision.reason}"
    needs_run = False
    if decision.action == SCALE_OUT:
        service.request_scale(store, dep_id, group, count, [], reason=why)
        needs_run = True
    elif decision.action == SCALE_IN:
        busy = drain(store, target, decision, log)
        if busy:
            store.add_event(dep_id, EVENT, f"scale-in cancelled: {', '.join(busy)} got work meanwhile")
        else:
            service.request_scale(
                store,
                dep_id,
                group,
                int(decision.count or 0),
                list(decision.remove),
                reason=f"elasticity: {decision.reason}",
            )
            needs_run = True
    elif decision.action == DROP_FAILED:
        service.request_scale(
            store,
            dep_id,
            group,
            int(decision.count or 0),
            list(decision.remove),
            reason=f"elasticity: {decision.reason}",
        )
        needs_run = True
    elif decision.action == RETRY:
        store.add_event(dep_id, EVENT, decision.reason)
        needs_run = True
    elif decision.action == BACKOFF:
        store.add_event(dep_id, EVENT, decision.reason)
        dep = store.get_deployment(dep_id)
        if dep.status not in (DeploymentStatus.DELETE_IN_PROGRESS, DeploymentStatus.DELETE_COMPLETE):
            status = DeploymentStatus.UPDATE_FAILED if dep.status == DeploymentStatus.UPDATE_IN_PROGRESS else dep.status
            store.set_status(dep_id, status, f"elasticity: {decision.reason}")
    save_state(store, dep_id, state)
    log(f"{decision.action}: {decision.reason}")
    return needs_run


def drain(store: Store, target: Target, decision: Decision, log: Log) -> list[str]:
    """Decommission the chosen workers (the framework stops giving them work, running work ends first).

    The load is read again just before: a node that got work since the decision is left alone (returned).
    """
    if not decision.drain or target.framework is None:
        return []
    from dodas_tasks.deploy.components import Deployer

    dep = store.get_deployment(target.deployment_id)
    nodes = store.list_nodes(target.deployment_id)
    busy = sorted(set(decision.drain) & set(read_load(store, dep, nodes, target.framework).busy_nodes))
    if busy:
        return busy
    deployer = Deployer(store, target.deployment_id, log=log)
    fw = deployer.framework(target.framework)
    cluster = deployer.cluster(target.framework)
    role = next((r for r, members in cluster.roles.items() if {m.name for m in members} & set(decision.drain)), None)
    for node in cluster.nodes(role) if role else ():
        if node.name in decision.drain:
            result = deployer.run(node, fw.stop_script(role, node, cluster, drain=True))
            log(f"{node.name}: drained and stopped (exit {result.exit_status})")
    return []


def summary(decision: Decision, target: Target) -> dict[str, Any]:
    return {"deployment_id": target.deployment_id, "group": target.group, **decision.to_dict()}
