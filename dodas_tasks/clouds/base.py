"""The small interface every IaaS driver implements (local, OpenStack, EC2), one module per cloud.

Like the Infrastructure Manager's connectors: callers speak only this vocabulary, so a deployment can move
between clouds. Resources carry deterministic names and `dodas:*` tags (dodas_tasks.naming) so retries adopt
instead of duplicate.
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from dodas_tasks.naming import TAG_DEPLOYMENT, TAG_PROJECT
from dodas_tasks.settings import PROJECT_TAG

# Server.status values
BUILD = "BUILD"
ACTIVE = "ACTIVE"
ERROR = "ERROR"
DELETED = "DELETED"
SERVER_STATUSES = frozenset({BUILD, ACTIVE, ERROR, DELETED})

__all__ = [
    "ACTIVE",
    "BUILD",
    "DELETED",
    "ERROR",
    "PROJECT_TAG",
    "SERVER_STATUSES",
    "CloudDriver",
    "CloudError",
    "Flavor",
    "OwnerIdentity",
    "OwnerRequired",
    "QuotaExceeded",
    "QuotaRoom",
    "Server",
    "ServerNotFound",
    "ServerSpec",
    "SiteAuth",
    "SshGateway",
    "gateway_from_extra",
    "get_driver",
    "known_clouds",
    "register_driver",
    "site_auth",
]


class CloudError(Exception):
    """A cloud call failed; `retryable` says whether trying the same call again may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class QuotaExceeded(CloudError):
    """The project's quota (servers, cores, memory…) does not leave room for the request."""


class ServerNotFound(CloudError):
    """The server id is unknown to the cloud (never existed or already deleted)."""


class OwnerRequired(CloudError):
    """The site acts as each deployment's owner, and no owner identity was given (a deployment not delegated)."""


@dataclass(frozen=True)
class OwnerIdentity:
    """A deployment owner's identity, for sites that authenticate as the owner instead of with service credentials.

    `access_token` returns a valid OIDC access token of the owner each time it is called (the IAM layer's token
    source, handed down as a plain callable): drivers call it at every (re)authentication. Credentials built from
    it are cached per site and `delegation` (the deployment whose delegated refresh token backs the tokens).
    """

    issuer: str
    subject: str
    delegation: str
    access_token: Callable[[], str] = field(repr=False, compare=False)


@dataclass(frozen=True)
class SiteAuth:
    """How a site (an Airflow connection) authenticates: with its own service credentials, or as each deployment's
    owner. `service_options` (get_driver options) reach the same site with service credentials, when it has them."""

    acts_as_owner: bool = False
    description: str = "service credentials"
    service_options: dict[str, object] | None = None


@dataclass(frozen=True)
class Flavor:
    """Size of a server: TOSCA host capabilities, or a named instance type when the cloud has them."""

    cpus: int
    mem_mb: int
    disk_gb: int = 0
    instance_type: str | None = None


@dataclass(frozen=True)
class ServerSpec:
    """Everything needed to create one server; `name` and `tags` are deterministic so retries can adopt."""

    name: str
    flavor: Flavor
    image: str
    key_name: str
    public_key: str
    tags: dict[str, str]
    network: str = "PRIVATE"  # "PRIVATE" or "PUBLIC" (gets a public IP)
    ports: list = field(default_factory=list)  # TOSCA endpoint ports published (besides SSH) to their remote_cidr
    volumes: list = field(default_factory=list)  # BlockStorage: dicts of plan.Volume fields, attached at create
    user_data: str | None = None
    availability_zone: str | None = None  # the cloud's zone to create it in; None lets the cloud choose


@dataclass(frozen=True)
class Server:
    """A server as the cloud reports it now.

    `host_key` is the server's SSH host public key ("ssh-ed25519 AAAA…") when the cloud can tell it, so
    clients can pin it instead of trusting on first use.
    """

    id: str
    name: str
    status: str
    private_ip: str | None
    public_ip: str | None
    tags: dict[str, str]
    ssh_port: int = 22
    fault: str | None = None
    host_key: str | None = None

    @property
    def address(self) -> str | None:
        """The address to reach the server at: public if it has one, else private."""
        return self.public_ip or self.private_ip


@dataclass(frozen=True)
class SshGateway:
    """The SSH jump host through which a site's VMs are reached (they have private addresses only).

    A local cloud served on another host has one (its gateway); other sites set it in their connection
    (`gateway_from_extra`). private_key None: the gateway accepts the deployment's key (the cloud's key pairs).
    host_key, when known, is pinned before the first contact.
    """

    host: str
    port: int = 22
    username: str | None = None
    host_key: str | None = None
    private_key: str | None = field(default=None, repr=False)


GATEWAY_EXTRA = "dodas_ssh_bastion"


def gateway_from_extra(extra: dict, conn_id: str) -> SshGateway | None:
    """The site's bastion from a cloud connection's extra: `dodas_ssh_bastion` = {"host", "port", "username",
    "host_key", "private_key"} (only host required), or None when the site has none."""
    given = extra.get(GATEWAY_EXTRA)
    if not given:
        return None
    if not isinstance(given, dict) or not isinstance(given.get("host"), str):
        raise CloudError(
            f"extra.{GATEWAY_EXTRA} of Airflow connection {conn_id!r} must be an object with at least "
            '"host" (and optionally "port", "username", "host_key", "private_key")'
        )
    unknown = sorted(set(given) - {"host", "port", "username", "host_key", "private_key"})
    if unknown:
        raise CloudError(f"extra.{GATEWAY_EXTRA} of Airflow connection {conn_id!r}: unknown key(s) {unknown}")
    try:
        port = int(given.get("port") or 22)
    except (TypeError, ValueError):
        raise CloudError(f"extra.{GATEWAY_EXTRA}.port of Airflow connection {conn_id!r} is not a number") from None
    return SshGateway(
        host=given["host"],
        port=port,
        username=given.get("username"),
        host_key=given.get("host_key"),
        private_key=given.get("private_key"),
    )


