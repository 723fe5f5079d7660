"""Real SSH servers for the configurator tests: asyncssh in a subprocess, one loopback IP per server.

Run as a program it is the server; imported, it gives helpers that start and stop servers by PID.
The server marks itself a child subreaper, so daemons started over SSH stay its descendants and are
killed with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 10.0


# ----------------------------------------------------------------------------------------------------------
# The server program
# ----------------------------------------------------------------------------------------------------------


def _children_by_parent() -> dict[int, list[tuple[int, str]]]:
    """{ppid: [(pid, state)]} for every process, read from /proc/*/stat."""
    tree: dict[int, list[tuple[int, str]]] = {}
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        tree.setdefault(int(fields[1]), []).append((int(stat_path.parent.name), fields[0]))
    return tree


def _descendants(root: int) -> list[int]:
    tree = _children_by_parent()
    found, todo = [], [root]
    while todo:
        for pid, _state in tree.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def _kill_descendants() -> None:
    """SIGKILL everything started through this server (orphans included) and reap it, until none is left."""
    for _ in range(100):
        pids = _descendants(os.getpid())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


async def _reap_orphans(spawned: set[int]) -> None:
    """Reap zombies of re-parented daemons (so `kill -0` on a dead daemon fails) without touching our own."""
    while True:
        for pid, state in _children_by_parent().get(os.getpid(), []):
            if state == "Z" and pid not in spawned:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
        await asyncio.sleep(0.5)


async def _serve(args: argparse.Namespace) -> None:
    import asyncssh

    workdir = Path(args.workdir)
    spawned: set[int] = set()
    shell_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
    }

    async def copy(source: asyncio.StreamReader, sink: asyncssh.SSHWriter) -> None:
        while data := await source.read(65536):
            sink.write(data)

    async def feed_stdin(source: asyncssh.SSHReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, asyncssh.Error):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    async def handle(process: asyncssh.SSHServerProcess) -> None:
        argv = ["/bin/sh", "-c", process.command] if process.command else ["/bin/sh"]
        child = await asyncio.create_subprocess_exec(
            *argv,
            cwd=workdir,
            env={**shell_env, "USER": process.get_extra_info("username") or "dodas"},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        spawned.add(child.pid)
        stdin_task = asyncio.create_task(feed_stdin(process.stdin, child.stdin))
        # Pump both outputs to EOF before exiting, or output is lost (see platform notes).
        await asyncio.gather(copy(child.stdout, process.stdout), copy(child.stderr, process.stderr))
        code = await child.wait()
        spawned.discard(child.pid)
        stdin_task.cancel()
        process.exit(code if code >= 0 else 128 - code)

    host_key = asyncssh.import_private_key(Path(args.host_key).read_text())
    authorized = asyncssh.import_authorized_keys(Path(args.authorized_key).read_text())
    server = await asyncssh.create_server(
        asyncssh.SSHServer,
        args.host,
        args.port,
        server_host_keys=[host_key],
        authorized_client_keys=authorized,
        process_factory=handle,
        encoding=None,
        reuse_address=True,
    )
    reaper = asyncio.create_task(_reap_orphans(spawned))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    Path(args.ready_file).write_text(str(os.getpid()))
    await stop.wait()
    reaper.cancel()
    server.close()
    _kill_descendants()


def main() -> None:
    parser = argparse.ArgumentParser(description="test SSH server: one authorized key, /bin/sh -c in workdir")
    for option in ("--host", "--host-key", "--authorized-key", "--workdir", "--ready-file"):
        parser.add_argument(option, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    asyncio.run(_serve(args))


# ----------------------------------------------------------------------------------------------------------
# Helpers for tests
# ----------------------------------------------------------------------------------------------------------


_next_address = [0]
_address_base = (random.randrange(100, 250), os.getpid() % 250)


def fresh_loopback_ip() -> str:
    """A loopback address no other server of this test session uses (127.A.B.n, A/B from pid and chance)."""
    _next_address[0] += 1
    number = _next_address[0]
    return f"127.{_address_base[0]}.{(_address_base[1] + number // 250) % 250}.{number % 250 + 1}"


def free_port(host: str) -> int:
    """A port nothing listens on at host right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass
class SSHServer:
    """One running test server; stop() kills it (and all it started) by PID."""

    host: str
    port: int
    workdir: Path
    host_key_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    ready_file: Path
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def write_host_key(path: Path) -> Path:
    """A new ed25519 host key (OpenSSH form), readable by its owner only."""
    from dodas_tasks.configure import generate_keypair

    path.write_text(generate_keypair("test-host").private_openssh)
    path.chmod(0o600)
    return path


def start_ssh_server(
    base_dir: Path,
    authorized_public_key: str,
    *,
    host: str | None = None,
    port: int | None = None,
    host_key_path: Path | None = None,
    wait: bool = True,
) -> SSHServer:
    """Start a server subprocess (own session, so a last-resort killpg reaches everything it started)."""
    host = host or fresh_loopback_ip()
    port = port or free_port(host)
    server_dir = base_dir / f"{host}_{port}"
    workdir = server_dir / "home"
    workdir.mkdir(parents=True, exist_ok=True)
    host_key_path = host_key_path or write_host_key(server_dir / "host_key")
    authorized_path = server_dir / "authorized_keys"
    authorized_path.write_text(authorized_public_key + "\n")
    ready_file = server_dir / f"ready.{time.monotonic_ns()}"
    log_path = server_dir / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--host",
                host,
                "--port",
                str(port),
                "--host-key",
                str(host_key_path),
                "--authorized-key",
                str(authorized_path),
                "--workdir",
                str(workdir),
                "--ready-file",
                str(ready_file),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = SSHServer(host, port, workdir, host_key_path, process, log_path, ready_file)
    if wait:
        wait_until_ready(server)
    return server


def wait_until_ready(server: SSHServer) -> None:
    """Poll for the server's ready file (written after it listens), failing if it dies or the deadline ends."""
    deadline = time.monotonic() + START_DEADLINE_S
    while not server.ready_file.exists():
        if server.process.poll() is not None:
            raise RuntimeError(f"test SSH server exited early:\n{server.log_path.read_text()}")
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"test SSH server not ready in {START_DEADLINE_S} s:\n{server.log_path.read_text()}")
        time.sleep(0.02)


def wait_for(condition: Callable[[], object], what: str, deadline_s: float = 30.0) -> None:
    """Poll condition() until true; fail naming `what` when the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


if __name__ == "__main__":
    main()
