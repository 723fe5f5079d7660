"""The OpenStack driver: Nova servers with DODAS tags as metadata, Neutron security groups / ports / floating IPs,
Cinder volumes booted with the server (blank block-device mappings deleted with it).

Calls per VM are kept few: flavors, images, networks, security groups and key pairs are looked up once per site
and process; a PRIVATE VM costs one create call, a PUBLIC one a port lookup, a port and a floating IP more (the
floating IP is bound to the port before the server boots, so no later attach step is needed); waiting is one list
call per group and poll. A create that failed in an uncertain way (timeout, 5xx) is looked up by name before the
retry posts again, so a retry never doubles a server.
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

from openstack import exceptions as os_exc
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
    wait_random_exponential,
)

from dodas_tasks.clouds.base import (
    ACTIVE,
    BUILD,
    DELETED,
    ERROR,
    PROJECT_TAG,
    CloudDriver,
    CloudError,
    OwnerIdentity,
    ProjectResource,
    QuotaRoom,
    Server,
    ServerSpec,
    SiteAuth,
    SshGateway,
    gateway_from_extra,
)
from dodas_tasks.clouds.openstack import connection, nova
from dodas_tasks.clouds.openstack.connection import SiteSettings, TokenProvider, airflow_connection, site_hook
from dodas_tasks.clouds.openstack.errors import cloud_errors
from dodas_tasks.clouds.openstack.rules import group_sg_name, ingress_rules, internal_sg_name
from dodas_tasks.clouds.openstack.site_cache import SiteCache, site_cache
from dodas_tasks.clouds.sizing import FlavorOption, choose_flavor, parse_image
from dodas_tasks.naming import PREFIX, TAG_DEPLOYMENT, TAG_GROUP, TAG_PROJECT, deployment_in_name

CONN_ENV = "DODAS_OPENSTACK_CONN_ID"
DEFAULT_CONN_ID = "openstack_default"
NETWORK_KEY = "dodas:network"  # server metadata: PUBLIC servers own a port and a floating IP to clean up
FLAVOR_TTL_S = 600.0
SNAPSHOT_S = 2.0  # get_server answers from a server list at most this old
_BUILDING = {"BUILD", "REBUILD", "REBOOT", "HARD_REBOOT", "PASSWORD", "MIGRATING", "RESIZE", "VERIFY_RESIZE"}

_read = retry(  # reads are idempotent: a short jittered retry here keeps pollers quiet on one 503
    retry=retry_if_exception(lambda e: isinstance(e, CloudError) and e.retryable),
    wait=wait_random_exponential(multiplier=0.2, max=2),
    stop=stop_after_attempt(6),
    reraise=True,
)


def _resource(
    kind: str, resource_id: str, name: str, tags: dict[str, str], created: str | None = None
) -> ProjectResource:
    """A resource the leak collector may remove, with the deployment its tags (or name) tell."""
    when = datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return ProjectResource(kind, resource_id, name, tags.get(TAG_DEPLOYMENT), when)


class OpenStackCloud(CloudDriver):
    """One OpenStack site, reached through the Airflow connection `openstack_conn_id`
    (default: env DODAS_OPENSTACK_CONN_ID, else "openstack_default").

    `owner`: the deployment's owner, used when the connection says the site acts as the owners (dodas_auth:
    owner, see connection.py); every call then runs on a Keystone token of the owner's federated login."""

    name = "openstack"

    def __init__(
        self,
        openstack_conn_id: str | None = None,
        token_provider: TokenProvider | None = None,
        max_concurrency: int | None = None,
        owner: OwnerIdentity | None = None,
    ) -> None:
        self.conn_id = openstack_conn_id or os.environ.get(CONN_ENV) or DEFAULT_CONN_ID
        self._max_concurrency = max_concurrency
        acting_owner = owner if self.site_auth(self.conn_id).acts_as_owner else None  # service sites ignore it
        self._hook = site_hook(self.conn_id, token_provider, acting_owner)
        self._per_project = acting_owner is not None
        self._site_facts: SiteCache | None = None
        self._uncertain: set[str] = set()  # names whose create may have happened although it raised
        self._snapshot: tuple[float, dict[str, Any]] = (-SNAPSHOT_S, {})  # the last server list, by id
        self._snapshot_lock = threading.Lock()

    @classmethod
    def site_auth(cls, openstack_conn_id: str | None = None) -> SiteAuth:
        """How the site authenticates (the connection's extra dodas_auth), without calling it."""
        return connection.site_auth(openstack_conn_id or os.environ.get(CONN_ENV) or DEFAULT_CONN_ID)

    # -- connection and site facts ----------------------------------------------------------------------------

    @property
    def conn(self) -> Any:
        with cloud_errors(f"connect to OpenStack ({self.conn_id})"):
            return self._hook.get_conn()

    @property
    def _cache(self) -> SiteCache:
        """What the site told this process; per project where the site acts as the owners (networks, security
        groups and key pairs are each owner's own)."""
        if self._site_facts is None:
            scope = f"{self.conn_id}@{self.conn.current_project_id}" if self._per_project else self.conn_id
            self._site_facts = site_cache(scope)
        return self._site_facts

    @property
    def max_concurrency(self) -> int:  # type: ignore[override]
        """Parallel calls allowed: option, else connection extra `dodas_max_concurrency`, else the default."""
        return self._max_concurrency or self.settings.max_concurrency

    def ssh_gateway(self) -> SshGateway | None:
        """The site's bastion from the connection's extra `dodas_ssh_bastion`, if it has one (read without
        authenticating: a delegated deployment's token provider is not needed for it)."""
        return gateway_from_extra(airflow_connection(self._hook, self.conn_id).extra_dejson, self.conn_id)

    @property
    def settings(self) -> SiteSettings:
        self.conn  # noqa: B018 (reads the connection once)
        return self._hook.settings

    def _flavor_id(self, spec: ServerSpec) -> str:
        def load() -> dict[str, Any]:
            with cloud_errors("list flavors"):
                return {f.name: f for f in self.conn.compute.flavors(details=True) if not f.is_disabled}

        flavors = self._cache.get("flavors", load, ttl=FLAVOR_TTL_S)
        options = [FlavorOption(f.name, f.vcpus or 0, f.ram or 0, f.disk or 0) for f in flavors.values()]
        return flavors[choose_flavor(options, spec.flavor, cloud=f"OpenStack site {self.conn_id!r}").name].id

    def _image_id(self, value: str) -> str:
        ref = parse_image(value)
        if ref.scheme == "ost":
            return ref.image_id
        if ref.scheme:
            raise CloudError(f"image {value!r} is not an OpenStack image (use ost://<site>/<uuid> or a name)")
        name = ref.image_id
        if name in ("", "default"):
            name = self.settings.default_image or ""
            if not name:
                raise CloudError(
                    f"the template gives no image and connection {self.conn_id!r} has no extra.default_image"
                )

        def find() -> str:
            with cloud_errors(f"find image {name!r}"):
                image = self.conn.image.find_image(name, ignore_missing=True)
            if image is None:
                raise CloudError(f"image {name!r} does not exist on OpenStack site {self.conn_id!r}")
            return image.id

        return self._cache.get(f"image:{name}", find)

    def _network_id(self) -> str:
        def find() -> str:
            wanted = self.settings.network
            with cloud_errors("find the network"):
                if wanted:
                    network = self.conn.network.find_network(wanted, ignore_missing=True)
                    if network is None:
                        raise CloudError(f"network {wanted!r} (extra.network of {self.conn_id!r}) does not exist")
                    return network.id
                own = [n for n in self.conn.network.networks() if not n.is_router_external]
            if len(own) != 1:
                raise CloudError(
                    f"OpenStack site {self.conn_id!r} has {len(own)} private networks; name one in extra.network"
                )
            return own[0].id

        return self._cache.get("network", find)

    def _external_network_id(self) -> str:
        def find() -> str:
            pool = self.settings.floating_ip_pool
            with cloud_errors("find the floating IP pool"):
                if pool:
                    network = self.conn.network.find_network(pool, ignore_missing=True)
                    if network is None:
                        raise CloudError(f"floating IP pool {pool!r} of {self.conn_id!r} does not exist")
                    return network.id
                external = list(self.conn.network.networks(is_router_external=True))
            if not external:
                raise CloudError(f"OpenStack site {self.conn_id!r} has no external network for PUBLIC servers")
            return external[0].id

        return self._cache.get("external-network", find)

    # -- security groups -----------------------------------------------------------------------------------------

    def _security_groups(self, deployment_id: str, group: str, rules: list[dict[str, Any]]) -> list[str]:
        """The deployment's group (every VM of the deployment reaches every other) and the compute group's (SSH and
        the template's published ports, each to its remote_cidr)."""
        internal = self._cache.get(
            f"sg:{internal_sg_name(deployment_id)}", lambda: self._ensure_internal_sg(deployment_id)
        )
        name = group_sg_name(deployment_id, group)
        own = self._cache.get(f"sg:{name}", lambda: self._ensure_sg(name, deployment_id, group, rules))
        return [internal, own]

    def _ensure_internal_sg(self, deployment_id: str) -> str:
        name = internal_sg_name(deployment_id)
        sg_id, created = self._find_or_create_sg(name, f"{TAG_DEPLOYMENT}={deployment_id}")
        if not created:  # a crash may have come between the group and its rule
            with cloud_errors(f"read rules of {name}"):
                existing = list(self.conn.network.security_group_rules(security_group_id=sg_id))
            if any(r.remote_group_id == sg_id and r.direction == "ingress" for r in existing):
                return sg_id
        self._add_rules(sg_id, [{"direction": "ingress", "ethertype": "IPv4", "remote_group_id": sg_id}])
        return sg_id

    def _ensure_sg(self, name: str, deployment_id: str, group: str, rules: list[dict[str, Any]]) -> str:
        sg_id, _ = self._find_or_create_sg(name, f"{TAG_DEPLOYMENT}={deployment_id} {TAG_GROUP}={group}")
        with cloud_errors(f"read rules of {name}"):
            existing = list(self.conn.network.security_group_rules(security_group_id=sg_id))
        have = {(r.protocol, r.port_range_min, r.port_range_max, r.remote_ip_prefix) for r in existing}
        missing = [
            r
            for r in rules
            if (r["protocol"], r.get("port_range_min"), r.get("port_range_max"), r["remote_ip_prefix"]) not in have
        ]
        self._add_rules(sg_id, missing)
        return sg_id

    def _find_or_create_sg(self, name: str, description: str) -> tuple[str, bool]:
        with cloud_errors(f"find security group {name}"):
            found = list(self.conn.network.security_groups(name=name))
            if found:
                return sorted(found, key=lambda s: s.created_at or "")[0].id, False
            return self.conn.network.create_security_group(name=name, description=description).id, True

    def _add_rules(self, sg_id: str, rules: list[dict[str, Any]]) -> None:
        for rule in rules:
            try:
                with cloud_errors("add a security group rule"):
                    self.conn.network.create_security_group_rule(security_group_id=sg_id, **rule)
            except CloudError as exc:
                if "409" not in str(exc):  # the same rule already there: fine
                    raise

    # -- servers ---------------------------------------------------------------------------------------------------

    def create_server(self, spec: ServerSpec) -> Server:
        flavor_id = self._flavor_id(spec)  # bad sizes, images, ports fail here, before any resource exists
        image_id = self._image_id(spec.image)
        mappings = _block_devices(spec, image_id)
        rules = ingress_rules(list(spec.ports or []))
        network_id = self._network_id()
        public = spec.network == "PUBLIC"
        external_id = self._external_network_id() if public else None
        deployment, group = spec.tags.get(TAG_DEPLOYMENT), spec.tags.get(TAG_GROUP)
        self.import_key_pair(spec.key_name, spec.public_key)
        sg_ids = self._security_groups(deployment, group or "default", rules) if deployment else []
        if spec.name in self._uncertain:
            existing = self._find_created(spec)
            if existing is not None:
                self._uncertain.discard(spec.name)
                return existing
        attrs: dict[str, Any] = {
            "name": spec.name,
            "flavorRef": flavor_id,
            "imageRef": image_id,
            "key_name": spec.key_name,
            "metadata": {**spec.tags, NETWORK_KEY: spec.network},
        }
        if mappings:
            attrs["block_device_mapping_v2"] = mappings
        if spec.availability_zone:
            attrs["availability_zone"] = spec.availability_zone
        if spec.user_data:
            attrs["user_data"] = base64.b64encode(spec.user_data.encode()).decode()
        port_id = None
        if public:
            port_id = self._public_port(spec, network_id, external_id, sg_ids)
            attrs["networks"] = [{"port": port_id}]
        else:
            attrs["networks"] = [{"uuid": network_id}]
            if sg_ids:
                attrs["security_groups"] = [{"name": sg} for sg in sg_ids]
        try:
            with cloud_errors(f"create server {spec.name}"):
                created = nova.create(self.conn, attrs)
        except CloudError as exc:
            if exc.retryable:
                self._uncertain.add(spec.name)
            if not exc.retryable and port_id:  # nothing will use the port: release it and its floating IP
                self._release_port(port_id)
            if not exc.retryable and deployment:  # e.g. a group deleted behind our back: look it up again next time
                self._cache.drop(f"sg:{internal_sg_name(deployment)}")
                self._cache.drop(f"key:{spec.key_name}")
            raise
        self._uncertain.discard(spec.name)
        return Server(created["id"], spec.name, BUILD, None, None, dict(spec.tags))

    def _find_created(self, spec: ServerSpec) -> Server | None:
        for server in self._raw_servers():
            if server["name"] == spec.name and _has_tags(server, spec.tags) and not _deleting(server):
                return self._to_server(server)
        return None

    def _public_port(self, spec: ServerSpec, network_id: str, external_id: str, sg_ids: list[str]) -> str:
        """The server's own port (named after it) with a floating IP bound: reused when a retry finds them."""
        with cloud_errors(f"prepare the public port of {spec.name}"):
            ports = list(self.conn.network.ports(name=spec.name, network_id=network_id))
            mine = [p for p in ports if not p.device_id]
            if mine:
                port = mine[0]
                fips = list(self.conn.network.ips(port_id=port.id))
            else:
                port = self.conn.network.create_port(
                    name=spec.name,
                    network_id=network_id,
                    security_group_ids=sg_ids,
                    description=_describe(spec.tags),
                )
                fips = []
        if not fips:
            try:
                with cloud_errors(f"allocate a floating IP for {spec.name}"):
                    self.conn.network.create_ip(
                        floating_network_id=external_id,
                        port_id=port.id,
                        description=f"{spec.name} {_describe(spec.tags)}",
                    )
            except CloudError as exc:
                if not exc.retryable:  # e.g. floating IP quota: the port alone is of no use
                    self._release_port(port.id)
                raise
        return port.id

    def _release_port(self, port_id: str) -> None:
        with cloud_errors(f"release port {port_id}"):
            for fip in self.conn.network.ips(port_id=port_id):
                self.conn.network.delete_ip(fip, ignore_missing=True)
            self.conn.network.delete_port(port_id, ignore_missing=True)

    def get_server(self, server_id: str) -> Server | None:
        """The server as of at most SNAPSHOT_S ago: a burst of gets (recording 50 VMs) costs one list call."""
        raw = self._recent(server_id)
        return None if raw is None else self._to_server(raw)

    def _recent(self, server_id: str) -> Any:
        with self._snapshot_lock:
            taken, servers = self._snapshot
            if time.monotonic() - taken > SNAPSHOT_S:
                self._raw_servers()
                taken, servers = self._snapshot
        if server_id in servers and not _deleting(servers[server_id]):
            return servers[server_id]
        return self._get_raw(server_id)  # not listed (just created, or gone) or going: ask for it alone

    @_read
    def _get_raw(self, server_id: str) -> Any:
        with cloud_errors(f"get server {server_id}"):
            return nova.get(self.conn, server_id)

    def list_servers(self, tags: dict[str, str]) -> list[Server]:
        return [self._to_server(s) for s in self._raw_servers() if _has_tags(s, tags) and not _deleting(s)]

    @_read
    def _raw_servers(self) -> list[Any]:
        with cloud_errors("list servers"):
            servers = nova.list_all(self.conn)
        self._snapshot = (time.monotonic(), {s["id"]: s for s in servers})
        return servers

    def _to_server(self, raw: Any) -> Server:
        metadata = dict(raw.get("metadata") or {})
        private, public = _addresses(raw.get("addresses") or {})
        status, fault = _status(raw)
        if status == ACTIVE and metadata.get(NETWORK_KEY) == "PUBLIC" and not public:
            status = BUILD  # the floating IP is bound but Nova's network cache does not show it yet
        return Server(raw["id"], raw["name"], status, private, public, metadata, fault=fault)

    def delete_server(self, server_id: str) -> None:
        raw = self._recent(server_id)
        if raw is None:
            return
        server_id, name = raw["id"], raw["name"]
        if (raw.get("metadata") or {}).get(NETWORK_KEY) == "PUBLIC":
            with cloud_errors(f"release the floating IP of {name}"):
                for port in self.conn.network.ports(name=name):
                    if port.device_id not in ("", None, server_id):
                        continue
                    for fip in self.conn.network.ips(port_id=port.id):
                        self.conn.network.delete_ip(fip, ignore_missing=True)
                    self.conn.network.delete_port(port, ignore_missing=True)
        with cloud_errors(f"delete server {name}"):
            nova.delete(self.conn, server_id)  # blank volumes go with it
        self._snapshot[1].pop(server_id, None)

    # -- key pairs -------------------------------------------------------------------------------------------------

    def import_key_pair(self, name: str, public_key: str) -> None:
        wanted = _key_body(public_key)
        if self._cache.peek(f"key:{name}") == wanted:
            return

        def ensure() -> str:
            with cloud_errors(f"import key pair {name}"):
                existing = self.conn.compute.find_keypair(name, ignore_missing=True)
                if existing is not None and _key_body(existing.public_key) == wanted:
                    return wanted
                if existing is not None:  # same name, other key: the deployment's key wins
                    self.conn.compute.delete_keypair(name, ignore_missing=True)
                with contextlib.suppress(os_exc.ConflictException):  # a concurrent import won the race
                    self.conn.compute.create_keypair(name=name, public_key=public_key)
            return wanted

        self._cache.drop(f"key:{name}")
        self._cache.get(f"key:{name}", ensure)

    def delete_key_pair(self, name: str) -> None:
        with cloud_errors(f"delete key pair {name}"):
            self.conn.compute.delete_keypair(name, ignore_missing=True)
        self._cache.drop(f"key:{name}")
        deployment = deployment_in_name(name)
        if deployment is not None:
            self.delete_security_groups(deployment)

    def delete_security_groups(self, deployment_id: str, wait_s: float = 60.0) -> None:
        """Remove the deployment's security groups whose servers are gone; waits while Nova frees their ports."""
        prefix = internal_sg_name(deployment_id)
        live = {
            (s.get("metadata") or {}).get(TAG_GROUP)
            for s in self._raw_servers()
            if (s.get("metadata") or {}).get(TAG_DEPLOYMENT) == deployment_id and not _deleting(s)
        }
        with cloud_errors(f"list ports of {deployment_id}"):
            strays = [
                p.id
                for p in self.conn.network.ports()
                if not p.device_id
                and _parse(p.description).get(TAG_DEPLOYMENT) == deployment_id
                and _parse(p.description).get(TAG_GROUP) not in live
            ]
        for port_id in strays:  # public ports whose server never came (create gave up between port and server)
            self._release_port(port_id)
        with cloud_errors(f"list security groups of {deployment_id}"):
            groups = [g for g in self.conn.network.security_groups() if g.name.startswith(prefix)]
        busy = {group_sg_name(deployment_id, g) for g in live if g}
        for sg in sorted(groups, key=lambda g: g.name == prefix):  # the shared internal group last
            if sg.name in busy or (sg.name == prefix and live):
                continue
            self._delete_sg_when_free(sg, wait_s)
            self._cache.drop(f"sg:{sg.name}")

    def _delete_sg_when_free(self, sg: Any, wait_s: float) -> None:
        """Delete, trying again every 0.5 s for up to wait_s while ports of servers being deleted still hold it (409);
        what stops it then is marked retryable."""

        @retry(
            retry=retry_if_exception(lambda e: isinstance(e, CloudError) and "409" in str(e)),
            stop=stop_after_delay(wait_s),
            wait=wait_fixed(0.5),
            reraise=True,
        )
        def delete() -> None:
            with cloud_errors(f"delete security group {sg.name}"):
                self.conn.network.delete_security_group(sg, ignore_missing=True)

        try:
            delete()
        except CloudError as exc:
            raise CloudError(str(exc), retryable=True) from None

    # -- quota ------------------------------------------------------------------------------------------------------

    def quota_room(self) -> QuotaRoom | None:
        """Nova's absolute limits less what the project uses (instances, cores, RAM; -1 is no limit)."""

        @_read
        def absolute() -> Any:
            with cloud_errors("read the compute limits"):
                return self.conn.compute.get_limits().absolute

        limits = absolute()

        def left(limit: int | None, used: int | None) -> int | None:
            return None if limit is None or limit < 0 else max(0, limit - (used or 0))

        return QuotaRoom(
            servers=left(limits.instances, limits.instances_used),
            cores=left(limits.total_cores, limits.total_cores_used),
            ram_mb=left(limits.total_ram, limits.total_ram_used),
            source=(
                f"Nova limits: {limits.instances_used}/{limits.instances} instances, "
                f"{limits.total_cores_used}/{limits.total_cores} cores, "
                f"{limits.total_ram_used}/{limits.total_ram} MB RAM used"
            ),
        )

    # -- leak collection -------------------------------------------------------------------------------------------

    def list_project_resources(self) -> list[ProjectResource]:
        """Everything DODAS made on this site: servers tagged with the project, and dodas-* named resources."""
        found: list[ProjectResource] = []
        servers = {s["id"]: s for s in self._raw_servers() if (s.get("metadata") or {}).get(TAG_PROJECT) == PROJECT_TAG}
        for s in servers.values():
            found.append(_resource("server", s["id"], s["name"], dict(s["metadata"]), s.get("created")))
        with cloud_errors("list project resources"):
            for key in self.conn.compute.keypairs():
                if key.name.startswith(PREFIX):
                    found.append(_resource("key_pair", key.name, key.name, _tags_in_name(key.name)))
            for sg in self.conn.network.security_groups():
                if sg.name.startswith(PREFIX):
                    found.append(_resource("security_group", sg.id, sg.name, _parse(sg.description)))
            for port in self.conn.network.ports():
                if (port.name or "").startswith(PREFIX):
                    found.append(_resource("port", port.id, port.name, _parse(port.description)))
            for fip in self.conn.network.ips():
                if (fip.description or "").startswith(PREFIX):
                    name = fip.description.split(" ", 1)[0]
                    found.append(_resource("floating_ip", fip.id, name, _parse(fip.description)))
            for volume in self.conn.block_storage.volumes(details=True):
                owners = [servers[a["server_id"]] for a in volume.attachments or [] if a.get("server_id") in servers]
                if owners or (volume.name or "").startswith(PREFIX):
                    tags = dict(owners[0]["metadata"]) if owners else dict(volume.metadata or {})
                    found.append(_resource("volume", volume.id, volume.name or "", tags))
        return found

    def _delete_volume(self, volume_id: str) -> None:
        volume = self.conn.block_storage.find_volume(volume_id, ignore_missing=True)
        if volume is None:
            return
        if volume.attachments:  # Nova frees it when its server is gone (and deletes it if it was the server's)
            servers = ", ".join(a.get("server_id", "?") for a in volume.attachments)
            raise CloudError(
                f"volume {volume_id} is still attached to {servers}; retry once it is gone", retryable=True
            )
        self.conn.block_storage.delete_volume(volume, ignore_missing=True)

    def delete_resource(self, kind: str, resource_id: str) -> None:
        """Delete one resource listed by list_project_resources; unknown ids are not an error."""
        deleters = {
            "server": self.delete_server,
            "key_pair": self.delete_key_pair,
            "security_group": lambda i: self.conn.network.delete_security_group(i, ignore_missing=True),
            "port": lambda i: self.conn.network.delete_port(i, ignore_missing=True),
            "floating_ip": lambda i: self.conn.network.delete_ip(i, ignore_missing=True),
            "volume": self._delete_volume,
        }
        if kind not in deleters:
            raise CloudError(f"unknown resource kind {kind!r}; known: {', '.join(deleters)}")
        with cloud_errors(f"delete {kind} {resource_id}"):
            deleters[kind](resource_id)


