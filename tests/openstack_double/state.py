"""The double's cloud: one project's servers, ports, networks, groups, floating IPs and volumes, with time-driven
states (BUILD for `build_seconds` then ACTIVE or ERROR; deletion finishing after `delete_seconds`), evaluated
lazily under one lock at every request."""

from __future__ import annotations

import ipaddress
import itertools
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PROJECT_ID = "4f3c0d0e9a8b4c4e9d6f1a2b3c4d5e6f"
DOMAIN_ID = "default"
USER_ID = "9c1d5f2e3a4b4c6d8e0f1a2b3c4d5e6f"
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."

FLAVORS = [  # id, name, vcpus, ram MiB, disk GB
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
    ("4", "m1.large", 4, 8192, 80),
    ("5", "m1.xlarge", 8, 16384, 160),
]
IMAGES = {"ubuntu-22.04": "6a0d7c8e-1f2b-4c3d-9e8f-0a1b2c3d4e5f", "centos-7": "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Quotas:
    """Nova/Neutron/Cinder limits of the project (-1: unlimited)."""

    instances: int = -1
    cores: int = -1
    ram: int = -1
    floatingip: int = -1
    volumes: int = -1
    gigabytes: int = -1


@dataclass
class Behaviour:
    """Asynchronous timings and boot failures, changed at run time by tests."""

    build_seconds: float = 1.0
    delete_seconds: float = 0.3
    boot_error_names: str | None = None  # regex: servers whose name matches end in ERROR (no valid host)
    boot_error_rate: float = 0.0
    zones: tuple[str, ...] = ("nova",)  # Nova availability zones; a server asking for none lands in the first
    # a project's private network, made with the project: a loopback one makes a probe of its servers' addresses
    # (SSH banners) refused at once, where 10.0.0.x is sent off the machine and waits out the probe's timeout
    private_cidr: str = "10.0.0.0/24"


@dataclass
class ServerRecord:
    id: str
    name: str
    flavor: tuple
    image_id: str
    key_name: str | None
    metadata: dict[str, str]
    security_groups: list[str]  # group ids
    port_ids: list[str]
    created_ports: list[str]  # ports Nova made (deleted with the server)
    volumes: list[tuple[str, bool]]  # (volume id, delete_on_termination)
    ready_at: float
    fails: str | None
    availability_zone: str = "nova"
    created: str = field(default_factory=now_iso)
    status: str = "BUILD"
    task_state: str | None = "spawning"
    delete_at: float | None = None
    fault: dict[str, Any] | None = None


class Cloud:
    """All resources of the one project, and the rules that change them."""

    def __init__(self, behaviour: Behaviour, quotas: Quotas) -> None:
        self.behaviour, self.quotas = behaviour, quotas
        self.servers: dict[str, ServerRecord] = {}
        self.keypairs: dict[str, dict[str, Any]] = {}
        self.networks: dict[str, dict[str, Any]] = {}
        self.subnets: dict[str, dict[str, Any]] = {}
        self.ports: dict[str, dict[str, Any]] = {}
        self.security_groups: dict[str, dict[str, Any]] = {}
        self.rules: dict[str, dict[str, Any]] = {}
        self.floating_ips: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self.images = {
            image_id: {"id": image_id, "name": name, "status": "active", "visibility": "public"}
            for name, image_id in IMAGES.items()
        }
        self._ips: dict[str, itertools.count] = {}
        self.private_net = self._network("private", behaviour.private_cidr, external=False)
        self.public_net = self._network("public", "172.24.4.0/24", external=True)
        self.default_sg = self.add_security_group("default", "Default security group")

    # -- networks ------------------------------------------------------------------------------------------------

    def _network(self, name: str, cidr: str, external: bool) -> str:
        net_id, subnet_id = new_id(), new_id()
        self.networks[net_id] = {
            "id": net_id,
            "name": name,
            "status": "ACTIVE",
            "admin_state_up": True,
            "router:external": external,
            "shared": False,
            "subnets": [subnet_id],
            "tenant_id": PROJECT_ID,
            "project_id": PROJECT_ID,
            "mtu": 1450,
            "description": "",
            "tags": [],
        }
        self.subnets[subnet_id] = {"id": subnet_id, "network_id": net_id, "cidr": cidr, "ip_version": 4}
        self._ips[net_id] = itertools.count(10)
        return net_id

    def next_ip(self, net_id: str) -> tuple[str, str]:
        subnet = self.subnets[self.networks[net_id]["subnets"][0]]
        network = ipaddress.ip_network(subnet["cidr"])
        return subnet["id"], str(network.network_address + next(self._ips[net_id]))

    def add_port(self, network_id: str, **attrs: Any) -> dict[str, Any]:
        subnet_id, ip = self.next_ip(network_id)
        port_id = new_id()
        port = {
            "id": port_id,
            "name": attrs.get("name", ""),
            "description": attrs.get("description", ""),
            "network_id": network_id,
            "device_id": attrs.get("device_id", ""),
            "device_owner": attrs.get("device_owner", ""),
            "fixed_ips": [{"subnet_id": subnet_id, "ip_address": ip}],
            "mac_address": "fa:16:3e:" + ":".join(f"{b:02x}" for b in uuid.uuid4().bytes[:3]),
            "security_groups": list(attrs.get("security_groups") or [self.default_sg]),
            "status": "DOWN",
            "admin_state_up": True,
            "tenant_id": PROJECT_ID,
            "project_id": PROJECT_ID,
            "tags": [],
            "created_at": now_iso(),
        }
        self.ports[port_id] = port
        return port

    def add_security_group(self, name: str, description: str) -> str:
        sg_id = new_id()
        self.security_groups[sg_id] = {
            "id": sg_id,
            "name": name,
            "description": description,
            "tenant_id": PROJECT_ID,
            "project_id": PROJECT_ID,
            "security_group_rules": [],
            "tags": [],
            "stateful": True,
            "created_at": now_iso(),
        }
        for ethertype in ("IPv4", "IPv6"):  # Neutron adds egress rules to every new group
            self.add_rule(sg_id, {"direction": "egress", "ethertype": ethertype})
        return sg_id

    def add_rule(self, sg_id: str, body: dict[str, Any]) -> dict[str, Any]:
        rule = {
            "id": new_id(),
            "security_group_id": sg_id,
            "direction": body.get("direction", "ingress"),
            "ethertype": body.get("ethertype", "IPv4"),
            "protocol": body.get("protocol"),
            "port_range_min": body.get("port_range_min"),
            "port_range_max": body.get("port_range_max"),
            "remote_ip_prefix": body.get("remote_ip_prefix"),
            "remote_group_id": body.get("remote_group_id"),
            "description": body.get("description", ""),
            "tenant_id": PROJECT_ID,
            "project_id": PROJECT_ID,
        }
        self.rules[rule["id"]] = rule
        return rule

    def sg_rules(self, sg_id: str) -> list[dict[str, Any]]:
        return [r for r in self.rules.values() if r["security_group_id"] == sg_id]

    def find_sg(self, name_or_id: str) -> str | None:
        if name_or_id in self.security_groups:
            return name_or_id
        named = [g for g in self.security_groups.values() if g["name"] == name_or_id]
        return named[0]["id"] if len(named) == 1 else None

    # -- time ------------------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance every asynchronous state whose time has come."""
        now = time.monotonic()
        for server in list(self.servers.values()):
            if server.delete_at is not None:
                if now >= server.delete_at:
                    self._finish_delete(server)
            elif server.status == "BUILD" and now >= server.ready_at:
                if server.fails:
                    server.status, server.task_state = "ERROR", None
                    server.fault = {"code": 500, "message": server.fails, "created": now_iso()}
                else:
                    server.status, server.task_state = "ACTIVE", None
                    for port_id in server.port_ids:
                        self.ports[port_id]["status"] = "ACTIVE"
                    for volume_id, _ in server.volumes:
                        self.volumes[volume_id]["status"] = "in-use"

    def _finish_delete(self, server: ServerRecord) -> None:
        for port_id in server.port_ids:
            port = self.ports.get(port_id)
            if port is None:
                continue
            if port_id in server.created_ports:
                self.delete_port(port_id)
            else:
                port.update(device_id="", device_owner="", status="DOWN")
        for volume_id, delete in server.volumes:
            volume = self.volumes.get(volume_id)
            if volume is None:
                continue
            if delete:
                del self.volumes[volume_id]
            else:
                volume.update(status="available", attachments=[])
        del self.servers[server.id]

    def delete_port(self, port_id: str) -> None:
        self.ports.pop(port_id, None)
        for fip in self.floating_ips.values():  # Neutron disassociates floating IPs of a deleted port
            if fip["port_id"] == port_id:
                fip.update(port_id=None, fixed_ip_address=None, status="DOWN")

    # -- quotas ----------------------------------------------------------------------------------------------------

    def usage(self) -> dict[str, int]:
        live = list(self.servers.values())
        return {
            "instances": len(live),
            "cores": sum(s.flavor[2] for s in live),
            "ram": sum(s.flavor[3] for s in live),
            "floatingip": len(self.floating_ips),
            "volumes": len(self.volumes),
            "gigabytes": sum(v["size"] for v in self.volumes.values()),
        }

    def boot_failure(self, name: str, roll: float) -> str | None:
        pattern = self.behaviour.boot_error_names
        if (pattern and re.search(pattern, name)) or roll < self.behaviour.boot_error_rate:
            return NO_VALID_HOST
        return None
