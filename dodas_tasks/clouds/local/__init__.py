"""The local cloud: sandboxes with their own loopback IP and SSH server (see driver.py), embedded in this process
or served to other hosts by `dodas localcloud serve` (service.py, remote.py).

`LocalCloud` is imported lazily so that starting a node server (`python -m …local.nodeserver`) stays cheap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dodas_tasks.clouds.base import CloudDriver
    from dodas_tasks.clouds.local.driver import LocalCloud

__all__ = ["LocalCloud", "local_cloud"]


def local_cloud(
    url: str | None = None,
    token: str | None = None,
    home: str | Path | None = None,
    ssh_port: int | None = None,
    ip_pool: str | None = None,
    boot_delay: float | None = None,
    boot_failure_rate: float | None = None,
    api_error_rate: float | None = None,
    max_servers: int | None = None,
) -> CloudDriver:
    """The `local` cloud's driver: the service at `url` (else env DODAS_LOCALCLOUD_URL) when one is set, with
    `token` (else env DODAS_LOCALCLOUD_TOKEN); otherwise the embedded LocalCloud with the other options."""
    from dodas_tasks.clouds.base import CloudError
    from dodas_tasks.clouds.local import wire

    url = url or os.environ.get(wire.URL_ENV) or None
    embedded = {
        "home": home,
        "ssh_port": ssh_port,
        "ip_pool": ip_pool,
        "boot_delay": boot_delay,
        "boot_failure_rate": boot_failure_rate,
        "api_error_rate": api_error_rate,
        "max_servers": max_servers,
    }
    if url is None:
        from dodas_tasks.clouds.local.driver import LocalCloud

        return LocalCloud(**embedded)  # type: ignore[arg-type]
    given = sorted(name for name, value in embedded.items() if value is not None)
    if given:
        raise CloudError(f"options {given} set the embedded local cloud; the service at {url} has its own settings")
    from dodas_tasks.clouds.local.remote import RemoteLocalCloud

    return RemoteLocalCloud(url, token or os.environ.get(wire.TOKEN_ENV) or None)


def __getattr__(name: str) -> Any:
    if name == "LocalCloud":
        from dodas_tasks.clouds.local.driver import LocalCloud

        return LocalCloud
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
