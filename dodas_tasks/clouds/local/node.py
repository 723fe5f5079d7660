"""The SSH service of one local-cloud node: runs each session's command in the node's sandbox.

It is a child subreaper: whatever a command leaves behind stays its descendant, and on SIGTERM it kills
them all before exiting. Runs in the process nodeserver.py detached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncssh

from dodas_tasks.clouds.base import ACTIVE, BUILD, ERROR
from dodas_tasks.clouds.local import procs
from dodas_tasks.clouds.local.layout import ServerDir

log = logging.getLogger("dodas.localcloud.node")
_REAP_DELAY_S = 1.0  # an orphan zombie waits this long; asyncio's own children are reaped by then


def command_env(node_id: str, node_ip: str, home: Path, client_env: dict[str, str]) -> dict[str, str]:
    """Environment of a command: a clean base, what the client sent, and the node identity (forced)."""
    env = {name: os.environ[name] for name in procs.PASSED_ENV if name in os.environ}
    env.update(
        HOME=str(home),
        TMPDIR=str(home / "tmp"),
        SHELL="/bin/sh",
        USER="root" if os.getuid() == 0 else os.environ.get("USER", "dodas"),
    )
    env["LOGNAME"] = env["USER"]
    env.update(client_env)
    env.update({procs.NODE_ID_ENV: node_id, procs.NODE_IP_ENV: node_ip})
    return env


class _NodeSshd(asyncssh.SSHServer):
    """What a VM's sshd allows besides sessions: TCP forwarding (direct-tcpip), so the node can be a jump host."""

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        return True


class NodeServer:
    """The SSH server and the bookkeeping of the processes it runs."""

    def __init__(self, server_dir: ServerDir, node_id: str, node_ip: str, drop_sessions: int = 0) -> None:
        self.dir = server_dir
        self.node_id = node_id
        self.node_ip = node_ip
        self.sessions_to_drop = drop_sessions  # failure injection: a flaky network or sshd
        self.owned: set[int] = set()  # pids asyncio waits for; the orphan reaper leaves them alone
        self.stop = asyncio.Event()
        self._reap_scheduled = False

    # -- orphan reaping -------------------------------------------------------------------------------
    def schedule_reap(self) -> None:
        if not self._reap_scheduled:
            self._reap_scheduled = True
            asyncio.get_running_loop().call_later(_REAP_DELAY_S, self._reap)

    def _reap(self) -> None:
        self._reap_scheduled = False
        procs.reap_children(skip=self.owned)

    async def reap_periodically(self) -> None:
        while True:
            await asyncio.sleep(30)
            self._reap()

    # -- commands -------------------------------------------------------------------------------------
    async def spawn(self, argv: list[str], env: dict[str, str], **streams: object) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*argv, cwd=self.dir.home, env=env, **streams)
        self.owned.add(proc.pid)
        return proc

    async def handle_session(self, process: asyncssh.SSHServerProcess) -> None:
        """Run the session's command as `/bin/sh -c CMD` (or `/bin/sh` for a shell) and relay its streams."""
        if self.sessions_to_drop > 0:
            self.sessions_to_drop -= 1
            log.info("dropping the connection of this session (DODAS_LOCAL_SSH_DROP_SESSIONS)")
            process.channel.get_connection().abort()
            return
        argv = ["/bin/sh", "-c", process.command] if process.command is not None else ["/bin/sh"]
        env = command_env(self.node_id, self.node_ip, self.dir.home, dict(process.env))
        pipe = asyncio.subprocess.PIPE
        try:
            proc = await self.spawn(argv, env, stdin=pipe, stdout=pipe, stderr=pipe)
        except OSError as exc:
            process.stderr.write(f"cannot start /bin/sh: {exc.strerror}\n".encode())
            process.exit(127)
            return
        feeding = asyncio.create_task(_feed(process.stdin, proc.stdin))
        # Pump both outputs to EOF before reporting the exit status, or trailing output is lost.
        await asyncio.gather(_relay(proc.stdout, process.stdout), _relay(proc.stderr, process.stderr))
        returncode = await proc.wait()
        self.owned.discard(proc.pid)
        feeding.cancel()
        status = returncode if returncode >= 0 else 128 - returncode  # killed by signal N → 128+N, like sh
        log.info("session ended with exit status %d", status)  # never log the command: it may hold secrets
        with contextlib.suppress(OSError, asyncssh.Error):
            process.exit(status)

    async def run_user_data(self) -> None:
        """Run the user-data script once at boot, like cloud-init, logging to logs/user-data.log."""
        if not self.dir.user_data.exists():
            return
        env = command_env(self.node_id, self.node_ip, self.dir.home, {})
        with open(self.dir.logs / "user-data.log", "ab") as out:
            proc = await self.spawn(
                ["/bin/sh", str(self.dir.user_data)], env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out
            )
        returncode = await proc.wait()
        self.owned.discard(proc.pid)
        log.info("user-data exited with status %d", returncode)

    # -- life cycle -----------------------------------------------------------------------------------
    async def serve(self, listen_fd: int, boot_delay: float, fail_boot: bool) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        loop.add_signal_handler(signal.SIGCHLD, self.schedule_reap)
        reaper = asyncio.create_task(self.reap_periodically())

        host_key = load_or_create_host_key(self.dir.host_key)
        state = self.dir.update_state(host_key=host_key.export_public_key().decode().strip())
        # The boot delay models a cloud's boot time, counted from the create call like a cloud's clock:
        # this process's own start-up (imports, host key) happens within it, not on top of it.
        created = datetime.fromisoformat(state["created_at"]) if state and state.get("created_at") else None
        remaining = boot_delay - (datetime.now(UTC) - created).total_seconds() if created else boot_delay
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=max(0.0, remaining))
        if self.stop.is_set():
            return
        if fail_boot:
            self.dir.update_state(status=ERROR, fault="boot failed (injected by DODAS_LOCAL_BOOT_FAILURE_RATE)")
            return

        sock = socket.socket(fileno=listen_fd)
        sock.setblocking(False)
        acceptor = await asyncssh.listen(
            sock=sock,
            server_factory=_NodeSshd,
            server_host_keys=[host_key],
            authorized_client_keys=str(self.dir.authorized_keys),
            process_factory=self.handle_session,
            encoding=None,
            sftp_factory=True,
            allow_scp=True,
        )
        user_data = asyncio.create_task(self.run_user_data())
        self.dir.update_state(status=ACTIVE, fault=None)
        log.info("listening on %s", sock.getsockname())
        await self.stop.wait()
        acceptor.close()
        user_data.cancel()
        reaper.cancel()

    def kill_everything(self) -> list[int]:
        """SIGSTOP+SIGKILL every descendant until none is left; returns survivors (should be none)."""
        return procs.kill_until_gone(lambda: procs.descendants(os.getpid()), reap=_reap_all)


