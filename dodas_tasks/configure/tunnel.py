"""TCP to a node's ports through jump hosts: a local forwarded port (as `ssh -L`) and the SSH banner check.

A framework's HTTP API on a VM with a private address only (Spark's master web UI) is read through a forwarded
port on this worker's loopback, so HTTP clients need no change; healing reads a node's SSH banner the same way.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import paramiko

from dodas_tasks.configure.connect import JumpHost, close_all, open_channel, open_hops
from dodas_tasks.configure.errors import ConfigureError, JumpHostUnreachable
from dodas_tasks.configure.hostkeys import KnownHosts, NewHostKeyCallback
from dodas_tasks.configure.keys import load_private_key

_CHUNK = 65536
_logger = logging.getLogger(__name__)


def _pump(local: socket.socket, channel: paramiko.Channel, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes (or the tunnel is torn down)."""
    try:
        while not stop.is_set():
            readable, _, _ = select.select([local, channel], [], [], 0.5)
            if local in readable:
                data = local.recv(_CHUNK)
                if not data:
                    break
                channel.sendall(data)
            if channel in readable:
                data = channel.recv(_CHUNK)
                if not data:
                    break
                local.sendall(data)
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        channel.close()
        local.close()


@contextlib.contextmanager
def forwarded_port(
    route: Sequence[JumpHost],
    host: str,
    port: int,
    *,
    private_key: str,
    known_hosts: KnownHosts,
    on_new_host_key: NewHostKeyCallback | None = None,
    timeout: float = 10.0,
    node: str = "",
) -> Iterator[tuple[str, int]]:
    """A (host, port) on this worker that reaches host:port through `route`; host:port itself when the route is
    empty. Every connection made to it gets its own channel from the last hop; all close on exit.
    JumpHostUnreachable when a hop cannot be reached or logged in to."""
    if not route:
        yield host, port
        return
    try:
        hops, _ = open_hops(
            route,
            host,
            port,
            pkey=load_private_key(private_key),
            known_hosts=known_hosts,
            on_new_host_key=on_new_host_key,
            timeout=timeout,
            node=node or host,
            final_channel=False,
        )
    except (OSError, EOFError, paramiko.SSHException, ConfigureError) as error:
        raise JumpHostUnreachable(
            f"no way to port {port} of node {node or host}: {route[-1].label} is unreachable ({error})", node or host
        ) from None
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    pumps: list[threading.Thread] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                local, peer = listener.accept()
            except OSError:  # the listener was closed: the tunnel is being torn down
                return
            try:
                channel = open_channel(hops[-1], host, port, timeout, origin=peer)
            except (OSError, EOFError, paramiko.SSHException) as error:
                _logger.info("forwarding to %s:%s through %s failed: %s", host, port, route[-1].label, error)
                local.close()
                continue
            pump = threading.Thread(target=_pump, args=(local, channel, stop), daemon=True, name="dodas-tunnel")
            pump.start()
            pumps.append(pump)

    acceptor = threading.Thread(target=accept, daemon=True, name="dodas-tunnel-accept")
    acceptor.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        stop.set()
        with contextlib.suppress(OSError):  # wakes the acceptor out of accept(): close() alone does not (Linux),
            listener.shutdown(socket.SHUT_RDWR)  # and every tunnel's end waited `timeout` for it
        listener.close()
        acceptor.join(timeout)
        for pump in pumps:
            pump.join(timeout)
        close_all(hops)


def _banner(sock: socket.socket | paramiko.Channel, timeout: float) -> bool:
    sock.settimeout(timeout)
    return sock.recv(8).startswith(b"SSH-")


def ssh_banners(
    route: Sequence[JumpHost],
    addresses: Sequence[tuple[str, int]],
    *,
    private_key: str | None = None,
    known_hosts: KnownHosts | None = None,
    on_new_host_key: NewHostKeyCallback | None = None,
    timeout: float = 3.0,
) -> dict[tuple[str, int], bool | None]:
    """Whether the SSH server at each (host, port) sends its banner (no login there): directly, or through
    `route`, logging in to its hops once with private_key. None for every address when a hop cannot be reached:
    the route failing says nothing about the nodes behind it."""
    addresses = list(dict.fromkeys(addresses))
    if not route:
        return _in_parallel(lambda address: _direct_banner(address, timeout), addresses)
    if private_key is None or known_hosts is None:
        raise ValueError("a route through jump hosts needs private_key and known_hosts")
    try:
        hops, _ = open_hops(
            route,
            route[-1].host,
            route[-1].port,
            pkey=load_private_key(private_key),
            known_hosts=known_hosts,
            on_new_host_key=on_new_host_key,
            timeout=timeout,
            node=route[-1].name,
            final_channel=False,
        )
    except (OSError, EOFError, paramiko.SSHException, ConfigureError) as error:
        _logger.info("SSH banners not checked: %s unreachable (%s)", route[-1].label, error)
        return dict.fromkeys(addresses)

    def through(address: tuple[str, int]) -> bool:
        try:
            with contextlib.closing(open_channel(hops[-1], *address, timeout)) as channel:
                return _banner(channel, timeout)
        except (OSError, EOFError, paramiko.SSHException):
            return False

    try:
        return _in_parallel(through, addresses)
    finally:
        close_all(hops)


def _in_parallel(check: Callable[[tuple[str, int]], bool], addresses: list[tuple[str, int]]) -> dict:
    with ThreadPoolExecutor(max_workers=min(8, len(addresses) or 1)) as pool:
        return dict(zip(addresses, pool.map(check, addresses), strict=True))


def _direct_banner(address: tuple[str, int], timeout: float) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            return _banner(sock, timeout)
    except OSError:
        return False
