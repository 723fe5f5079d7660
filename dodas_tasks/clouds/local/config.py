"""Settings of the local cloud: constructor options win, then DODAS_LOCAL_* environment variables, then defaults."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from dodas_tasks.clouds.base import CloudError
from dodas_tasks.settings import dodas_home

DEFAULT_SSH_PORT = 2222  # same for root and non-root, and clear of a host sshd on 0.0.0.0:22
DEFAULT_IP_POOL = "127.77.0.0/16"  # clear of 127.0.0.1 and 127.0.0.0/16


@dataclass(frozen=True)
class LocalCloudConfig:
    """Resolved settings of one LocalCloud driver."""

    root: Path
    ssh_port: int
    ip_pool: ipaddress.IPv4Network
    boot_delay: float
    boot_failure_rate: float
    api_error_rate: float
    max_servers: int | None
    ssh_drop_sessions: int = 0  # each VM's SSH server drops its first N sessions (a flaky network or sshd)


def _from_env(option: object, env_name: str) -> object:
    return option if option is not None else os.environ.get(env_name) or None


def _number(value: object, env_name: str, kind: type, low: float, high: float | None) -> float | int:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise CloudError(f"{env_name}={value!r} is not a {kind.__name__}; set it to a number") from None
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise CloudError(f"{env_name}={value!r} is out of range; it must be {bounds}")
    return number


def _pool(value: object) -> ipaddress.IPv4Network:
    try:
        pool = ipaddress.IPv4Network(str(value), strict=False)
    except ValueError:
        raise CloudError(f"DODAS_LOCAL_IP_POOL={value!r} is not an IPv4 network such as 127.77.0.0/16") from None
    if not pool.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
        raise CloudError(f"DODAS_LOCAL_IP_POOL={value!r} must lie inside the loopback range 127.0.0.0/8")
    return pool


def resolve_config(
    *,
    home: str | Path | None = None,
    ssh_port: int | None = None,
    ip_pool: str | None = None,
    boot_delay: float | None = None,
    boot_failure_rate: float | None = None,
    api_error_rate: float | None = None,
    max_servers: int | None = None,
    ssh_drop_sessions: int | None = None,
) -> LocalCloudConfig:
    """Settings from options, else env (DODAS_LOCAL_SSH_PORT, _IP_POOL, _BOOT_DELAY, _BOOT_FAILURE_RATE,
    _API_ERROR_RATE, _MAX_SERVERS, _SSH_DROP_SESSIONS), else defaults; a bad value raises CloudError naming the
    variable."""
    root = Path(home) / "localcloud" if home is not None else dodas_home() / "localcloud"
    limit = _from_env(max_servers, "DODAS_LOCAL_MAX_SERVERS")
    return LocalCloudConfig(
        root=root,
        ssh_port=int(
            _number(
                _from_env(ssh_port, "DODAS_LOCAL_SSH_PORT") or DEFAULT_SSH_PORT, "DODAS_LOCAL_SSH_PORT", int, 1, 65535
            )
        ),
        ip_pool=_pool(_from_env(ip_pool, "DODAS_LOCAL_IP_POOL") or DEFAULT_IP_POOL),
        boot_delay=float(
            _number(_from_env(boot_delay, "DODAS_LOCAL_BOOT_DELAY") or 0, "DODAS_LOCAL_BOOT_DELAY", float, 0, None)
        ),
        boot_failure_rate=float(
            _number(
                _from_env(boot_failure_rate, "DODAS_LOCAL_BOOT_FAILURE_RATE") or 0,
                "DODAS_LOCAL_BOOT_FAILURE_RATE",
                float,
                0,
                1,
            )
        ),
        api_error_rate=float(
            _number(
                _from_env(api_error_rate, "DODAS_LOCAL_API_ERROR_RATE") or 0, "DODAS_LOCAL_API_ERROR_RATE", float, 0, 1
            )
        ),
        max_servers=None if limit is None else int(_number(limit, "DODAS_LOCAL_MAX_SERVERS", int, 0, None)),
        ssh_drop_sessions=int(
            _number(
                _from_env(ssh_drop_sessions, "DODAS_LOCAL_SSH_DROP_SESSIONS") or 0,
                "DODAS_LOCAL_SSH_DROP_SESSIONS",
                int,
                0,
                None,
            )
        ),
    )
