"""TOSCA endpoint ports → EC2 security group rules, and the security groups named after their rules.

Every VM is in two groups: its compute group's (SSH and the ports the template publishes, each to its remote_cidr)
and its deployment's, whose one rule lets every VM of the deployment reach every other on any port. Nothing else
is open to the world.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from dodas_tasks.clouds.base import CloudError
from dodas_tasks.naming import TAG_DEPLOYMENT, TAG_GROUP, resource_name

SSH = ("tcp", 22, 22, "0.0.0.0/0")
Rule = tuple[str, int, int, str]  # protocol, from port, to port, CIDR


def ingress_rules(ports: Iterable[Mapping[str, Any] | Any]) -> list[Rule]:
    """TOSCA endpoint ports (dicts name/protocol/source/source_range/remote_cidr) plus SSH, sorted and unique."""
    rules = {SSH}
    for port in ports:
        p = port if isinstance(port, Mapping) else vars(port)
        protocol = str(p.get("protocol") or "tcp").lower()
        if protocol not in ("tcp", "udp", "icmp"):
            raise CloudError(f"port {p.get('name')!r}: protocol {protocol!r} is not tcp, udp or icmp")
        cidr = str(p.get("remote_cidr") or "0.0.0.0/0")
        if p.get("source_range"):
            low, high = (int(v) for v in p["source_range"])
        elif p.get("source") is not None:
            low = high = int(p["source"])
        else:
            raise CloudError(f"port {p.get('name')!r}: needs `source` or `source_range`")
        if protocol == "icmp":
            low, high = -1, -1
        elif not 0 < low <= high <= 65535:
            raise CloudError(f"port {p.get('name')!r}: {low}-{high} is not a valid port range")
        rules.add((protocol, low, high, cidr))
    return sorted(rules)


def security_group_name(tags: Mapping[str, str], name: str, rules: list[Rule]) -> str:
    """dodas-<deployment>-<group>-<hash of the rules>: one group per deployment, compute group and port set."""
    digest = hashlib.sha256(repr(rules).encode()).hexdigest()[:8]
    owner = tags.get(TAG_DEPLOYMENT) or name
    return resource_name(owner, tags.get(TAG_GROUP, "vm"), digest)[:255]


def deployment_group_name(deployment_id: str) -> str:
    """The security group every VM of a deployment is in (as on OpenStack): its members reach each other."""
    return resource_name(deployment_id)


def missing_self_rule(group: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The IpPermissions a deployment's group still lacks: all traffic from the group itself, if not there yet."""
    own = group["GroupId"]
    pairs = [pair for perm in group.get("IpPermissions", []) for pair in perm.get("UserIdGroupPairs", [])]
    if any(pair.get("GroupId") == own for pair in pairs):
        return []
    return [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": own}]}]


def missing_port_rules(group: Mapping[str, Any], rules: list[Rule]) -> list[dict[str, Any]]:
    """The IpPermissions a compute group's security group still lacks (a crash may have left some out)."""
    return to_permissions(sorted(set(rules) - from_permissions(group.get("IpPermissions", []))))


def to_permissions(rules: Iterable[Rule]) -> list[dict[str, Any]]:
    """EC2 IpPermissions, one per rule."""
    return [
        {"IpProtocol": proto, "FromPort": low, "ToPort": high, "IpRanges": [{"CidrIp": cidr}]}
        for proto, low, high, cidr in rules
    ]


def from_permissions(permissions: Iterable[Mapping[str, Any]]) -> set[Rule]:
    """The rules an existing security group already has."""
    have = set()
    for perm in permissions:
        for ip_range in perm.get("IpRanges", []):
            have.add(
                (
                    str(perm.get("IpProtocol")),
                    int(perm.get("FromPort", -1)),
                    int(perm.get("ToPort", -1)),
                    str(ip_range.get("CidrIp")),
                )
            )
    return have
