"""Cloud drivers behind one interface; `get_driver("local")` gives the local cloud (embedded, or the service at
DODAS_LOCALCLOUD_URL)."""

from dodas_tasks.clouds.base import (
    ACTIVE,
    BUILD,
    DELETED,
    ERROR,
    SERVER_STATUSES,
    CloudDriver,
    CloudError,
    Flavor,
    QuotaExceeded,
    Server,
    ServerNotFound,
    ServerSpec,
    get_driver,
    known_clouds,
    register_driver,
)

__all__ = [
    "ACTIVE",
    "BUILD",
    "DELETED",
    "ERROR",
    "SERVER_STATUSES",
    "CloudDriver",
    "CloudError",
    "Flavor",
    "QuotaExceeded",
    "Server",
    "ServerNotFound",
    "ServerSpec",
    "get_driver",
    "known_clouds",
    "register_driver",
]
