"""TOSCA endpoint ports → Neutron security group rules, and the deterministic names of DODAS security groups.

Every VM is in two groups: its deployment's, whose one rule admits all traffic from the group's own members (the
VMs of one deployment reach each other on any port), and its compute group's: SSH and the ports the template
publishes, each to its remote_cidr. Nothing else is open to the world.
"""

from __future__ import annotations

from typing import Any

from dodas_tasks.clouds.base import CloudError
from dodas_tasks.naming import resource_name, slug

SSH = {"name": "ssh", "protocol": "tcp", "source": 22, "remote_cidr": "0.0.0.0/0"}
_PROTOCOLS = {"tcp", "udp", "icmp"}


def group_sg_name(deployment_id: str, group: str) -> str:
    """The security group holding a compute group's endpoint ports."""
    return resource_name(deployment_id, slug(group, 60))


def internal_sg_name(deployment_id: str) -> str:
    """The security group letting all VMs of a deployment talk to each other."""
    return resource_name(deployment_id)


def ingress_rules(ports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neutron rule bodies (without the group id) for the ports plus SSH; duplicates removed, order kept."""
    rules: list[dict[str, Any]] = []
    for port in [SSH, *ports]:
        rule = _rule(port)
        if rule not in rules:
            rules.append(rule)
    return rules


def _rule(port: dict[str, Any]) -> dict[str, Any]:
    name = port.get("name", "?")
    protocol = str(port.get("protocol") or "tcp").lower()
    if protocol not in _PROTOCOLS:
        raise CloudError(f"port {name!r}: protocol {protocol!r} is not supported; use tcp, udp or icmp")
    rule: dict[str, Any] = {
        "direction": "ingress",
        "ethertype": "IPv4",
        "protocol": protocol,
        "remote_ip_prefix": port.get("remote_cidr") or "0.0.0.0/0",
    }
    if protocol == "icmp":
        return rule
    if port.get("source_range"):
        low, high = (int(v) for v in port["source_range"])
    elif port.get("source") is not None:
        low = high = int(port["source"])
    else:
        raise CloudError(f"port {name!r}: give a port number (source) or a range (source_range)")
    if not 1 <= low <= high <= 65535:
        raise CloudError(f"port {name!r}: {low}-{high} is not a valid port range (1-65535, low first)")
    rule.update(port_range_min=low, port_range_max=high)
    return rule
