"""Loopback IP allocation: one distinct 127.x.y.z per live server, safe against parallel creators.

Within one DODAS home a file lock serialises allocation and the server directories record what is taken.
Across homes (parallel test runs, a second installation) the address is proven free by binding the SSH
listening socket to it here, without SO_REUSEADDR: the bound socket is handed to the node server, so
nobody else can take the address between allocation and boot.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator

from dodas_tasks.clouds.base import CloudError
from dodas_tasks.clouds.local.layout import CloudLayout


def candidate_ips(pool: ipaddress.IPv4Network) -> Iterator[str]:
    """Addresses of the pool in order, skipping those ending in .0 or .255 (they look like network/broadcast)."""
    for address in pool.hosts() if pool.prefixlen < 31 else pool:
        if address.packed[-1] not in (0, 255):
            yield str(address)


def ips_in_use(layout: CloudLayout) -> set[str]:
    """IPs recorded by the server directories of this home (a directory holds its IP until deleted)."""
    used = set()
    for server_id in layout.server_ids():
        state = layout.server(server_id).read_state()
        if state and state.get("ip"):
            used.add(state["ip"])
    return used


def bind_listener(ip: str, port: int) -> socket.socket | None:
    """A TCP socket bound (not yet listening) to ip:port, or None if something else holds that address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((ip, port))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
            return None
        raise CloudError(
            f"cannot listen on {ip}:{port}: {exc.strerror}; choose another DODAS_LOCAL_SSH_PORT "
            "(ports below 1024 need root)"
        ) from None
    sock.set_inheritable(True)
    return sock


def allocate(layout: CloudLayout, pool: ipaddress.IPv4Network, port: int) -> tuple[str, socket.socket]:
    """Pick a free IP and bind its listener. Call with layout.ipam_lock held, and record the IP before
    releasing it."""
    used = ips_in_use(layout)
    for ip in candidate_ips(pool):
        if ip in used:
            continue
        sock = bind_listener(ip, port)
        if sock is not None:
            return ip, sock
    raise CloudError(
        f"no free loopback address left in {pool} for port {port} ({len(used)} used by this local cloud); "
        "delete servers or widen DODAS_LOCAL_IP_POOL",
        retryable=True,
    )
