"""The local cloud driver's second transport: a local cloud served by `dodas localcloud serve` on another host.

Same interface and answers as the embedded LocalCloud, over HTTP (wire.py); the service's SSH gateway is the
jump host of its VMs (`ssh_gateway`), so workers that cannot reach the VMs' addresses still configure them.
"""

from __future__ import annotations

from typing import Any

import httpx

from dodas_tasks.clouds.base import CloudDriver, CloudError, ProjectResource, Server, ServerSpec, SshGateway
from dodas_tasks.clouds.local import wire


class RemoteLocalCloud(CloudDriver):
    """A local cloud served at `url` (http://host:port); `token` when the service requires one."""

    name = "local"
    max_concurrency = 64

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # no proxy from the environment: the service sits on a loopback or private address
        self._http = httpx.Client(base_url=self.url + wire.API, headers=headers, timeout=timeout, trust_env=False)
        self._gateway: SshGateway | None = None

    def _call(self, method: str, path: str, json: Any = None, missing_ok: bool = False) -> Any:
        what = f"local cloud at {self.url}: {method} {path}"
        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise CloudError(f"{what}: {type(exc).__name__}: {exc}", retryable=True) from None
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code == 401:
            raise CloudError(f"{what}: refused: set DODAS_LOCALCLOUD_TOKEN to the service's token")
        if response.is_error:
            try:
                body = response.json()
            except ValueError:
                body = {}
            if not isinstance(body, dict) or "error" not in body:
                body = {"message": f"HTTP {response.status_code}", "retryable": response.status_code >= 500}
            raise wire.error_from_json(body, f"HTTP {response.status_code}")
        return response.json() if response.content else None

    def create_server(self, spec: ServerSpec) -> Server:
        return wire.server_from_json(self._call("POST", "/servers", wire.spec_to_json(spec)))

    def get_server(self, server_id: str) -> Server | None:
        found = self._call("GET", f"/servers/{server_id}", missing_ok=True)
        return None if found is None else wire.server_from_json(found)

    def list_servers(self, tags: dict[str, str]) -> list[Server]:
        return [wire.server_from_json(item) for item in self._call("POST", "/servers/search", dict(tags))]

    def delete_server(self, server_id: str) -> None:
        self._call("DELETE", f"/servers/{server_id}")

    def import_key_pair(self, name: str, public_key: str) -> None:
        self._call("PUT", f"/keypairs/{name}", {"public_key": public_key})

    def delete_key_pair(self, name: str) -> None:
        self._call("DELETE", f"/keypairs/{name}")

    def list_project_resources(self) -> list[ProjectResource]:
        return [wire.resource_from_json(item) for item in self._call("GET", "/resources")]

    def delete_resource(self, kind: str, resource_id: str) -> None:
        self._call("DELETE", f"/resources/{kind}/{resource_id}")

    def ssh_gateway(self) -> SshGateway:
        """The service's SSH gateway: the VMs' addresses are reachable only through it."""
        if self._gateway is None:
            self._gateway = wire.gateway_from_json(self._call("GET", "/gateway"))
        return self._gateway