@dataclass(frozen=True)
class ProjectResource:
    """One cloud resource DODAS made; `created_at` (UTC, when the cloud tells) lets a collector wait a grace period."""

    kind: str  # "server"/"instance", "key_pair", "security_group", "floating_ip", "volume", ...
    id: str
    name: str
    deployment: str | None
    created_at: datetime | None = None


@dataclass(frozen=True)
class QuotaRoom:
    """What the project may still create on a cloud, as the cloud tells it (None: not told, not checked);
    `source` says where the numbers come from, for the refusal's message."""

    servers: int | None = None
    cores: int | None = None
    ram_mb: int | None = None
    source: str = ""


# Parallel cloud calls per provisioning pass. IM does 5; 32 creates 50 VMs in two waves, and clouds that push back
# answer 429/503, which are retried with jittered backoff. Per site: connection extra `dodas_max_concurrency`.
DEFAULT_CONCURRENCY = 32


class CloudDriver(ABC):
    """One IaaS. Calls are synchronous and thread-safe; `max_concurrency` bounds parallel calls."""

    name: str = "abstract"
    max_concurrency: int = DEFAULT_CONCURRENCY

    @abstractmethod
    def create_server(self, spec: ServerSpec) -> Server:
        """Start creating a server and return promptly; it may still be BUILD."""

    @abstractmethod
    def get_server(self, server_id: str) -> Server | None:
        """The server now, or None if the cloud does not know it."""

    @abstractmethod
    def list_servers(self, tags: dict[str, str]) -> list[Server]:
        """All servers whose tags include every given key/value."""

    @abstractmethod
    def delete_server(self, server_id: str) -> None:
        """Delete the server and everything it runs; deleting an unknown server is not an error."""

    @abstractmethod
    def import_key_pair(self, name: str, public_key: str) -> None:
        """Register an OpenSSH public key under `name`; same name and same key again is a no-op."""

    @abstractmethod
    def delete_key_pair(self, name: str) -> None:
        """Remove the key pair; removing an unknown one is not an error."""

    def list_project_resources(self) -> list[ProjectResource]:
        """Everything DODAS made on this cloud, for the leak collector; drivers with more kinds override it."""
        return [
            ProjectResource("server", server.id, server.name, server.tags.get(TAG_DEPLOYMENT))
            for server in self.list_servers({TAG_PROJECT: PROJECT_TAG})
        ]

    def ssh_gateway(self) -> SshGateway | None:
        """The jump host every SSH connection to this cloud's VMs goes through; None: they are reached directly."""
        return None

    def quota_room(self) -> QuotaRoom | None:
        """What the project may still create, so that a deployment the quota cannot hold is refused before any VM
        is created; None when the cloud does not tell (each create then meets the quota alone)."""
        return None

    def delete_resource(self, kind: str, resource_id: str) -> None:
        """Delete one resource listed by list_project_resources (unknown ones are already gone)."""
        if kind != "server":
            raise CloudError(f"{self.name} cannot delete resources of kind {kind!r}")
        self.delete_server(resource_id)


DriverFactory = Callable[..., CloudDriver]
_registry: dict[str, DriverFactory] = {}
# Built-in clouds load lazily so importing this module stays cheap.
_builtin: dict[str, str] = {
    "local": "dodas_tasks.clouds.local:local_cloud",
    "ec2": "dodas_tasks.clouds.ec2:EC2Driver",
    "openstack": "dodas_tasks.clouds.openstack:OpenStackCloud",
}


def register_driver(cloud: str, factory: DriverFactory | str) -> None:
    """Make `get_driver(cloud)` use `factory` (a callable, or "module:attribute" imported on first use)."""
    if isinstance(factory, str):
        _builtin[cloud] = factory
        _registry.pop(cloud, None)
    else:
        _registry[cloud] = factory


def known_clouds() -> list[str]:
    """Names `get_driver` accepts."""
    return sorted(set(_registry) | set(_builtin))


def _resolve(cloud: str) -> DriverFactory:
    if cloud in _registry:
        return _registry[cloud]
    if cloud not in _builtin:
        raise CloudError(f"unknown cloud {cloud!r}; known clouds: {', '.join(known_clouds())}")
    module_name, _, attribute = _builtin[cloud].partition(":")
    factory = getattr(importlib.import_module(module_name), attribute)
    _registry[cloud] = factory
    return factory


def get_driver(cloud: str, owner: OwnerIdentity | None = None, **options: object) -> CloudDriver:
    """A driver for `cloud` ("local", …) configured with `options` (driver-specific keyword arguments).

    `owner`: the deployment's owner, for sites that act as the owner; clouds whose drivers cannot (the local
    cloud) ignore it and the others use it only when their connection says so (see site_auth)."""
    factory = _resolve(cloud)
    if owner is not None and "owner" in inspect.signature(factory).parameters:
        options["owner"] = owner
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        raise CloudError(f"bad options for cloud {cloud!r}: {exc}") from None
    return factory(**options)


def site_auth(cloud: str) -> SiteAuth:
    """How `cloud`'s site authenticates, read from its connection without calling the cloud (submission checks it).

    Drivers say it with a `site_auth()` class method; clouds without one use service credentials."""
    reader = getattr(_resolve(cloud), "site_auth", None)
    return reader() if callable(reader) else SiteAuth()
