"""A TCP forwarder: services that listen on loopback only, reached by other hosts at an address of this machine.

`python -m dodas_tasks.devstack.forward BIND_HOST PORT=TARGET_HOST:TARGET_PORT ...` listens on BIND_HOST:PORT for
each route and relays every connection to its target, both ways, until SIGTERM. The stacks use it where a host of
their own (netns.py) must reach this machine's PostgreSQL, Redis or api-server as another host reaches a server's:
the services themselves keep listening on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dodas_tasks.devstack import processes


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other direction may still be answering


async def _relay(target: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(*target)
    except OSError:
        writer.close()
        return
    try:
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
    finally:
        for end in (writer, upstream_writer):
            end.close()


async def serve(bind_host: str, routes: Mapping[int, tuple[str, int]]) -> None:
    servers = []
    for port, target in routes.items():

        async def relay(r: asyncio.StreamReader, w: asyncio.StreamWriter, target: tuple[str, int] = target) -> None:
            with contextlib.suppress(asyncio.CancelledError):  # connections still open at SIGTERM end quietly
                await _relay(target, r, w)

        servers.append(await asyncio.start_server(relay, bind_host, port))
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    print(f"forwarding {', '.join(f'{bind_host}:{p} → {h}:{t}' for p, (h, t) in routes.items())}", flush=True)
    await stopped.wait()
    for server in servers:
        server.close()


def parse_route(text: str) -> tuple[int, tuple[str, int]]:
    """`PORT=HOST:PORT` → (port, (host, port))."""
    port, _, target = text.partition("=")
    host, _, target_port = target.rpartition(":")
    return int(port), (host, int(target_port))


@contextmanager
def forwarding(
    bind_host: str, routes: Mapping[int, tuple[str, int]], log: Path, timeout: float = 30.0
) -> Iterator[None]:
    """Run a forwarder for `routes` on `bind_host` while the block runs; stopped by its PID."""
    argv = [sys.executable, "-m", __name__, bind_host, *(f"{p}={h}:{t}" for p, (h, t) in routes.items())]
    proc = processes.spawn(argv, dict(os.environ), log.parent, log)
    try:
        deadline = time.monotonic() + timeout
        while not all(processes.port_in_use(bind_host, port) for port in routes):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the forwarder on {bind_host} did not start; see {log}")
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], dict(parse_route(route) for route in sys.argv[2:])))
