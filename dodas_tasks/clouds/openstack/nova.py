"""Nova server calls on the SDK's compute proxy (a keystoneauth adapter), reading plain JSON.

Server calls are the hot path (one create per VM, one list per poll, one get per VM when recording), and building
openstacksdk `Server` resources costs ~0.1 s of CPU each on a small machine; plain dicts keep 50 VMs cheap.
"""

from __future__ import annotations

from typing import Any

from openstack import exceptions as os_exc

PAGE = 500


def _json(response: Any) -> dict[str, Any]:
    os_exc.raise_from_response(response)
    return response.json() if response.content else {}


def create(conn: Any, body: dict[str, Any]) -> dict[str, Any]:
    """POST /servers; returns the (partial) server Nova answers with: its id at least."""
    return _json(conn.compute.post("/servers", json={"server": body}))["server"]


def get(conn: Any, server_id: str) -> dict[str, Any] | None:
    response = conn.compute.get(f"/servers/{server_id}")
    if response.status_code == 404:
        return None
    return _json(response)["server"]


def list_all(conn: Any) -> list[dict[str, Any]]:
    """Every server of the project with details, following Nova's pagination links."""
    servers: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": PAGE}
    while True:
        page = _json(conn.compute.get("/servers/detail", params=params))
        servers += page.get("servers", [])
        if not page.get("servers_links") or not page.get("servers"):
            return servers
        params = {"limit": PAGE, "marker": servers[-1]["id"]}


def delete(conn: Any, server_id: str) -> None:
    response = conn.compute.delete(f"/servers/{server_id}")
    if response.status_code != 404:
        os_exc.raise_from_response(response)
