"""Before a run creates any VM: does the cloud's quota hold what it will create?

Where the cloud tells its quota (CloudDriver.quota_room: OpenStack's limits, EC2's account attributes, the local
cloud's DODAS_LOCAL_MAX_SERVERS), a deployment that cannot fit is refused at once with the cloud's numbers, rather
than half-built and failing on its last VMs. A quota error cannot pass by trying again, so it is never retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dodas_tasks.clouds.base import CloudDriver, CloudError, QuotaExceeded, QuotaRoom
from dodas_tasks.deploy.cloud_access import AccessTokens, driver_for
from dodas_tasks.store import NodeState, Store

DEFAULT_CPUS = 1  # what a group without host capabilities gets (as GroupProvisioner creates it)
DEFAULT_MEM_MB = 1024


@dataclass(frozen=True)
class Needed:
    """What a run still has to create: servers, and their cores and memory."""

    servers: int = 0
    cores: int = 0
    ram_mb: int = 0


def needed(store: Store, deployment_id: str) -> Needed:
    """The VMs the deployment's desired counts ask for beyond the live nodes it has (an ERROR node's replacement
    takes its slot's place, so it adds nothing)."""
    dep = store.get_deployment(deployment_id)
    live: dict[str, int] = {}
    for node in store.list_nodes(deployment_id):
        if node.state != NodeState.DELETING:
            live[node.group] = live.get(node.group, 0) + 1
    servers = cores = ram = 0
    for group in dep.plan.groups:
        new = max(0, int(dep.desired_counts.get(group.name, group.count)) - live.get(group.name, 0))
        servers += new
        cores += new * (group.num_cpus or DEFAULT_CPUS)
        ram += new * (group.mem_mb or DEFAULT_MEM_MB)
    return Needed(servers, cores, ram)


def shortfalls(want: Needed, room: QuotaRoom) -> list[str]:
    """Each resource the room cannot hold: '<what> needed, <left> left'."""
    found = []
    for name, asked, left, unit in (
        ("server", want.servers, room.servers, ""),
        ("core", want.cores, room.cores, ""),
        ("memory", want.ram_mb, room.ram_mb, " MB"),
    ):
        if left is not None and asked > left:
            what = f"{asked}{unit} of memory" if name == "memory" else f"{asked} {name}(s)"
            found.append(f"{what} needed, {left}{unit} left")
    return found


def check_quota(
    store: Store,
    deployment_id: str,
    log: Callable[[str], None] = print,
    tokens: AccessTokens | None = None,
    driver: CloudDriver | None = None,
) -> None:
    """Raise QuotaExceeded, naming the cloud's numbers, when what the run will create does not fit the quota; a
    cloud that cannot tell its quota now is not held against the deployment (each create meets the quota).
    tokens: the owner's access tokens (a delegated deployment), for sites that act as the owner."""
    want = needed(store, deployment_id)
    if want.servers == 0:
        return
    dep = store.get_deployment(deployment_id)
    try:
        room = (driver or driver_for(dep, tokens)).quota_room()
    except CloudError as exc:
        log(f"the {dep.cloud} cloud's quota could not be read ({exc}); not checked before creating")
        return
    if room is None:
        return
    log(f"{want.servers} VM(s) to create on {dep.cloud}; its quota: {room.source or room}")
    short = shortfalls(want, room)
    if short:
        raise QuotaExceeded(
            f"the {dep.cloud} cloud's quota cannot hold this deployment: {'; '.join(short)}"
            f"{f' ({room.source})' if room.source else ''}; nothing was created"
        )