def _reap_all() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


async def _relay(reader: asyncio.StreamReader, writer: asyncssh.SSHWriter) -> None:
    """Copy a command's output to the SSH channel until EOF; if the client is gone, keep draining."""
    client_gone = False
    while data := await reader.read(65536):
        if client_gone:
            continue
        try:
            writer.write(data)
            await writer.drain()
        except (OSError, asyncssh.Error):
            client_gone = True


async def _feed(reader: asyncssh.SSHReader, writer: asyncio.StreamWriter) -> None:
    """Copy the client's stdin to the command until EOF, then close the command's stdin."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncssh.Error):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """The node's host key, generated on first boot and kept so a restarted node keeps its identity."""
    if path.exists():
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key("ssh-ed25519")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.export_private_key())
    return key


def run(server_dir: ServerDir, listen_fd: int, boot_delay: float, fail_boot: bool, drop_sessions: int = 0) -> int:
    """Serve until SIGTERM, then kill every descendant; the exit code of the node server."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    state = server_dir.read_state()
    if state is None:
        log.error("no state.json in %s", server_dir.root)
        return 2
    procs.become_child_subreaper()
    os.chdir(server_dir.home)
    server_dir.update_state(pid=os.getpid(), pid_start=procs.start_time(os.getpid()))
    node = NodeServer(server_dir, state["id"], state["ip"], drop_sessions)
    try:
        asyncio.run(node.serve(listen_fd, boot_delay, fail_boot))
    except Exception as exc:
        log.exception("node server failed")
        server_dir.update_state(status=ERROR, fault=f"node server failed: {type(exc).__name__}: {exc}")
        node.kill_everything()
        return 1
    survivors = node.kill_everything()
    if survivors:
        log.error("could not kill %s", survivors)
    current = server_dir.read_state() or {}
    if current.get("status") in (ACTIVE, BUILD):
        server_dir.update_state(status=ERROR, fault="node server stopped (SIGTERM)")
    log.info("stopped")
    return 0
