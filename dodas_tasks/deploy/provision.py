"""Provision one compute group: make the cloud match the desired count, adopting what already exists.

Order matters for crash safety: a node row (state CREATING, deterministic name) is written before the cloud call,
and every server carries tags (deployment, group, index), so a run that died after `create_server` finds the
server by its tags next time and adopts it instead of creating a second one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from dodas_tasks.clouds.base import (
    ACTIVE,
    BUILD,
    ERROR,
    CloudDriver,
    CloudError,
    Flavor,
    Server,
    ServerSpec,
)
from dodas_tasks.deploy.backfill import BACKFILL_EVENT, BOOT_FAILED_EVENT, BackfillBudget
from dodas_tasks.deploy.cloud_access import AccessTokens, driver_for
from dodas_tasks.naming import TAG_INDEX, group_tags, key_pair_name, server_name, server_tags
from dodas_tasks.store import DeploymentStatus, NodeRecord, NodeState, Store
from dodas_tasks.tosca.plan import NodeGroup

Log = Callable[[str], None]
_GONE = {NodeState.DELETED, NodeState.DELETING}
_DELETING_STATUSES = {DeploymentStatus.DELETE_IN_PROGRESS, DeploymentStatus.DELETE_COMPLETE}

API_ATTEMPTS = 6


def cloud_call(call: Callable[..., Any], log: Log | None = None) -> Callable[..., Any]:
    """`call` with the 429/5xx-like errors the driver marks retryable tried again (jittered backoff, 6 attempts in
    all); a quota error or any other refusal is raised at once. Retries leave one line in `log`: how many API
    errors were retried and the last one."""

    def attempt(*args: Any, **kwargs: Any) -> Any:
        errors: list[BaseException] = []

        def remember(state: RetryCallState) -> None:
            errors.append(state.outcome.exception())

        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, CloudError) and e.retryable),
            wait=wait_random_exponential(multiplier=0.5, max=10),
            stop=stop_after_attempt(API_ATTEMPTS),
            before_sleep=remember,
            reraise=True,
        )
        try:
            return retrying(call, *args, **kwargs)
        finally:
            if errors and log is not None:
                name = getattr(call, "__name__", "cloud call")
                log(f"{name}: {len(errors)} API error(s) retried; last: {errors[-1]}")

    return attempt


class ProvisioningFailed(RuntimeError):
    """Some VMs of a group could not be created; the message names each and why. `permanent`: trying the same
    again cannot succeed (a quota, a refused request, the backfill budget or deadline spent)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class BootFailed(ProvisioningFailed):
    """VMs failed to be created or to boot and the group's policy is backfill: they may be replaced."""

    def __init__(self, message: str, failures: list[str]) -> None:
        super().__init__(message)
        self.failures = failures


@dataclass
class GroupProgress:
    """What one pass did, and which nodes still wait for the cloud (by node id)."""

    group: str
    desired: int
    pending: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.group}: desired {self.desired}, created {len(self.created)}, adopted {len(self.adopted)}, "
            f"deleted {len(self.deleted)}, waiting for {len(self.pending)}"
        )


