"""boto3 EC2 clients from Airflow `aws` connections (through EC2Hook), cached per process.

Drivers are created for every provisioning pass and every poll; building a client (connection lookup, botocore
loaders) costs far more than the call itself, so one client per connection is shared, thread-safe, and renewed
after CLIENT_TTL_S so rotated credentials are picked up (a cachetools TTLCache; one caller builds, others wait).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache, cached

from dodas_tasks.clouds.base import CloudError

DEFAULT_CONN_ID = "aws_default"
CONN_ENV = "DODAS_EC2_CONN_ID"  # which Airflow connection get_driver("ec2") uses when not told
CLIENT_TTL_S = 900.0
_clients: TTLCache[tuple[str, str | None], tuple[Any, dict[str, Any]]] = TTLCache(maxsize=64, ttl=CLIENT_TTL_S)
_clients_condition = threading.Condition()
MAX_POOL = 64  # HTTP connections per client; above any sensible max_concurrency


def conn_id_from_env() -> str:
    return os.environ.get(CONN_ENV) or DEFAULT_CONN_ID


@dataclass(frozen=True)
class Ec2Connection:
    """A client plus the DODAS settings found in the connection's extra (`dodas_*` keys)."""

    conn_id: str
    client: Any
    region: str
    extra: dict[str, Any]


def connect(conn_id: str) -> Ec2Connection:
    """The shared client for `conn_id` (region and endpoint_url come from the connection extra)."""
    client, extra = _shared_client(conn_id)
    return Ec2Connection(conn_id, client, client.meta.region_name, extra)


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
