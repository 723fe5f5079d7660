"""Resolve the Plan's deferred references ($attr, $secret, $concat) once the VMs exist."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dodas_tasks.store import NodeRecord
from dodas_tasks.tosca.plan import Plan

_ADDRESS_ATTRIBUTES = {"private_address", "public_address", "ip_address"}


class UnresolvedReference(ValueError):
    """A reference that cannot be resolved yet (no node provisioned) or at all (unknown attribute)."""


class References:
    """Attribute values of provisioned nodes and the deployment's secrets, for one resolution pass."""

    def __init__(
        self, plan: Plan, nodes: Sequence[NodeRecord], secrets: Mapping[str, Any], reveal_secrets: bool = True
    ) -> None:
        self._plan = plan
        self._secrets = secrets
        self._reveal = reveal_secrets  # outputs are shown to users: secrets there stay masked
        self._by_group: dict[str, list[NodeRecord]] = {}
        for node in sorted(nodes, key=lambda n: (n.group, n.index)):
            if node.private_ip:
                self._by_group.setdefault(node.group, []).append(node)

    def group_of(self, node_name: str) -> str | None:
        """The compute group a TOSCA node lives on (itself if it is a Compute node)."""
        if any(g.name == node_name for g in self._plan.groups):
            return node_name
        try:
            return self._plan.component(node_name).host_group
        except KeyError:
            return None

    def addresses(self, group: str, public: bool = False) -> list[str]:
        return [(n.public_ip or n.private_ip) if public else n.private_ip for n in self._by_group.get(group, [])]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "$secret":
                if not self._reveal:
                    return "***"
                if arg not in self._secrets:
                    raise UnresolvedReference(f"secret {arg!r} is not stored for this deployment")
                return self._secrets[arg]
            if key == "$concat":
                return "".join("" if p is None else str(p) for p in self.resolve(arg))
            if key == "$attr":
                return self._attribute(arg["node"], list(arg["path"]))
            if key == "$input":
                raise UnresolvedReference(f"input {arg!r} was not given at submission")
        return {k: self.resolve(v) for k, v in value.items()}

    def _attribute(self, node: str, path: list[Any]) -> Any:
        attribute, rest = path[0], path[1:]
        group = self.group_of(node)
        if attribute not in _ADDRESS_ATTRIBUTES or group is None:
            raise UnresolvedReference(f"attribute {'.'.join(map(str, path))} of {node!r} is not provided")
        values: Any = self.addresses(group, public=attribute == "public_address")
        for key in rest:
            if not isinstance(key, int) or not -len(values) <= key < len(values):
                raise UnresolvedReference(
                    f"{node}.{attribute}[{key}]: the group {group!r} has {len(values)} provisioned node(s)"
                )
            values = values[key]
        return values


def resolve_outputs(plan: Plan, nodes: Sequence[NodeRecord]) -> dict[str, Any]:
    """Template outputs with IPs filled in (secrets masked); one unresolvable output does not hide the others."""
    refs = References(plan, nodes, {}, reveal_secrets=False)
    outputs: dict[str, Any] = {}
    for out in plan.outputs:
        try:
            outputs[out.name] = refs.resolve(out.value)
        except UnresolvedReference as exc:
            outputs[out.name] = None
            outputs.setdefault("_unresolved", {})[out.name] = str(exc)
    return outputs
