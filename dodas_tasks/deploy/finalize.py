"""The end of a deployment DAG run: the orchestrator status, outputs, and what is left after a deletion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dodas_tasks.clouds.base import get_driver
from dodas_tasks.deploy.naming import key_pair_name
from dodas_tasks.store import DeploymentStatus, Store

FAILURE_EVENT = "task_failed"  # one event per failed task of a run: "<task id>: <reason naming the node>"


@dataclass
class RunOutcome:
    status: str
    reason: str = ""
    failed: bool = False
    outputs: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "outputs": self.outputs}


def record_failure(store: Store, deployment_id: str, task: str, error: BaseException) -> None:
    store.add_event(deployment_id, FAILURE_EVENT, f"{task}: {error}")


def finalize_run(store: Store, deployment_id: str, since_event: int, log: Callable[[str], None] = print) -> RunOutcome:
    dep = store.get_deployment(deployment_id)
    failures = [
        e.message
        for e in store.list_events(deployment_id, limit=10_000, after_id=since_event)
        if e.kind == FAILURE_EVENT
    ]
    if dep.status == DeploymentStatus.DELETE_IN_PROGRESS:
        left = store.list_nodes(deployment_id)
        if failures or left:
            reason = "; ".join(failures) or f"{len(left)} node(s) still exist: {', '.join(n.name for n in left)}"
            store.set_status(deployment_id, DeploymentStatus.DELETE_FAILED, reason)
            return RunOutcome(DeploymentStatus.DELETE_FAILED, reason, failed=True)
        get_driver(dep.cloud).delete_key_pair(key_pair_name(deployment_id))
        store.update_deployment(deployment_id, outputs={})
        store.set_status(deployment_id, DeploymentStatus.DELETE_COMPLETE, "all resources deleted")
        log(f"deployment {deployment_id}: every resource deleted")
        return RunOutcome(DeploymentStatus.DELETE_COMPLETE, "all resources deleted")
    creating = dep.status in (DeploymentStatus.CREATE_IN_PROGRESS, DeploymentStatus.CREATE_FAILED)
    if failures:
        status = DeploymentStatus.CREATE_FAILED if creating else DeploymentStatus.UPDATE_FAILED
        reason = "; ".join(failures)
        store.set_status(deployment_id, status, reason)
        return RunOutcome(status, reason, failed=True)
    from dodas_tasks.deploy.components import Deployer

    outputs = Deployer(store, deployment_id, log=log).outputs()
    status = DeploymentStatus.CREATE_COMPLETE if creating else DeploymentStatus.UPDATE_COMPLETE
    store.set_status(deployment_id, status)
    return RunOutcome(status, outputs=outputs)
