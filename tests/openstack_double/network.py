"""Neutron: networks, subnets, ports, security groups and rules, floating IPs, with Neutron's filters and errors
(SecurityGroupInUse, SecurityGroupRuleExists, OverQuota)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .http import HttpError, Request, Response, Router
from .state import PROJECT_ID, Cloud, new_id, now_iso

_PAGING = {"limit", "marker", "fields", "sort_key", "sort_dir", "page_reverse"}


def _error(status: int, kind: str, message: str) -> HttpError:
    return HttpError(status, {"NeutronError": {"type": kind, "message": message, "detail": ""}})


def _filter(items: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
    """Neutron's equality filters on any attribute (several values of one key: any of them)."""
    for key, values in request.query.items():
        if key in _PAGING:
            continue
        wanted = {v.lower() for v in values}

        def keep(item: dict[str, Any], key: str = key, wanted: set[str] = wanted) -> bool:
            value = item.get(key)
            if isinstance(value, list):
                return bool({str(v).lower() for v in value} & wanted)
            return str(value).lower() in wanted or (value is None and "" in wanted)

        items = [i for i in items if keep(i)]
    return items


class Network:
    def __init__(self, cloud: Cloud, base_url: Callable[[], str]) -> None:
        self.cloud, self.base_url = cloud, base_url

    def versions(self, request: Request) -> Response:
        return Response(
            200,
            {
                "versions": [
                    {
                        "id": "v2.0",
                        "status": "CURRENT",
                        "links": [{"rel": "self", "href": f"{self.base_url()}/network/v2.0/"}],
                    }
                ]
            },
        )

    # -- generic collections ---------------------------------------------------------------------------------------

    def _collection(self, name: str) -> dict[str, dict[str, Any]]:
        return {
            "networks": self.cloud.networks,
            "subnets": self.cloud.subnets,
            "ports": self.cloud.ports,
            "security-groups": self.cloud.security_groups,
            "security-group-rules": self.cloud.rules,
            "floatingips": self.cloud.floating_ips,
        }[name]

    @staticmethod
    def _singular(name: str) -> str:
        return {
            "networks": "network",
            "subnets": "subnet",
            "ports": "port",
            "security-groups": "security_group",
            "security-group-rules": "security_group_rule",
            "floatingips": "floatingip",
        }[name]

    @staticmethod
    def _plural_key(name: str) -> str:
        return name.replace("-", "_")

    def _render(self, name: str, item: dict[str, Any]) -> dict[str, Any]:
        if name == "security-groups":
            return {**item, "security_group_rules": self.cloud.sg_rules(item["id"])}
        return dict(item)

    def lister(self, name: str) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            items = _filter([self._render(name, i) for i in self._collection(name).values()], request)
            return Response(200, {self._plural_key(name): items})

        return handler

    def shower(self, name: str) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            item = self._collection(name).get(request.params["id"])
            if item is None:
                kind = self._singular(name)
                raise _error(
                    404,
                    f"{kind.title().replace('_', '')}NotFound",
                    f"{kind} {request.params['id']} could not be found.",
                )
            return Response(200, {self._singular(name): self._render(name, item)})

        return handler

    def _body(self, request: Request, key: str) -> dict[str, Any]:
        body = (request.body or {}).get(key)
        if not isinstance(body, dict):
            raise _error(400, "BadRequest", f"Bad {key} request: missing body.")
        return body

    # -- writes ------------------------------------------------------------------------------------------------------

    def create_port(self, request: Request) -> Response:
        body = self._body(request, "port")
        if body.get("network_id") not in self.cloud.networks:
            raise _error(404, "NetworkNotFound", f"Network {body.get('network_id')} could not be found.")
        groups = body.get("security_groups")
        for sg in groups or []:
            if sg not in self.cloud.security_groups:
                raise _error(404, "SecurityGroupNotFound", f"Security group {sg} does not exist")
        port = self.cloud.add_port(
            body["network_id"],
            name=body.get("name", ""),
            description=body.get("description", ""),
            security_groups=groups,
            device_id=body.get("device_id", ""),
            device_owner=body.get("device_owner", ""),
        )
        return Response(201, {"port": port})

    def delete_port(self, request: Request) -> Response:
        if request.params["id"] not in self.cloud.ports:
            raise _error(404, "PortNotFound", f"Port {request.params['id']} could not be found.")
        self.cloud.delete_port(request.params["id"])
        return Response(204)

    def create_security_group(self, request: Request) -> Response:
        body = self._body(request, "security_group")
        sg_id = self.cloud.add_security_group(body.get("name", ""), body.get("description", ""))
        return Response(201, {"security_group": self._render("security-groups", self.cloud.security_groups[sg_id])})

    def delete_security_group(self, request: Request) -> Response:
        sg_id = request.params["id"]
        if sg_id not in self.cloud.security_groups:
            raise _error(404, "SecurityGroupNotFound", f"Security group {sg_id} does not exist")
        if any(sg_id in p["security_groups"] for p in self.cloud.ports.values()):
            raise _error(409, "SecurityGroupInUse", f"Security Group {sg_id} in use.")
        del self.cloud.security_groups[sg_id]
        for rule_id in [r["id"] for r in self.cloud.sg_rules(sg_id)]:
            del self.cloud.rules[rule_id]
        return Response(204)

    def create_rule(self, request: Request) -> Response:
        body = self._body(request, "security_group_rule")
        sg_id = body.get("security_group_id")
        if sg_id not in self.cloud.security_groups:
            raise _error(404, "SecurityGroupNotFound", f"Security group {sg_id} does not exist")
        fields = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max", "remote_ip_prefix")
        for rule in self.cloud.sg_rules(sg_id):
            if all(rule.get(f) == body.get(f) for f in fields) and rule.get("remote_group_id") == body.get(
                "remote_group_id"
            ):
                raise _error(
                    409, "SecurityGroupRuleExists", f"Security group rule already exists. Rule id is {rule['id']}."
                )
        return Response(201, {"security_group_rule": self.cloud.add_rule(sg_id, body)})

    def delete_rule(self, request: Request) -> Response:
        if self.cloud.rules.pop(request.params["id"], None) is None:
            raise _error(404, "SecurityGroupRuleNotFound", "Security group rule could not be found.")
        return Response(204)

    def create_floating_ip(self, request: Request) -> Response:
        body = self._body(request, "floatingip")
        cloud = self.cloud
        network = cloud.networks.get(body.get("floating_network_id"))
        if network is None or not network["router:external"]:
            raise _error(404, "ExternalNetworkNotFound", "External network could not be found.")
        limit = cloud.quotas.floatingip
        if limit >= 0 and len(cloud.floating_ips) >= limit:
            raise _error(409, "OverQuota", "Quota exceeded for resources: ['floatingip'].")
        port_id = body.get("port_id")
        fixed = None
        if port_id:
            port = cloud.ports.get(port_id)
            if port is None:
                raise _error(404, "PortNotFound", f"Port {port_id} could not be found.")
            if any(f["port_id"] == port_id for f in cloud.floating_ips.values()):
                raise _error(409, "FloatingIPPortAlreadyAssociated", f"Port {port_id} already has a floating IP.")
            fixed = port["fixed_ips"][0]["ip_address"]
        _, address = cloud.next_ip(network["id"])
        fip = {
            "id": new_id(),
            "floating_ip_address": address,
            "floating_network_id": network["id"],
            "port_id": port_id,
            "fixed_ip_address": fixed,
            "router_id": None,
            "status": "ACTIVE" if port_id else "DOWN",
            "description": body.get("description", ""),
            "tenant_id": PROJECT_ID,
            "project_id": PROJECT_ID,
            "tags": [],
            "created_at": now_iso(),
        }
        cloud.floating_ips[fip["id"]] = fip
        return Response(201, {"floatingip": fip})

    def delete_floating_ip(self, request: Request) -> Response:
        if self.cloud.floating_ips.pop(request.params["id"], None) is None:
            raise _error(404, "FloatingIPNotFound", f"Floating IP {request.params['id']} could not be found")
        return Response(204)

    def register(self, router: Router) -> None:
        base = "/network/v2.0"
        router.add("GET", "/network", "network.versions", self.versions)
        router.add("GET", base, "network.versions", self.versions)
        for name in ("networks", "subnets", "ports", "security-groups", "security-group-rules", "floatingips"):
            op = f"network.{name.replace('-', '_')}"
            router.add("GET", f"{base}/{name}", f"{op}.list", self.lister(name))
            router.add("GET", f"{base}/{name}/{{id}}", f"{op}.show", self.shower(name))
        router.add("POST", f"{base}/ports", "network.ports.create", self.create_port)
        router.add("DELETE", f"{base}/ports/{{id}}", "network.ports.delete", self.delete_port)
        router.add("POST", f"{base}/security-groups", "network.security_groups.create", self.create_security_group)
        router.add(
            "DELETE", f"{base}/security-groups/{{id}}", "network.security_groups.delete", self.delete_security_group
        )
        router.add("POST", f"{base}/security-group-rules", "network.security_group_rules.create", self.create_rule)
        router.add(
            "DELETE", f"{base}/security-group-rules/{{id}}", "network.security_group_rules.delete", self.delete_rule
        )
        router.add("POST", f"{base}/floatingips", "network.floatingips.create", self.create_floating_ip)
        router.add("DELETE", f"{base}/floatingips/{{id}}", "network.floatingips.delete", self.delete_floating_ip)