def _has_tags(raw: Any, tags: dict[str, str]) -> bool:
    metadata = raw.get("metadata") or {}
    return all(metadata.get(k) == v for k, v in tags.items())


def _deleting(raw: Any) -> bool:
    return raw.get("status") in ("DELETED", "SOFT_DELETED") or raw.get("OS-EXT-STS:task_state") == "deleting"


def _status(raw: Any) -> tuple[str, str | None]:
    """Nova status → BUILD / ACTIVE / ERROR / DELETED, with Nova's fault message for ERROR."""
    status = (raw.get("status") or "").upper()
    if _deleting(raw):
        return DELETED, None
    if status == "ACTIVE":
        return ACTIVE, None
    if status in _BUILDING:
        return BUILD, None
    fault = raw.get("fault") or {}
    message = fault.get("message") if isinstance(fault, dict) else str(fault)
    return ERROR, message or f"server is {status or 'in an unknown state'}"


def _addresses(addresses: dict[str, list[dict[str, Any]]]) -> tuple[str | None, str | None]:
    private = public = None
    for entries in addresses.values():
        for entry in entries:
            if entry.get("version", 4) != 4:
                continue
            if entry.get("OS-EXT-IPS:type") == "floating":
                public = public or entry.get("addr")
            else:
                private = private or entry.get("addr")
    return private, public


