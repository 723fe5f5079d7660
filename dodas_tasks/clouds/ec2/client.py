"""boto3 EC2 clients from Airflow `aws` connections (through EC2Hook), cached per process.

Drivers are created for every provisioning pass and every poll; building a client (connection lookup, botocore
loaders) costs far more than the call itself, so one client per connection is shared, thread-safe, and renewed
after CLIENT_TTL_S so rotated credentials are picked up (a cachetools TTLCache; one caller builds, others wait).

A connection whose extra says `dodas_auth: owner` acts as each deployment's owner instead of with its own
credentials: one client per (connection, owner's delegation), on STS web-identity credentials (web_identity.py).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache, cached

from dodas_tasks.clouds.base import CloudError, OwnerIdentity, OwnerRequired, SiteAuth
from dodas_tasks.naming import role_session_name

DEFAULT_CONN_ID = "aws_default"
CONN_ENV = "DODAS_EC2_CONN_ID"  # which Airflow connection get_driver("ec2") uses when not told
CLIENT_TTL_S = 900.0
_clients: TTLCache[tuple[str, str | None], tuple[Any, dict[str, Any]]] = TTLCache(maxsize=64, ttl=CLIENT_TTL_S)
_clients_condition = threading.Condition()
_owner_clients: TTLCache[tuple[str, str | None, str], tuple[Any, _Holder]] = TTLCache(maxsize=256, ttl=CLIENT_TTL_S)
_owner_lock = threading.Lock()
MAX_POOL = 64  # HTTP connections per client; above any sensible max_concurrency
OWNER, SERVICE = "owner", "service"  # extra `dodas_auth`: how the site authenticates


def conn_id_from_env() -> str:
    return os.environ.get(CONN_ENV) or DEFAULT_CONN_ID


@dataclass(frozen=True)
class Ec2Connection:
    """A client plus the DODAS settings found in the connection's extra (`dodas_*` keys)."""

    conn_id: str
    client: Any
    region: str
    extra: dict[str, Any]


def connect(conn_id: str, owner: OwnerIdentity | None = None) -> Ec2Connection:
    """The shared client for `conn_id` (region and endpoint_url come from the connection extra); on a site that
    acts as the owners, the client of `owner` (required there, ignored elsewhere)."""
    extra = _extra_of(conn_id)
    if _acts_as_owner(conn_id, extra):
        if owner is None:
            raise OwnerRequired(
                f"aws connection {conn_id!r} acts as each deployment's owner (STS web identity, role "
                f"{extra.get('role_arn')}): this deployment has no delegated owner (it was submitted without an IAM "
                "access token, or its delegation was revoked); the owner must submit or delegate with their IAM token"
            )
        client = _owner_client(conn_id, extra, owner)
        return Ec2Connection(conn_id, client, client.meta.region_name, extra)
    client, extra = _shared_client(conn_id)
    return Ec2Connection(conn_id, client, client.meta.region_name, extra)


def _acts_as_owner(conn_id: str, extra: dict[str, Any]) -> bool:
    mode = extra.get("dodas_auth", SERVICE)
    if mode not in (OWNER, SERVICE):
        raise CloudError(f"aws connection {conn_id!r}: dodas_auth {mode!r} is not {OWNER!r} or {SERVICE!r}")
    return mode == OWNER


@cached(TTLCache(maxsize=64, ttl=30.0), key=lambda conn_id: _definition(conn_id), lock=threading.Lock())
def _extra_of(conn_id: str) -> dict[str, Any]:
    """The connection's extra, read at most every 30 s; {} for a connection that is not defined (the client
    builder then says how to define it)."""
    from airflow.sdk import BaseHook

    try:
        return dict(BaseHook.get_connection(conn_id).extra_dejson or {})
    except Exception:  # AirflowNotFoundException and friends: reported when the client is built
        return {}


def site_auth(conn_id: str) -> SiteAuth:
    """How the site of `conn_id` authenticates, read from its connection without calling AWS."""
    extra = _extra_of(conn_id)
    if not _acts_as_owner(conn_id, extra):
        return SiteAuth(description=f"aws connection {conn_id!r} (service credentials)")
    service = extra.get("dodas_service_conn_id")
    return SiteAuth(
        acts_as_owner=True,
        description=f"aws connection {conn_id!r} (each owner through STS web identity, role {extra.get('role_arn')})",
        service_options={"aws_conn_id": service} if service else None,
    )


@dataclass
class _Holder:
    """The newest owner handed in for a cached client: its credentials refresh through the live token source."""

    owner: OwnerIdentity

    def access_token(self) -> str:
        return self.owner.access_token()


def _owner_client(conn_id: str, extra: dict[str, Any], owner: OwnerIdentity) -> Any:
    from botocore.config import Config

    from dodas_tasks.clouds.ec2.web_identity import web_identity_of, web_identity_session

    key = (*_definition(conn_id), owner.delegation)
    with _owner_lock:
        found = _owner_clients.get(key)
        if found is not None:
            found[1].owner = owner
            return found[0]
        holder = _Holder(owner)
        identity = web_identity_of(conn_id, extra, role_session_name(owner.subject))
        session = web_identity_session(identity, holder.access_token)
        config = Config(max_pool_connections=MAX_POOL, retries={"mode": "standard", "total_max_attempts": 2})
        client = session.client("ec2", endpoint_url=extra.get("endpoint_url"), config=config)
        _owner_clients[key] = (client, holder)
        return client


def _definition(conn_id: str) -> tuple[str, str | None]:
    """The cache key: a connection redefined in the environment gets a new client."""
    return conn_id, os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")


@cached(_clients, key=_definition, condition=_clients_condition)
def _shared_client(conn_id: str) -> tuple[Any, dict[str, Any]]:
    from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
    from botocore.config import Config

    # botocore retries once quickly; the provisioner adds jittered backoff on top for what stays retryable
    config = Config(max_pool_connections=MAX_POOL, retries={"mode": "standard", "total_max_attempts": 2})
    hook = EC2Hook(aws_conn_id=conn_id, api_type="client_type", config=config)
    try:
        extra = dict(hook.get_connection(conn_id).extra_dejson)
        client = hook.conn
    except Exception as exc:  # AirflowNotFoundException and friends: say how to fix it
        if type(exc).__name__ in ("AirflowNotFoundException", "ConnectionNotFound") or "isn't defined" in str(exc):
            raise CloudError(
                f"Airflow connection {conn_id!r} is not defined: create an `aws` connection "
                f"(e.g. AIRFLOW_CONN_{conn_id.upper()}) or point {CONN_ENV} at one"
            ) from None
        raise CloudError(f"cannot build an EC2 client from connection {conn_id!r}: {type(exc).__name__}") from None
    if not client.meta.region_name:
        raise CloudError(f"Airflow connection {conn_id!r} has no region: set extra.region_name")
    return client, extra


def forget_clients() -> None:
    """Drop cached clients (tests that restart the endpoint)."""
    _shared_client.cache_clear()
    with _owner_lock:
        _owner_clients.clear()
