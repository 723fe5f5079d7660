"""The end of a deployment DAG run: the orchestrator status, outputs, and what is left after a deletion."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dodas_tasks.clouds.base import CloudError
from dodas_tasks.deploy.cloud_access import AccessTokens, driver_for
from dodas_tasks.iam.cluster_client import release_cluster_client, stored_client
from dodas_tasks.naming import key_pair_name
from dodas_tasks.store import DeploymentRecord, DeploymentStatus, NodeState, Store

if TYPE_CHECKING:
    from dodas_tasks.frameworks.base import SiteServices
    from dodas_tasks.iam import IamClient

FAILURE_EVENT = "task_failed"  # one event per failed task of a run: "<task id>: <reason naming the node>"
# A task Airflow failed without its own code saying why: killed (its worker SIGKILLed, OOM) on its last try and
# failed by the scheduler's heartbeat timeout, or ended by Airflow itself (a deferral's timeout)
UNREPORTED = "failed without recording a reason: its process was killed or lost, or Airflow ended it (see its log)"


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


def set_status_unless_deleting(store: Store, deployment_id: str, status: str, reason: str | None = None) -> bool:
    """Set a creation/update status unless an undeploy request came meanwhile (checked and written at once): a
    deletion request is never overwritten by the run it overtook. Returns whether the status was set."""
    deleting = {DeploymentStatus.DELETE_IN_PROGRESS, DeploymentStatus.DELETE_COMPLETE}
    dep = store.modify_deployment(
        deployment_id, lambda d: {} if d.status in deleting else {"status": status, "status_reason": reason}
    )
    return dep.status == status


def finalize_run(
    store: Store,
    deployment_id: str,
    since_event: int,
    log: Callable[[str], None] = print,
    iam: IamClient | None = None,
    site_services: SiteServices | None = None,
    tokens: AccessTokens | None = None,
    deletion_run: bool = True,
    failed_tasks: Collection[str] = (),
) -> RunOutcome:
    """iam: the IdP client, needed to delete the cluster's own IAM client when a deletion ends.
    site_services: the site's Marathon and Chronos, to remove what the deployment put there.
    tokens: the owner's access tokens (a delegated deployment), for sites that act as the owner.
    deletion_run: whether the run began as a deletion; a creation/update overtaken by an undeploy request leaves
    the deletion, and its outcome, to the run that request queued (never a DELETE_FAILED for VMs it will delete).
    failed_tasks: the run's tasks that Airflow has as failed; one that recorded no reason (killed) fails the run too.
    A deleted deployment is left alone: a stray run after the deletion changes nothing."""
    dep = store.get_deployment(deployment_id)
    if dep.status == DeploymentStatus.DELETE_COMPLETE:
        log(f"deployment {deployment_id} is deleted: nothing to finalize")
        return RunOutcome(DeploymentStatus.DELETE_COMPLETE, "already deleted: this run changed nothing")
    if dep.status == DeploymentStatus.DELETE_IN_PROGRESS and not deletion_run:
        message = "undeploy requested during this run: it stopped at its next task; the next run deletes everything"
        store.add_event(deployment_id, "undeploy", message)
        log(message)
        return RunOutcome(DeploymentStatus.DELETE_IN_PROGRESS, message)
    failures = [
        e.message
        for e in store.list_events(deployment_id, limit=10_000, after_id=since_event)
        if e.kind == FAILURE_EVENT
    ]
    reported = {message.split(": ", 1)[0] for message in failures}
    failures += [f"{task}: {UNREPORTED}" for task in sorted(failed_tasks) if task not in reported]
    if dep.status == DeploymentStatus.DELETE_IN_PROGRESS:
        left = store.list_nodes(deployment_id)
        if failures or left:
            reason = "; ".join(failures) or f"{len(left)} node(s) still exist: {', '.join(n.name for n in left)}"
            store.set_status(deployment_id, DeploymentStatus.DELETE_FAILED, reason)
            return RunOutcome(DeploymentStatus.DELETE_FAILED, reason, failed=True)
        from dodas_tasks.deploy.components import Deployer

        try:
            released = Deployer(store, deployment_id, log=log, site_services=site_services).release()
        except Exception as exc:  # whatever stops it, the apps must not be forgotten on the site
            reason = f"the deployment's apps on a site service were not removed ({exc}); run the deletion again"
            store.set_status(deployment_id, DeploymentStatus.DELETE_FAILED, reason)
            return RunOutcome(DeploymentStatus.DELETE_FAILED, reason, failed=True)
        if released:
            store.add_event(deployment_id, "undeploy", f"removed from the site's services: {', '.join(released)}")
        driver_for(dep, tokens).delete_key_pair(key_pair_name(deployment_id))
        if stored_client(dep) is not None:
            if iam is None:
                reason = "the cluster's IAM client is still registered and no IAM connection (dodas_iam) can delete it"
                store.set_status(deployment_id, DeploymentStatus.DELETE_FAILED, reason)
                return RunOutcome(DeploymentStatus.DELETE_FAILED, reason, failed=True)
            release_cluster_client(store, deployment_id, iam)
        store.update_deployment(deployment_id, outputs={})
        store.set_status(deployment_id, DeploymentStatus.DELETE_COMPLETE, "all resources deleted")
        log(f"deployment {deployment_id}: every resource deleted")
        return RunOutcome(DeploymentStatus.DELETE_COMPLETE, "all resources deleted")
    settle_nodes(store, deployment_id, log, tokens)
    creating = dep.status in (DeploymentStatus.CREATE_IN_PROGRESS, DeploymentStatus.CREATE_FAILED)
    if failures:
        reason = "; ".join(failures)
        if creating:
            return _failed_creation(store, dep, reason, log, site_services, tokens)
        store.set_status(deployment_id, DeploymentStatus.UPDATE_FAILED, reason)
        return RunOutcome(DeploymentStatus.UPDATE_FAILED, reason, failed=True)
    from dodas_tasks.deploy.components import Deployer

    outputs = Deployer(store, deployment_id, log=log).outputs()
    status = DeploymentStatus.CREATE_COMPLETE if creating else DeploymentStatus.UPDATE_COMPLETE
    if not set_status_unless_deleting(store, deployment_id, status):  # an undeploy came in the last moment
        return RunOutcome(DeploymentStatus.DELETE_IN_PROGRESS, "undeploy requested: the next run deletes everything")
    return RunOutcome(status, outputs=outputs)


def settle_nodes(
    store: Store, deployment_id: str, log: Callable[[str], None], tokens: AccessTokens | None = None
) -> None:
    """However the run ended (a provision task killed or failed beside booting VMs), a node whose VM the cloud
    reports ACTIVE gets its address instead of staying CREATING; a cloud that does not answer leaves it so."""
    from dodas_tasks.deploy.provision import GroupProvisioner

    for group in sorted({n.group for n in store.list_nodes(deployment_id) if n.state == NodeState.CREATING}):
        try:
            settled = GroupProvisioner(store, deployment_id, group, log=log, tokens=tokens).settle()
        except CloudError as exc:
            log(f"{group}: could not ask the cloud about its booting VMs: {exc}")
            continue
        if settled:
            log(f"{group}: {len(settled)} VM(s) recorded ACTIVE after the run's provisioning ended")


def next_cloud(dep: DeploymentRecord) -> str | None:
    """The next cloud in the deployment's preference list, within its retry budget (maxProvidersRetry)."""
    budget = int(dep.options.get("max_providers_retry", len(dep.clouds)))
    tried = int(dep.options.get("failovers", 0)) + 1
    if dep.cloud not in dep.clouds or tried >= budget:
        return None
    position = dep.clouds.index(dep.cloud)
    return dep.clouds[position + 1] if position + 1 < len(dep.clouds) else None