def _block_devices(spec: ServerSpec, image_id: str) -> list[dict[str, Any]]:
    """Blank Cinder volumes for the spec's optional `volumes` (dicts or objects with size_gb, device,
    volume_type), created by Nova with the server and deleted with it."""
    volumes = list(getattr(spec, "volumes", None) or [])
    if not volumes:
        return []
    mappings: list[dict[str, Any]] = [
        {"uuid": image_id, "source_type": "image", "destination_type": "local", "boot_index": 0,
         "delete_on_termination": True}
    ]  # fmt: skip
    for volume in volumes:
        get = volume.get if isinstance(volume, dict) else lambda k, v=volume: getattr(v, k, None)
        size = get("size_gb")
        if not size or float(size) <= 0:
            raise CloudError(f"volume {get('name') or '?'} of {spec.name}: give a size (size_gb > 0)")
        mapping = {
            "source_type": "blank",
            "destination_type": "volume",
            "volume_size": math.ceil(float(size)),
            "boot_index": -1,
            "delete_on_termination": True,
        }
        if get("volume_type"):
            mapping["volume_type"] = get("volume_type")
        if get("device"):
            mapping["device_name"] = get("device")
        mappings.append(mapping)
    return mappings


def _key_body(public_key: str | None) -> str:
    return " ".join((public_key or "").split()[:2])


def _describe(tags: dict[str, str]) -> str:
    return " ".join(f"{k}={tags[k]}" for k in (TAG_DEPLOYMENT, TAG_GROUP) if k in tags)


def _parse(description: str | None) -> dict[str, str]:
    pairs = (word.partition("=") for word in (description or "").split())
    return {k: v for k, sep, v in pairs if sep and k.startswith("dodas:")}


def _tags_in_name(name: str) -> dict[str, str]:
    """The tags a resource_name stands for (key pairs carry no metadata)."""
    deployment = deployment_in_name(name)
    return {TAG_DEPLOYMENT: deployment} if deployment else {}
