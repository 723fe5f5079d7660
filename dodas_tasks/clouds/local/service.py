"""`dodas localcloud serve`: one local cloud shared by workers on other hosts.

Its HTTP API is the driver interface (wire.py) over an embedded LocalCloud; its SSH gateway (gateway.py) is the
jump host to the VMs, whose addresses only the service's host reaches. Workers set DODAS_LOCALCLOUD_URL and
the local cloud driver talks to this service instead of running VMs itself.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from dodas_tasks.clouds.base import CloudError, ServerNotFound, SshGateway
from dodas_tasks.clouds.local import wire
from dodas_tasks.clouds.local.driver import LocalCloud
from dodas_tasks.clouds.local.gateway import start_gateway

log = logging.getLogger("dodas.localcloud.service")
_WILDCARDS = ("0.0.0.0", "::", "")


def _status_of(error: CloudError) -> int:
    if isinstance(error, ServerNotFound):
        return 404
    return 503 if error.retryable else 409


def create_app(cloud: LocalCloud, gateway: SshGateway, token: str | None = None) -> FastAPI:
    """The API over `cloud`; with `token`, every call needs `Authorization: Bearer <token>`."""

    def authorised(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "a valid bearer token is required (DODAS_LOCALCLOUD_TOKEN)")

    app = FastAPI(title="DODAS local cloud", dependencies=[Depends(authorised)], docs_url=None, redoc_url=None)

    @app.exception_handler(CloudError)
    def cloud_error(_request: Request, error: CloudError) -> JSONResponse:
        return JSONResponse(wire.error_to_json(error), status_code=_status_of(error))

    @app.get(f"{wire.API}/gateway")
    def get_gateway(request: Request) -> dict[str, Any]:
        """The gateway as the caller reaches it: listening on every address, it is at the host the API was."""
        if gateway.host in _WILDCARDS and request.url.hostname:
            return wire.gateway_to_json(replace(gateway, host=request.url.hostname))
        return wire.gateway_to_json(gateway)

    @app.post(f"{wire.API}/servers", status_code=201)
    def create_server(spec: dict[str, Any]) -> dict[str, Any]:
        return wire.server_to_json(cloud.create_server(wire.spec_from_json(spec)))

    @app.post(f"{wire.API}/servers/search")
    def list_servers(tags: dict[str, str]) -> list[dict[str, Any]]:
        return [wire.server_to_json(server) for server in cloud.list_servers(tags)]

    @app.get(f"{wire.API}/servers/{{server_id}}")
    def get_server(server_id: str) -> dict[str, Any]:
        server = cloud.get_server(server_id)
        if server is None:
            raise ServerNotFound(f"no server {server_id!r} in this local cloud")
        return wire.server_to_json(server)

    @app.delete(f"{wire.API}/servers/{{server_id}}", status_code=204)
    def delete_server(server_id: str) -> Response:
        cloud.delete_server(server_id)
        return Response(status_code=204)

    @app.put(f"{wire.API}/keypairs/{{name}}", status_code=204)
    def import_key_pair(name: str, body: dict[str, str]) -> Response:
        cloud.import_key_pair(name, body.get("public_key", ""))
        return Response(status_code=204)

    @app.delete(f"{wire.API}/keypairs/{{name}}", status_code=204)
    def delete_key_pair(name: str) -> Response:
        cloud.delete_key_pair(name)
        return Response(status_code=204)

    @app.get(f"{wire.API}/resources")
    def list_resources() -> list[dict[str, Any]]:
        return [wire.resource_to_json(resource) for resource in cloud.list_project_resources()]

    @app.delete(f"{wire.API}/resources/{{kind}}/{{resource_id}}", status_code=204)
    def delete_resource(kind: str, resource_id: str) -> Response:
        cloud.delete_resource(kind, resource_id)
        return Response(status_code=204)

    return app


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int) -> Endpoint:
        """ "host:port", "host" (default port) or "[v6]:port"."""
        host, sep, port = text.rpartition(":")
        if not sep or "]" in port:
            host, port = text, str(default_port)
        return cls(host.strip("[]"), int(port))


async def serve(
    cloud: LocalCloud,
    api: Endpoint,
    gateway: Endpoint,
    *,
    advertised_gateway: Endpoint | None = None,
    token: str | None = None,
    on_ready: Callable[[str, SshGateway], None] = lambda _url, _gateway: None,
) -> None:
    """Serve the API and the gateway until SIGINT/SIGTERM. Workers are told the advertised gateway address (the
    listening one by default: set it when workers reach the service through another address)."""
    acceptor, host_key = await start_gateway(cloud, gateway.host, gateway.port)
    told = advertised_gateway or gateway
    gateway_info = SshGateway(host=told.host, port=told.port, host_key=host_key)
    config = uvicorn.Config(
        create_app(cloud, gateway_info, token), host=api.host, port=api.port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    try:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if server.started:
            host = f"[{api.host}]" if ":" in api.host else api.host
            on_ready(f"http://{host}:{api.port}", gateway_info)
        await serving
    finally:
        acceptor.close()
        await acceptor.wait_closed()