def remove_everything(
    store: Store,
    dep: DeploymentRecord,
    log: Callable[[str], None],
    site_services: SiteServices | None = None,
    tokens: AccessTokens | None = None,
) -> None:
    """Delete every VM of every group on the deployment's current cloud, then its key pair, and what it put on
    the site's services (a refusal there is recorded as an event: the deployment and its reason stay)."""
    from dodas_tasks.deploy.components import Deployer
    from dodas_tasks.deploy.provision import GroupProvisioner

    for group in {n.group for n in store.list_nodes(dep.id)}:
        GroupProvisioner(store, dep.id, group, log=log, tokens=tokens).delete_all()
    driver_for(dep, tokens).delete_key_pair(key_pair_name(dep.id))
    try:
        released = Deployer(store, dep.id, log=log, site_services=site_services).release()
    except Exception as exc:  # the VMs are gone; say what stays on the site rather than hide the failure
        store.add_event(dep.id, "undeploy", f"the deployment's apps on a site service were not removed: {exc}")
        return
    if released:
        store.add_event(dep.id, "undeploy", f"removed from the site's services: {', '.join(released)}")


def _failed_creation(
    store: Store,
    dep: DeploymentRecord,
    reason: str,
    log: Callable[[str], None],
    site_services: SiteServices | None = None,
    tokens: AccessTokens | None = None,
) -> RunOutcome:
    """A failed creation fails over to the next cloud (cleaning this one), is rolled back, or keeps what runs."""
    following = next_cloud(dep)
    if following is not None:
        remove_everything(store, dep, log, site_services, tokens)
        store.update_deployment(
            dep.id,
            cloud=following,
            options={**dep.options, "failovers": int(dep.options.get("failovers", 0)) + 1, "failover_pending": True},
        )
        message = f"failing over from {dep.cloud} to {following} after: {reason}"
        store.set_status(dep.id, DeploymentStatus.CREATE_IN_PROGRESS, message)
        store.add_event(dep.id, "failover", message)
        return RunOutcome(DeploymentStatus.CREATE_IN_PROGRESS, message, failed=True)
    if dep.options.get("on_partial") == "rollback" or not dep.options.get("keep_last_attempt", True):
        remove_everything(store, dep, log, site_services, tokens)
        reason += " (rolled back: nothing left on the cloud)"
    store.set_status(dep.id, DeploymentStatus.CREATE_FAILED, reason)
    return RunOutcome(DeploymentStatus.CREATE_FAILED, reason, failed=True)
