"""Nova: versions, flavors, key pairs, servers (create with networks / ports / security groups / metadata / blank
block-device volumes, list with filters, show, delete) and volume attachments, with Nova's quota messages."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import Any

from .http import HttpError, Request, Response, Router
from .state import FLAVORS, PROJECT_ID, USER_ID, Cloud, ServerRecord, new_id, now_iso

MAX_VERSION = "2.79"


def _bad(message: str, status: int = 400) -> HttpError:
    key = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 409: "conflictingRequest"}[status]
    return HttpError(status, {key: {"code": status, "message": message}})


class Compute:
    def __init__(self, cloud: Cloud, base_url: Callable[[], str], rng: random.Random) -> None:
        self.cloud, self.base_url, self.rng = cloud, base_url, rng

    # -- versions, flavors, key pairs -----------------------------------------------------------------------------

    def _version(self) -> dict[str, Any]:
        return {
            "id": "v2.1",
            "status": "CURRENT",
            "version": MAX_VERSION,
            "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{self.base_url()}/compute/v2.1/"}],
        }

    def versions(self, request: Request) -> Response:
        return Response(200, {"versions": [self._version()]})

    def version(self, request: Request) -> Response:
        return Response(200, {"version": self._version()})

    @staticmethod
    def _flavor(row: tuple) -> dict[str, Any]:
        flavor_id, name, vcpus, ram, disk = row
        return {
            "id": flavor_id,
            "name": name,
            "vcpus": vcpus,
            "ram": ram,
            "disk": disk,
            "OS-FLV-EXT-DATA:ephemeral": 0,
            "OS-FLV-DISABLED:disabled": False,
            "os-flavor-access:is_public": True,
            "swap": "",
            "rxtx_factor": 1.0,
            "description": None,
            "extra_specs": {},
            "links": [],
        }

    def flavors(self, request: Request) -> Response:
        return Response(200, {"flavors": [self._flavor(row) for row in FLAVORS]})

    def flavor(self, request: Request) -> Response:
        for row in FLAVORS:
            if row[0] == request.params["id"]:
                return Response(200, {"flavor": self._flavor(row)})
        raise _bad(f"Flavor {request.params['id']} could not be found.", 404)

    @staticmethod
    def _keypair(key: dict[str, Any]) -> dict[str, Any]:
        return {**key, "type": "ssh", "user_id": USER_ID}

    def keypairs(self, request: Request) -> Response:
        return Response(200, {"keypairs": [{"keypair": self._keypair(k)} for k in self.cloud.keypairs.values()]})

    def keypair(self, request: Request) -> Response:
        key = self.cloud.keypairs.get(request.params["name"])
        if key is None:
            raise _bad(f"Keypair {request.params['name']} not found for user {USER_ID}", 404)
        return Response(200, {"keypair": {**self._keypair(key), "id": 1, "created_at": now_iso(), "deleted": False}})

    def create_keypair(self, request: Request) -> Response:
        body = (request.body or {}).get("keypair") or {}
        name, public_key = body.get("name"), body.get("public_key")
        if not name or not public_key:
            raise _bad("Invalid input for field/attribute keypair.")
        if name in self.cloud.keypairs:
            raise _bad(f"Key pair '{name}' already exists.", 409)
        self.cloud.keypairs[name] = {"name": name, "public_key": public_key, "fingerprint": f"fp:{len(public_key)}"}
        return Response(200, {"keypair": self._keypair(self.cloud.keypairs[name])})

    def delete_keypair(self, request: Request) -> Response:
        if self.cloud.keypairs.pop(request.params["name"], None) is None:
            raise _bad(f"Keypair {request.params['name']} not found for user {USER_ID}", 404)
        return Response(202)

    # -- servers ---------------------------------------------------------------------------------------------------

    def limits(self, request: Request) -> Response:
        """Nova's absolute limits of the project and its usage (-1: no limit)."""
        quotas, used = self.cloud.quotas, self.cloud.usage()
        absolute = {
            "maxTotalInstances": quotas.instances,
            "totalInstancesUsed": used["instances"],
            "maxTotalCores": quotas.cores,
            "totalCoresUsed": used["cores"],
            "maxTotalRAMSize": quotas.ram,
            "totalRAMUsed": used["ram"],
        }
        return Response(200, {"limits": {"absolute": absolute, "rate": []}})

    def _check_quota(self, flavor: tuple) -> None:
        quotas, used = self.cloud.quotas, self.cloud.usage()
        for resource, requested in (("instances", 1), ("cores", flavor[2]), ("ram", flavor[3])):
            limit = getattr(quotas, resource)
            if limit >= 0 and used[resource] + requested > limit:
                raise _bad(
                    f"Quota exceeded for {resource}: Requested {requested}, but already used {used[resource]} "
                    f"of {limit} {resource}",
                    403,
                )

    def create_server(self, request: Request) -> Response:
        body = (request.body or {}).get("server")
        if not isinstance(body, dict) or not body.get("name"):
            raise _bad("Invalid input for field/attribute server.")
        cloud = self.cloud
        flavor = next((row for row in FLAVORS if row[0] == str(body.get("flavorRef"))), None)
        if flavor is None:
            raise _bad(f"Flavor {body.get('flavorRef')} could not be found.")
        if body.get("imageRef") not in cloud.images:
            raise _bad(f"Image {body.get('imageRef')} could not be found.")
        if body.get("key_name") and body["key_name"] not in cloud.keypairs:
            raise _bad("Invalid key_name provided.")
        metadata = body.get("metadata") or {}
        if any(not isinstance(v, str) or len(v) > 255 or len(k) > 255 for k, v in metadata.items()):
            raise _bad("Invalid input for field/attribute metadata.")
        sg_ids = []
        for group in body.get("security_groups") or [{"name": "default"}]:
            sg_id = cloud.find_sg(group.get("name", ""))
            if sg_id is None:
                raise _bad(f"Security group {group.get('name')} not found for project {PROJECT_ID}.")
            sg_ids.append(sg_id)
        networks = body.get("networks")
        if networks in (None, "auto"):
            networks = [{"uuid": cloud.private_net}]
        elif networks == "none":
            networks = []
        for net in networks:
            if "port" in net:
                port = cloud.ports.get(net["port"])
                if port is None:
                    raise _bad(f"Port id {net['port']} could not be found.")
                if port["device_id"]:
                    raise _bad(f"Port {net['port']} is still in use.", 409)
            elif net.get("uuid") not in cloud.networks:
                raise _bad(f"Network {net.get('uuid')} could not be found.")
        volumes = [m for m in body.get("block_device_mapping_v2") or [] if m.get("destination_type") == "volume"]
        zone = body.get("availability_zone") or cloud.behaviour.zones[0]
        if zone not in cloud.behaviour.zones:
            raise _bad("The requested availability zone is not available")
        self._check_quota(flavor)
        fails = cloud.boot_failure(body["name"], self.rng.random())
        fails = fails or self._volume_quota_failure(volumes)
        server = ServerRecord(
            id=new_id(),
            name=body["name"],
            flavor=flavor,
            image_id=body["imageRef"],
            key_name=body.get("key_name"),
            metadata=dict(metadata),
            security_groups=sg_ids,
            port_ids=[],
            created_ports=[],
            volumes=[],
            ready_at=time.monotonic() + cloud.behaviour.build_seconds,
            fails=fails,
            availability_zone=zone,
        )
        for net in networks:
            if "port" in net:
                port = cloud.ports[net["port"]]
                sg_ids = server.security_groups = port["security_groups"]
            else:
                port = cloud.add_port(net["uuid"], security_groups=sg_ids, device_owner="compute:nova")
                server.created_ports.append(port["id"])
            port.update(device_id=server.id, device_owner="compute:nova")
            server.port_ids.append(port["id"])
        if not fails:
            for mapping in volumes:
                volume = self._blank_volume(server, mapping)
                server.volumes.append((volume["id"], bool(mapping.get("delete_on_termination"))))
        cloud.servers[server.id] = server
        return Response(
            202,
            {
                "server": {
                    "id": server.id,
                    "links": [{"rel": "self", "href": f"{self.base_url()}/compute/v2.1/servers/{server.id}"}],
                    "OS-DCF:diskConfig": "MANUAL",
                    "adminPass": "not-a-real-password",
                    "security_groups": [{"name": cloud.security_groups[g]["name"]} for g in sg_ids],
                }
            },
        )

    def _volume_quota_failure(self, volumes: list[dict[str, Any]]) -> str | None:
        quotas, used = self.cloud.quotas, self.cloud.usage()
        wanted = sum(int(m.get("volume_size") or 0) for m in volumes)
        if volumes and quotas.gigabytes >= 0 and used["gigabytes"] + wanted > quotas.gigabytes:
            return (
                "Build of instance aborted: VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds "
                f"allowed gigabytes quota. Requested {wanted}G, quota is {quotas.gigabytes}G and "
                f"{used['gigabytes']}G has been consumed."
            )
        return None

    def _blank_volume(self, server: ServerRecord, mapping: dict[str, Any]) -> dict[str, Any]:
        volume_id = new_id()
        device = mapping.get("device_name") or f"/dev/vd{chr(ord('b') + len(server.volumes))}"
        volume = {
            "id": volume_id,
            "name": f"{server.id}-blank-vol",  # what Nova names the blank volumes it creates
            "size": int(mapping.get("volume_size") or 1),
            "status": "attaching",
            "volume_type": mapping.get("volume_type") or "__DEFAULT__",
            "metadata": {},
            "bootable": "false",
            "availability_zone": "nova",
            "created_at": now_iso(),
            "description": None,
            "attachments": [
                {
                    "id": volume_id,
                    "attachment_id": new_id(),
                    "volume_id": volume_id,
                    "server_id": server.id,
                    "device": device,
                    "host_name": None,
                    "attached_at": now_iso(),
                }
            ],
        }
        self.cloud.volumes[volume_id] = volume
        return volume

    def _server_body(self, server: ServerRecord) -> dict[str, Any]:
        cloud = self.cloud
        addresses: dict[str, list[dict[str, Any]]] = {}
        for port_id in server.port_ids:
            port = cloud.ports.get(port_id)
            if port is None:
                continue
            net_name = cloud.networks[port["network_id"]]["name"]
            entries = addresses.setdefault(net_name, [])
            for fixed in port["fixed_ips"]:
                entries.append(
                    {
                        "addr": fixed["ip_address"],
                        "version": 4,
                        "OS-EXT-IPS:type": "fixed",
                        "OS-EXT-IPS-MAC:mac_addr": port["mac_address"],
                    }
                )
            for fip in cloud.floating_ips.values():
                if fip["port_id"] == port_id:
                    entries.append(
                        {
                            "addr": fip["floating_ip_address"],
                            "version": 4,
                            "OS-EXT-IPS:type": "floating",
                            "OS-EXT-IPS-MAC:mac_addr": port["mac_address"],
                        }
                    )
        body = {
            "id": server.id,
            "name": server.name,
            "status": server.status,
            "tenant_id": PROJECT_ID,
            "user_id": USER_ID,
            "metadata": dict(server.metadata),
            "created": server.created,
            "updated": now_iso(),
            "addresses": addresses,
            "flavor": {
                "original_name": server.flavor[1],
                "vcpus": server.flavor[2],
                "ram": server.flavor[3],
                "disk": server.flavor[4],
                "ephemeral": 0,
                "swap": 0,
                "extra_specs": {},
            },
            "image": {"id": server.image_id, "links": []},
            "key_name": server.key_name,
            "hostId": "",
            "accessIPv4": "",
            "accessIPv6": "",
            "progress": 0 if server.status == "BUILD" else 100,
            "config_drive": "",
            "locked": False,
            "OS-EXT-STS:task_state": server.task_state,
            "OS-EXT-STS:vm_state": {"BUILD": "building", "ACTIVE": "active", "ERROR": "error"}[server.status],
            "OS-EXT-STS:power_state": 1 if server.status == "ACTIVE" else 0,
            "OS-EXT-AZ:availability_zone": server.availability_zone,
            "OS-DCF:diskConfig": "MANUAL",
            "os-extended-volumes:volumes_attached": [{"id": v, "delete_on_termination": d} for v, d in server.volumes],
            "security_groups": [
                {"name": cloud.security_groups[g]["name"]} for g in server.security_groups if g in cloud.security_groups
            ],
            "tags": [],
            "links": [{"rel": "self", "href": f"{self.base_url()}/compute/v2.1/servers/{server.id}"}],
        }
        if server.fault:
            body["fault"] = server.fault
        return body

    def _get(self, server_id: str) -> ServerRecord:
        server = self.cloud.servers.get(server_id)
        if server is None:
            raise _bad(f"Instance {server_id} could not be found.", 404)
        return server

    def list_servers(self, request: Request) -> Response:
        servers = sorted(self.cloud.servers.values(), key=lambda s: (s.created, s.id))
        if request.arg("name"):
            pattern = re.compile(request.arg("name"))
            servers = [s for s in servers if pattern.search(s.name)]
        if request.arg("status"):
            servers = [s for s in servers if s.status == request.arg("status").upper()]
        if request.arg("marker"):
            ids = [s.id for s in servers]
            if request.arg("marker") not in ids:
                raise _bad(f"marker [{request.arg('marker')}] not found")
            servers = servers[ids.index(request.arg("marker")) + 1 :]
        limit = int(request.arg("limit") or 1000)
        page, more = servers[:limit], len(servers) > limit
        detail = request.path.endswith("/detail")
        body: dict[str, Any] = {
            "servers": [self._server_body(s) if detail else {"id": s.id, "name": s.name, "links": []} for s in page]
        }
        if more:
            body["servers_links"] = [
                {"rel": "next", "href": f"{self.base_url()}{request.path}?limit={limit}&marker={page[-1].id}"}
            ]
        return Response(200, body)

    def show_server(self, request: Request) -> Response:
        return Response(200, {"server": self._server_body(self._get(request.params["id"]))})

    def delete_server(self, request: Request) -> Response:
        server = self._get(request.params["id"])
        if server.delete_at is None:
            server.task_state = "deleting"
            server.delete_at = time.monotonic() + self.cloud.behaviour.delete_seconds
        return Response(204)

    def volume_attachments(self, request: Request) -> Response:
        server = self._get(request.params["id"])
        attachments = []
        for volume_id, _ in server.volumes:
            volume = self.cloud.volumes.get(volume_id)
            if volume:
                device = volume["attachments"][0]["device"] if volume["attachments"] else None
                attachments.append({"id": volume_id, "volumeId": volume_id, "serverId": server.id, "device": device})
        return Response(200, {"volumeAttachments": attachments})

    def availability_zones(self, request: Request) -> Response:
        zones = [{"zoneName": zone, "zoneState": {"available": True}} for zone in self.cloud.behaviour.zones]
        return Response(200, {"availabilityZoneInfo": zones})

    def register(self, router: Router) -> None:
        base = "/compute/v2.1"
        router.add("GET", "/compute", "compute.versions", self.versions)
        router.add("GET", base, "compute.version", self.version)
        router.add("GET", f"{base}/flavors/detail", "compute.flavors.list", self.flavors)
        router.add("GET", f"{base}/flavors", "compute.flavors.list", self.flavors)
        router.add("GET", f"{base}/flavors/{{id}}", "compute.flavors.show", self.flavor)
        router.add("GET", f"{base}/os-keypairs", "compute.keypairs.list", self.keypairs)
        router.add("POST", f"{base}/os-keypairs", "compute.keypairs.create", self.create_keypair)
        router.add("GET", f"{base}/os-keypairs/{{name}}", "compute.keypairs.show", self.keypair)
        router.add("DELETE", f"{base}/os-keypairs/{{name}}", "compute.keypairs.delete", self.delete_keypair)
        router.add("GET", f"{base}/servers/detail", "compute.servers.list", self.list_servers)
        router.add("GET", f"{base}/servers", "compute.servers.list", self.list_servers)
        router.add("POST", f"{base}/servers", "compute.servers.create", self.create_server)
        router.add("GET", f"{base}/servers/{{id}}", "compute.servers.show", self.show_server)
        router.add("DELETE", f"{base}/servers/{{id}}", "compute.servers.delete", self.delete_server)
        router.add(
            "GET", f"{base}/servers/{{id}}/os-volume_attachments", "compute.attachments.list", self.volume_attachments
        )
        router.add("GET", f"{base}/os-availability-zone", "compute.zones.list", self.availability_zones)
        router.add("GET", f"{base}/limits", "compute.limits", self.limits)
