"""The local cloud's HTTP API as both sides speak it: JSON forms of specs, servers, resources and errors.

The service (service.py) and the remote driver (remote.py) share this one definition, so the driver interface
means the same over HTTP as in process.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from dodas_tasks.clouds.base import (
    CloudError,
    Flavor,
    ProjectResource,
    QuotaExceeded,
    Server,
    ServerNotFound,
    ServerSpec,
    SshGateway,
)

API = "/v1"
TOKEN_ENV = "DODAS_LOCALCLOUD_TOKEN"  # the bearer token both sides use, when the service requires one
URL_ENV = "DODAS_LOCALCLOUD_URL"  # set on workers: the local cloud is then this service, not embedded
_ERRORS: dict[str, type[CloudError]] = {cls.__name__: cls for cls in (CloudError, QuotaExceeded, ServerNotFound)}


def spec_to_json(spec: ServerSpec) -> dict[str, Any]:
    return asdict(spec)


def spec_from_json(data: dict[str, Any]) -> ServerSpec:
    try:
        return ServerSpec(**{**data, "flavor": Flavor(**data["flavor"])})
    except (KeyError, TypeError) as exc:
        raise CloudError(f"not a server spec: {exc}") from None


def server_to_json(server: Server) -> dict[str, Any]:
    return asdict(server)


def server_from_json(data: dict[str, Any]) -> Server:
    return Server(**data)


def resource_to_json(resource: ProjectResource) -> dict[str, Any]:
    data = asdict(resource)
    data["created_at"] = resource.created_at.isoformat() if resource.created_at else None
    return data


def resource_from_json(data: dict[str, Any]) -> ProjectResource:
    created = data.get("created_at")
    return ProjectResource(**{**data, "created_at": datetime.fromisoformat(created) if created else None})


def gateway_to_json(gateway: SshGateway) -> dict[str, Any]:
    data = asdict(gateway)
    data.pop("private_key")  # the gateway takes the deployments' own keys; it has none to hand out
    return data


def gateway_from_json(data: dict[str, Any]) -> SshGateway:
    return SshGateway(**data)


def error_to_json(error: CloudError) -> dict[str, Any]:
    return {"error": type(error).__name__, "message": str(error), "retryable": error.retryable}


def error_from_json(data: dict[str, Any], fallback: str) -> CloudError:
    cls = _ERRORS.get(str(data.get("error")), CloudError)
    return cls(str(data.get("message") or fallback), retryable=bool(data.get("retryable")))
