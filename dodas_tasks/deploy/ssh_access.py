"""How a worker reaches a deployment's VMs over SSH: the deployment's key, the pinned host keys, and the route.

A route is the jump hosts to go through, outermost first: the site's gateway when its cloud has one (a local
cloud served on another host, a bastion in a cloud's connection), then the cluster's front-end when the
template (an SshJumpHost policy) or the submit option `ssh_jump_group` names its group — DODAS sites ran their
VMs with private addresses behind one public front-end. Configure, deploy, verify, elasticity and healing all
reach nodes through here, so a worker on any host reaches them the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from functools import cached_property

from dodas_tasks.clouds.base import CloudDriver, get_driver
from dodas_tasks.configure import (
    JumpHost,
    JumpHostUnreachable,
    NodeTarget,
    NodeUnreachable,
    forwarded_port,
    ssh_banners,
)
from dodas_tasks.frameworks.base import Node
from dodas_tasks.frameworks.cluster_view import ready_nodes
from dodas_tasks.store import DeploymentRecord, NodeRecord, Store

JUMP_GROUP_OPTION = "ssh_jump_group"  # submit option: the group whose VM is the jump host, when the template has none


def jump_group(dep: DeploymentRecord) -> str | None:
    """The group whose VM is the deployment's jump host: the template's SshJumpHost policy, else the option."""
    flagged = next((g.name for g in dep.plan.groups if g.ssh_jump_host), None)
    return flagged or dep.options.get(JUMP_GROUP_OPTION) or None


def check_jump_group(options: dict, group_names: Iterable[str]) -> list[str]:
    """Problems with the `ssh_jump_group` option at submission (it must name a Compute group of the plan)."""
    given = options.get(JUMP_GROUP_OPTION)
    names = list(group_names)
    if given is None or given in names:
        return []
    return [f"{JUMP_GROUP_OPTION}={given!r} is not a Compute node of the template; use one of: {', '.join(names)}"]


class SshAccess:
    """One deployment's SSH access as seen from this worker. Cheap to make: the key, the cloud's gateway and
    the nodes are read when first needed (the cloud's gateway once per object)."""

    def __init__(self, store: Store, deployment_id: str, *, driver: CloudDriver | None = None) -> None:
        self.store = store
        self.deployment_id = deployment_id
        self._driver = driver

    @cached_property
    def deployment(self) -> DeploymentRecord:
        return self.store.get_deployment(self.deployment_id)

    @cached_property
    def private_key(self) -> str:
        return self.store.get_ssh_private_key(self.deployment_id)

    def known_hosts(self) -> dict[str, str]:
        """The pinned host keys as stored now (another worker may have pinned some meanwhile)."""
        return dict(self.store.get_deployment(self.deployment_id).known_hosts)

    def pin(self, host: str, key: str) -> None:
        """Persist a key pinned at first contact (a node's or a jump host's)."""
        self.store.modify_deployment(self.deployment_id, lambda d: {"known_hosts": {**d.known_hosts, host: key}})

    @cached_property
    def site_route(self) -> tuple[JumpHost, ...]:
        """The cloud's gateway as the first hop, when its VMs are reached through one."""
        driver = self._driver or get_driver(self.deployment.cloud)
        gateway = driver.ssh_gateway()
        if gateway is None:
            return ()
        return (
            JumpHost(
                host=gateway.host,
                port=gateway.port,
                username=gateway.username,
                private_key=gateway.private_key,
                host_key=gateway.host_key,
                name=f"{self.deployment.cloud} gateway",
            ),
        )

    def route(self, node: NodeRecord, nodes: Iterable[NodeRecord] | None = None) -> tuple[JumpHost, ...]:
        """The hops to `node`: the site's gateway, then the front-end unless `node` is in the front-end's group.

        nodes: the deployment's nodes as recorded (read from the store when not given). JumpHostUnreachable
        when the front-end's group has no ready VM (nothing behind it can be reached then)."""
        group = jump_group(self.deployment)
        if group is None or node.group == group:
            return self.site_route
        if nodes is None:
            nodes = self.store.list_nodes(self.deployment_id)
        front = sorted((n for n in ready_nodes(nodes) if n.group == group), key=lambda n: n.index)
        if not front:
            raise JumpHostUnreachable(
                f"node {node.name} is reached through the front-end of group {group!r} (the deployment's SSH jump "
                "host), which has no ready VM now",
                node.name,
            )
        head = front[0]
        return (*self.site_route, JumpHost(host=self.address(head), port=head.ssh_port or 22, name=head.name))

    def address(self, node: NodeRecord) -> str:
        """The address to open for `node` at the end of its route: the private one, except for the front-end
        reached straight from this worker, which is reached at its public address when it has one."""
        if not node.private_ip:
            raise NodeUnreachable(f"node {node.name} has no address recorded yet", node.name)
        if node.group == jump_group(self.deployment) and not self.site_route:
            return node.public_ip or node.private_ip
        return node.private_ip

    def target(self, node: NodeRecord, nodes: Iterable[NodeRecord] | None = None) -> NodeTarget:
        """Where to reach `node`, through its route."""
        host = self.address(node)
        return NodeTarget(name=node.name, host=host, port=node.ssh_port or 22, jump=self.route(node, nodes))

    @contextlib.contextmanager
    def forwarded(self, node: NodeRecord, port: int) -> Iterator[tuple[str, int]]:
        """A (host, port) this worker can open to reach `port` on `node` (a framework's HTTP API): the node's
        own address when it is reached directly, else a local port forwarded through its route."""
        host, route = self.address(node), self.route(node)
        if not route:
            yield host, port
            return
        with forwarded_port(
            route,
            host,
            port,
            private_key=self.private_key,
            known_hosts=self.known_hosts(),
            on_new_host_key=self.pin,
            node=node.name,
        ) as address:
            yield address

    def reach(self, node: Node, port: int) -> contextlib.AbstractContextManager[tuple[str, int]]:
        """The frameworks' Reach (frameworks.base): `port` on the deployment's node of that name."""
        record = next((n for n in self.store.list_nodes(self.deployment_id) if n.name == node.name), None)
        if record is None:
            raise NodeUnreachable(f"node {node.name} is not a node of deployment {self.deployment_id}", node.name)
        return self.forwarded(record, port)

    def ssh_answers(self, nodes: list[NodeRecord]) -> dict[str, bool | None]:
        """By node id: the node's SSH server sends its banner (no login on the node). None when it cannot be
        told: the route to it is down (its front-end or the site's gateway), which is not the node's fault."""
        everyone = self.store.list_nodes(self.deployment_id)
        answers: dict[str, bool | None] = {}
        by_route: dict[tuple[JumpHost, ...], list[NodeRecord]] = {}
        for node in nodes:
            if not node.private_ip:
                answers[node.id] = False
                continue
            try:
                by_route.setdefault(self.route(node, everyone), []).append(node)
            except JumpHostUnreachable:
                answers[node.id] = None
        for route, members in by_route.items():
            addresses = {n.id: (self.address(n), n.ssh_port or 22) for n in members}
            banners = ssh_banners(
                route,
                list(addresses.values()),
                private_key=self.private_key if route else None,
                known_hosts=self.known_hosts() if route else None,
                on_new_host_key=self.pin,
            )
            answers.update({node_id: banners[address] for node_id, address in addresses.items()})
        return answers
