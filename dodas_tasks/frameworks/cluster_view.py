"""The cluster view: which ready nodes of which group hold which framework role, with which addresses.

Computed here only, from the plan (components bound to frameworks, their host groups and sizes) and the store's
node records, so the deployer (node scripts, API deploys, verify) and its watchers (autoscaler, healing) see
the same cluster.
"""

from __future__ import annotations

from collections.abc import Iterable

from dodas_tasks.frameworks.base import Cluster, Node
from dodas_tasks.frameworks.registry import Binding, ComponentNotDeployable, binding_for
from dodas_tasks.store import NodeRecord, NodeState
from dodas_tasks.tosca.plan import Component, Plan

# Nodes a framework can count on: provisioned and not failed or going away.
READY_STATES = frozenset({NodeState.CREATED, NodeState.CONFIGURING, NodeState.CONFIGURED, NodeState.STARTED})


def binding_of(component: Component) -> Binding:
    """The framework and role that deploy a plan component; ComponentNotDeployable when none does."""
    return binding_for(component.type_chain, component.name)


def deployable_components(plan: Plan) -> list[Component]:
    """The plan's components some framework deploys, in plan order (elasticity nodes, volumes … left out)."""
    found = []
    for comp in plan.components:
        try:
            binding_of(comp)
        except ComponentNotDeployable:
            continue
        found.append(comp)
    return found


def framework_names(plan: Plan) -> list[str]:
    """The frameworks the plan's components bind to, each once, in plan order."""
    return list(dict.fromkeys(binding_of(comp).framework for comp in deployable_components(plan)))


def framework_of_group(plan: Plan, group: str) -> str | None:
    """The framework whose component runs on the group (Spark's worker on the worker group)."""
    return next((binding_of(c).framework for c in deployable_components(plan) if c.host_group == group), None)


def ready_nodes(nodes: Iterable[NodeRecord]) -> list[NodeRecord]:
    """The nodes a framework can use: in a ready state and with an address."""
    return [n for n in nodes if n.state in READY_STATES and n.private_ip]


def cluster_of(plan: Plan, nodes: Iterable[NodeRecord], framework_name: str) -> Cluster:
    """The framework's ready nodes by role: each of its components' host group, sized from the group's host."""
    by_group: dict[str, list[NodeRecord]] = {}
    for node in ready_nodes(nodes):
        by_group.setdefault(node.group, []).append(node)
    roles: dict[str, list[Node]] = {}
    for comp in deployable_components(plan):
        binding = binding_of(comp)
        if binding.framework != framework_name or comp.host_group is None:
            continue
        group = plan.group(comp.host_group)
        roles.setdefault(binding.role, []).extend(
            Node(name=n.name, ip=n.private_ip or "", cpus=group.num_cpus or 1, memory_mb=group.mem_mb or 1024)
            for n in by_group.get(comp.host_group, [])
        )
    return Cluster({role: tuple(members) for role, members in roles.items()})