class GroupProvisioner:
    """Reconciles one compute group of one deployment with its cloud.

    `tokens`: the owner's access tokens of a delegated deployment; a site that acts as the owners uses them."""

    def __init__(
        self,
        store: Store,
        deployment_id: str,
        group: str,
        log: Log = print,
        driver: CloudDriver | None = None,
        tokens: AccessTokens | None = None,
    ) -> None:
        self.store = store
        self.deployment_id = deployment_id
        self.group_name = group
        self.log = log
        dep = store.get_deployment(deployment_id)
        self.deployment = dep
        self.plan = dep.plan
        self.group: NodeGroup = self.plan.group(group)
        self.driver = driver or driver_for(dep, tokens)

    def desired_count(self) -> int:
        if self.deployment.status in _DELETING_STATUSES:
            return 0
        return int(self.deployment.desired_counts.get(self.group_name, self.group.count))

    # -- one pass: delete what must go, create what is missing --------------------------------------------------

    def start(self) -> GroupProgress:
        desired = self.desired_count()
        progress = GroupProgress(self.group_name, desired)
        if desired > 0:
            cloud_call(self.driver.import_key_pair, self.log)(
                key_pair_name(self.deployment_id), self.deployment.ssh_public_key
            )
        servers = self._servers_by_index()
        nodes = {n.index: n for n in self.store.list_nodes(self.deployment_id, self.group_name)}
        self._adopt(nodes, servers, progress)
        doomed = self._doomed(nodes, servers, desired)
        keep = {i: n for i, n in nodes.items() if n.id not in {d.id for d in doomed}}
        # slots recorded before a crash that hit between the row and the cloud call: create their server now
        unstarted = [i for i, n in keep.items() if n.cloud_id is None and i not in servers]
        missing = unstarted + self._free_indexes(keep, desired - len(keep))
        errors: list[CloudError] = []
        # deletions first: a replaced node's slot must be free (row DELETED) before its successor claims it
        progress.deleted = self._parallel(lambda node: self._delete(node, servers.get(node.index)), doomed, errors)
        failed_creates: list[CloudError] = []
        progress.created = self._parallel(self._create, missing, failed_creates)
        # a create the API kept failing leaves its slot ERROR, to be judged with the failed boots (finish); one the
        # cloud refused (quota, bad request) cannot succeed by trying again
        errors += [e for e in failed_creates if not e.retryable]
        if doomed:
            removed = {d.id for d in doomed} | {d.name for d in doomed} | {d.cloud_id for d in doomed if d.cloud_id}
            self.store.modify_deployment(
                self.deployment_id, lambda d: {"removal_list": [r for r in d.removal_list if r not in removed]}
            )
        progress.pending = [
            n.id for n in self.store.list_nodes(self.deployment_id, self.group_name) if n.state == NodeState.CREATING
        ]
        self.log(progress.summary())
        if errors:
            permanent = any(not e.retryable for e in errors)
            raise ProvisioningFailed(f"{self.group_name}: " + "; ".join(map(str, errors)), permanent=permanent)
        return progress

    def _parallel(self, work: Callable[[Any], str], items: list[Any], errors: list[CloudError]) -> list[str]:
        """Run cloud calls concurrently up to the driver's limit; failures are collected, not raised."""
        done = []
        with ThreadPoolExecutor(max_workers=max(1, min(self.driver.max_concurrency, len(items) or 1))) as pool:
            for future in [pool.submit(work, item) for item in items]:
                try:
                    done.append(future.result())
                except CloudError as exc:
                    errors.append(exc)
        return done

    def _servers_by_index(self) -> dict[int, Server]:
        tags = group_tags(self.deployment_id, self.group_name)
        found: dict[int, Server] = {}
        for server in cloud_call(self.driver.list_servers, self.log)(tags):
            try:
                index = int(server.tags.get(TAG_INDEX, ""))
            except ValueError:
                continue
            if index in found:  # two servers in one slot (should not happen): keep one, the other is a leak
                self.log(f"duplicate server for {self.group_name}[{index}]: deleting {server.id}")
                cloud_call(self.driver.delete_server, self.log)(server.id)
                continue
            found[index] = server
        return found

    def _adopt(self, nodes: dict[int, NodeRecord], servers: dict[int, Server], progress: GroupProgress) -> None:
        """Servers found by tag whose id the store lacks (a crash between create and record) are adopted."""
        for index, server in servers.items():
            node = nodes.get(index)
            if node is not None and node.cloud_id == server.id:
                continue
            node = self.store.upsert_node(
                self.deployment_id,
                self.group_name,
                index,
                cloud=self.driver.name,
                cloud_id=server.id,
                state=NodeState.CREATING if server.status != ACTIVE else node.state if node else NodeState.CREATING,
            )
            nodes[index] = node
            progress.adopted.append(node.id)
            self.store.add_event(self.deployment_id, "adopt", f"{node.name}: adopted server {server.id}", node.id)
            self.log(f"{node.name}: adopted existing server {server.id} ({server.status})")

    def _doomed(self, nodes: dict[int, NodeRecord], servers: dict[int, Server], desired: int) -> list[NodeRecord]:
        """Nodes to delete: asked for by removal list, broken (ERROR or gone at the cloud), or beyond the count."""
        removal = set(self.deployment.removal_list)
        doomed = []
        for index, node in sorted(nodes.items()):
            server = servers.get(index)
            if {node.id, node.name, node.cloud_id} & removal:
                doomed.append(node)
            elif node.state == NodeState.ERROR or (server is not None and server.status == ERROR):
                doomed.append(node)  # replaced below: a failed VM is deleted and created again
            elif server is None and node.cloud_id and node.state != NodeState.CREATING:
                doomed.append(node)  # deleted behind our back
        alive = [n for i, n in sorted(nodes.items()) if n not in doomed]
        excess = len(alive) - desired
        if excess > 0:  # prefer removing nodes that are not ready yet, then the newest
            ranked = sorted(alive, key=lambda n: (n.state in (NodeState.CREATED, NodeState.STARTED), -n.index))
            doomed += ranked[:excess]
        return doomed

    @staticmethod
    def _free_indexes(keep: dict[int, NodeRecord], count: int) -> list[int]:
        free, index = [], 0
        while len(free) < count:
            if index not in keep:
                free.append(index)
            index += 1
        return free

    def _create(self, index: int) -> str:
        name = server_name(self.deployment_id, self.group_name, index)
        node = self.store.upsert_node(
            self.deployment_id, self.group_name, index, cloud=self.driver.name, state=NodeState.CREATING
        )
        spec = ServerSpec(
            name=name,
            flavor=Flavor(
                cpus=self.group.num_cpus or 1,
                mem_mb=self.group.mem_mb or 1024,
                disk_gb=int(self.group.disk_gb or 0),
                instance_type=self.group.instance_type,
            ),
            image=self.group.image or "default",
            key_name=key_pair_name(self.deployment_id),
            public_key=self.deployment.ssh_public_key,
            tags=server_tags(self.deployment_id, self.group_name, index),
            network=self.group.network,
            ports=[p.__dict__ for p in self.group.ports],
            volumes=[v.__dict__ for v in self.group.volumes],
            availability_zone=self.group.availability_zone,
        )
        try:
            server = cloud_call(self.driver.create_server, lambda line: self.log(f"{name}: {line}"))(spec)
        except CloudError as exc:
            self.store.update_node(node.id, state=NodeState.ERROR, state_reason=f"create failed: {exc}")
            raise CloudError(f"{name}: create failed: {exc}", retryable=exc.retryable) from exc
        self.store.update_node(node.id, cloud_id=server.id)
        self.log(f"{name}: server {server.id} requested ({server.status})")
        return node.id

    def _delete(self, node: NodeRecord, server: Server | None) -> str:
        self.store.update_node(node.id, state=NodeState.DELETING)
        for cloud_id in {node.cloud_id, server.id if server else None} - {None}:
            cloud_call(self.driver.delete_server, lambda line: self.log(f"{node.name}: {line}"))(cloud_id)
        self.store.update_node(node.id, state=NodeState.DELETED)
        self.log(f"{node.name}: deleted")
        return node.id

    # -- waiting for the cloud (called from a deferrable trigger, in a thread) ------------------------------------

    def poll(self, node_ids: list[str]) -> dict[str, str]:
        """Cloud status of each pending node (BUILD, ACTIVE or ERROR) from one list call for the whole group,
        so waiting costs one API call per poll however many VMs boot (no polling storm)."""
        tags = group_tags(self.deployment_id, self.group_name)
        listed = {server.id: server.status for server in cloud_call(self.driver.list_servers, self.log)(tags)}
        statuses = {}
        for node_id in node_ids:
            cloud_id = self.store.get_node(node_id).cloud_id
            status = listed.get(cloud_id) if cloud_id else ERROR
            if status is None:  # not listed (yet?): ask for it alone before calling it gone
                server = self.driver.get_server(cloud_id)
                status = server.status if server else ERROR
            statuses[node_id] = status
        return statuses

    def finish(self, node_ids: list[str], *, judge: bool = True) -> list[NodeRecord]:
        """Record IPs and host keys of ACTIVE servers; failed ones become ERROR, each recorded as a failed boot.
        judge: the failures (slots whose create failed in start() too) go to the group's policy: backfill raises
        BootFailed, keep goes on with enough VMs, rollback deletes the group."""
        failures, ready = [], []
        known_hosts: dict[str, str] = {}
        tags = group_tags(self.deployment_id, self.group_name)
        listed = (
            {server.id: server for server in cloud_call(self.driver.list_servers, self.log)(tags)} if node_ids else {}
        )
        for node in self.store.list_nodes(self.deployment_id, self.group_name) if judge else []:
            if node.state == NodeState.ERROR and node.id not in node_ids:  # its create failed in start()
                failures.append(self._boot_failed(node, node.state_reason or "create failed"))
        for node_id in node_ids:
            node = self.store.get_node(node_id)
            server = listed.get(node.cloud_id) if node.cloud_id else None
            if server is None and node.cloud_id:  # not listed: ask for it alone before calling it gone
                server = self.driver.get_server(node.cloud_id)
            if server is None or server.status != ACTIVE:
                reason = (server.fault if server else None) or ("server vanished" if server is None else server.status)
                self.store.update_node(node_id, state=NodeState.ERROR, state_reason=f"boot failed: {reason}")
                failures.append(self._boot_failed(node, reason))
                continue
            ready.append(
                self.store.update_node(
                    node_id,
                    state=NodeState.CREATED,
                    private_ip=server.private_ip,
                    public_ip=server.public_ip,
                    ssh_port=server.ssh_port,
                )
            )
            if server.host_key and server.address:
                known_hosts[f"{server.address}:{server.ssh_port}"] = server.host_key
            self.log(f"{node.name}: ACTIVE at {server.private_ip}")
        if known_hosts:
            self.store.modify_deployment(
                self.deployment_id, lambda d: {"known_hosts": {**d.known_hosts, **known_hosts}}
            )
        if failures and judge:
            self._on_partial(failures)
        return ready

    def _boot_failed(self, node: NodeRecord, reason: str) -> str:
        """Record one failed boot (counted against the run's backfill budget); returns "<name>: <reason>"."""
        line = f"{node.name}: {reason}"
        self.store.add_event(self.deployment_id, BOOT_FAILED_EVENT, line, node.id)
        return line

    def settle(self) -> list[NodeRecord]:
        """Nodes still CREATING whose server the cloud reports ACTIVE get their addresses (CREATED), those it
        reports failed or gone become ERROR, those still booting stay: run when a run ends however it ended, so
        an ACTIVE VM never stays CREATING without an address (a killed task, a failed sibling)."""
        waiting = [
            n for n in self.store.list_nodes(self.deployment_id, self.group_name) if n.state == NodeState.CREATING
        ]
        if not waiting:
            return []
        statuses = self.poll([n.id for n in waiting])
        done = [node_id for node_id, status in statuses.items() if status != BUILD]
        return self.finish(done, judge=False) if done else []

    def backfill(self, failed: BootFailed, budget: BackfillBudget, now: datetime) -> GroupProgress:
        """Replace the VMs that failed (delete them, create new ones in their slots) while the run's budget and
        deadline allow; else ProvisioningFailed (permanent) naming the failures and the bound that stopped it."""
        spent = budget.failures(self.store, self.deployment_id)
        refusal = budget.refusal(spent, now)
        if refusal is not None:
            raise ProvisioningFailed(f"{failed} — not replaced: {refusal}", permanent=True)
        message = (
            f"{self.group_name}: replacing {len(failed.failures)} VM(s) that failed to boot "
            f"({spent} failed boot(s) of {budget.max_failures} allowed in this run)"
        )
        self.store.add_event(self.deployment_id, BACKFILL_EVENT, message)
        self.log(message)
        return self.start()

    # -- what to do when some VMs failed: backfill (retry them), keep what runs, or roll back ----------------------

    def partial_policy(self) -> tuple[str, int]:
        """(on_partial, min_ready) from the template's Provisioning policy, else the submit options (per group, then
        global): on_partial backfill (default) / keep / rollback; min_ready a count or a fraction of the desired
        count (default: all of them)."""
        options = self.deployment.options
        group_options = {
            **(options.get("groups") or {}).get(self.group_name, {}),
            **self.group.provisioning,
        }
        policy = str(group_options.get("on_partial") or options.get("on_partial") or "backfill")
        if policy not in ("backfill", "keep", "rollback"):
            raise ProvisioningFailed(f"on_partial={policy!r} is not one of backfill, keep, rollback")
        desired = self.desired_count()
        wanted = group_options.get("min_ready", options.get("min_ready"))
        if wanted is None:
            return policy, desired
        value = float(wanted)
        return policy, min(desired, math.ceil(value * desired) if 0 < value < 1 else int(value))

    def _on_partial(self, failures: list[str]) -> None:
        policy, min_ready = self.partial_policy()
        ready = [n for n in self.store.list_nodes(self.deployment_id, self.group_name) if n.state != NodeState.ERROR]
        summary = f"{self.group_name}: {len(failures)} VM(s) failed: " + "; ".join(failures)
        if policy == "keep" and len(ready) >= min_ready:
            broken = [n for n in self.store.list_nodes(self.deployment_id, self.group_name) if n not in ready]
            self._parallel(lambda n: self._delete(n, None), broken, [])
            self.store.modify_deployment(
                self.deployment_id, lambda d: {"desired_counts": {**d.desired_counts, self.group_name: len(ready)}}
            )
            self.store.add_event(self.deployment_id, "partial", f"kept {len(ready)} VM(s) (min {min_ready}); {summary}")
            self.log(f"keeping {len(ready)} of {len(ready) + len(broken)} VM(s): {summary}")
            return
        if policy == "rollback":
            self.delete_all()
            raise ProvisioningFailed(f"{summary} (rolled back: the group's VMs were deleted)", permanent=True)
        raise BootFailed(summary, failures)  # backfill: the failed VMs are deleted and created again (backfill())

    def delete_all(self) -> list[str]:
        """Delete every VM of the group (rollback, failover); the key pair goes when the deployment finishes."""
        nodes = self.store.list_nodes(self.deployment_id, self.group_name)
        errors: list[CloudError] = []
        deleted = self._parallel(lambda n: self._delete(n, None), nodes, errors)
        if errors:
            raise ProvisioningFailed(f"{self.group_name}: could not delete: " + "; ".join(map(str, errors)))
        return deleted
