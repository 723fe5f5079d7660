"""The embedded local cloud: each server is a sandbox directory, a loopback IP and a real SSH server process.

Servers are detached processes recorded on disk, so they outlive the task that created them and any
driver instance finds them again. Deleting a server kills everything it started.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dodas_tasks
from dodas_tasks.clouds.base import (
    ACTIVE,
    BUILD,
    ERROR,
    CloudDriver,
    CloudError,
    ProjectResource,
    QuotaExceeded,
    QuotaRoom,
    Server,
    ServerSpec,
)
from dodas_tasks.clouds.local import procs
from dodas_tasks.clouds.local.config import resolve_config
from dodas_tasks.clouds.local.ipam import allocate
from dodas_tasks.clouds.local.layout import CloudLayout, ServerDir, file_lock, write_json_atomic
from dodas_tasks.naming import TAG_DEPLOYMENT, TAG_PROJECT, deployment_in_name
from dodas_tasks.settings import PROJECT_TAG

_SERVER_ID = re.compile(r"^lc-[0-9a-f]{12}$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}$")
_LAUNCH_TIMEOUT_S = 60.0  # a server with no recorded pid after this long never started
_STOP_TIMEOUT_S = 10.0  # SIGTERM grace before SIGKILL
_PACKAGE_ROOT = str(Path(dodas_tasks.__file__).resolve().parent.parent)


def normalise_public_key(public_key: str, where: str) -> str:
    """'type base64' of an OpenSSH public key (comment dropped); CloudError if it is not one."""
    from cryptography.exceptions import UnsupportedAlgorithm  # lazy: keeps importing the driver cheap
    from cryptography.hazmat.primitives import serialization

    fields = public_key.strip().split()
    try:
        serialization.load_ssh_public_key(" ".join(fields[:2]).encode())
    except (ValueError, IndexError, TypeError, UnsupportedAlgorithm):
        raise CloudError(
            f"{where} is not an OpenSSH public key (expected 'ssh-ed25519 AAAA…' or 'ssh-rsa AAAA…')"
        ) from None
    return " ".join(fields[:2])


class LocalCloud(CloudDriver):
    """Servers as local sandboxes with their own loopback IP and SSH server; no root needed.

    Options (else env DODAS_LOCAL_*, else default): home (DODAS home; default settings.dodas_home()),
    ssh_port (2222 for root and non-root alike), ip_pool ("127.77.0.0/16"), boot_delay (0 s),
    boot_failure_rate (0), api_error_rate (0; create/delete then raise a retryable CloudError),
    max_servers (unlimited; beyond it QuotaExceeded), ssh_drop_sessions (0; each server's SSH service drops the
    connection of its first N sessions, as a flaky network does).

    A server accepts any user name with the key of key pair `spec.key_name` (else `spec.public_key`),
    runs `/bin/sh -c CMD` as the driver's user with cwd = HOME = its sandbox, TMPDIR inside it, PATH led by
    this Python's bin directory, and DODAS_NODE_ID/DODAS_NODE_IP set; SFTP and scp work too.
    `public_ip` equals `private_ip` for network "PUBLIC", else None (both reachable from this host).
    `get_server` returns None once a server is deleted.
    """

    name = "local"
    max_concurrency = 64

    def __init__(
        self,
        home: str | Path | None = None,
        ssh_port: int | None = None,
        ip_pool: str | None = None,
        boot_delay: float | None = None,
        boot_failure_rate: float | None = None,
        api_error_rate: float | None = None,
        max_servers: int | None = None,
        ssh_drop_sessions: int | None = None,
    ) -> None:
        self.config = resolve_config(
            home=home,
            ssh_port=ssh_port,
            ip_pool=ip_pool,
            boot_delay=boot_delay,
            boot_failure_rate=boot_failure_rate,
            api_error_rate=api_error_rate,
            max_servers=max_servers,
            ssh_drop_sessions=ssh_drop_sessions,
        )
        self.layout = CloudLayout(self.config.root)
        self.layout.ensure()
        self._random = random.Random()

    # -- key pairs ------------------------------------------------------------------------------------
    def import_key_pair(self, name: str, public_key: str) -> None:
        self._check_key_name(name)
        key = normalise_public_key(public_key, f"public key of key pair {name!r}")
        path = self.layout.keypair_file(name)
        with file_lock(self.layout.keypairs / ".lock"):
            if path.exists():
                if path.read_text().strip() == key:
                    return
                raise CloudError(
                    f"key pair {name!r} already exists with a different public key; delete it first or use another name"
                )
            path.write_text(key + "\n")

    def delete_key_pair(self, name: str) -> None:
        self._check_key_name(name)
        self.layout.keypair_file(name).unlink(missing_ok=True)

    @staticmethod
    def _check_key_name(name: str) -> None:
        if not _KEY_NAME.match(name or ""):
            raise CloudError(f"invalid key pair name {name!r}: use letters, digits and . _ @ + - (max 255)")

    def _authorized_key(self, spec: ServerSpec) -> str:
        """The key the server accepts: key pair `spec.key_name`, else `spec.public_key`."""
        if spec.key_name:
            self._check_key_name(spec.key_name)
            path = self.layout.keypair_file(spec.key_name)
            if path.exists():
                return path.read_text().strip()
        if spec.public_key:
            return normalise_public_key(spec.public_key, f"public_key of server {spec.name!r}")
        raise CloudError(
            f"key pair {spec.key_name!r} not found for server {spec.name!r}; import it with import_key_pair first"
        )

    def key_pair_keys(self) -> set[str]:
        """The public keys ('type base64') of every imported key pair: those the SSH gateway accepts."""
        if not self.layout.keypairs.is_dir():
            return set()
        return {path.read_text().strip() for path in self.layout.keypairs.glob("*.pub")}

    def authorized_key_at(self, ip: str) -> str | None:
        """The key the live server at `ip` accepts, or None if no server of this cloud has that address."""
        for server_id in self.layout.server_ids():
            server_dir = self.layout.server(server_id)
            state = server_dir.read_state()
            if state and state.get("ip") == ip:
                try:
                    return server_dir.authorized_keys.read_text().strip() or None
                except OSError:
                    return None
        return None

    # -- servers --------------------------------------------------------------------------------------
    def create_server(self, spec: ServerSpec) -> Server:
        self._maybe_fail("create_server")
        authorized_key = self._authorized_key(spec)
        server_id = f"lc-{secrets.token_hex(6)}"
        server_dir = self.layout.server(server_id)
        with file_lock(self.layout.ipam_lock):
            self._check_quota()
            ip, listener = allocate(self.layout, self.config.ip_pool, self.config.ssh_port)
            try:
                server_dir.create()
                server_dir.authorized_keys.write_text(authorized_key + "\n")
                if spec.user_data:
                    server_dir.user_data.write_text(spec.user_data)
                write_json_atomic(server_dir.state_file, self._initial_state(server_id, ip, spec))
            except BaseException:
                listener.close()
                shutil.rmtree(server_dir.root, ignore_errors=True)
                raise
        try:
            with listener:
                pid = self._launch(server_dir, listener.fileno(), server_id, ip)
        except CloudError:
            self._remove_dir(server_id)
            raise
        state = server_dir.update_state(pid=pid, pid_start=procs.start_time(pid))
        return self._to_server(state or self._initial_state(server_id, ip, spec))

    def _initial_state(self, server_id: str, ip: str, spec: ServerSpec) -> dict[str, Any]:
        return {
            "id": server_id,
            "name": spec.name,
            "ip": ip,
            "port": self.config.ssh_port,
            "pid": None,
            "pid_start": None,
            "tags": dict(spec.tags),
            "status": BUILD,
            "fault": None,
            "created_at": datetime.now(UTC).isoformat(),
            "flavor": asdict(spec.flavor),
            "image": spec.image,
            "network": spec.network,
            "ports": list(spec.ports),
            "key_name": spec.key_name,
            "host_key": None,
        }

    def _launch(self, server_dir: ServerDir, listen_fd: int, server_id: str, ip: str) -> int:
        """Start the node server detached; returns its pid (printed by the first, short-lived process)."""
        env = {name: os.environ[name] for name in procs.PASSED_ENV if name in os.environ}
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
        env.update({"PYTHONPATH": _PACKAGE_ROOT, procs.NODE_ID_ENV: server_id, procs.NODE_IP_ENV: ip})
        argv = [
            sys.executable,
            "-P",
            "-m",
            "dodas_tasks.clouds.local.nodeserver",
            "--server-dir",
            str(server_dir.root),
            "--listen-fd",
            str(listen_fd),
            "--boot-delay",
            str(self.config.boot_delay),
        ]
        if self._random.random() < self.config.boot_failure_rate:
            argv.append("--fail-boot")
        if self.config.ssh_drop_sessions:
            argv += ["--drop-sessions", str(self.config.ssh_drop_sessions)]
        with open(server_dir.log_file, "ab") as log:
            try:
                launcher = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,
                    cwd=server_dir.home,
                    pass_fds=(listen_fd,),
                    start_new_session=True,
                )
            except OSError as exc:
                raise CloudError(f"cannot start the node server: {exc}", retryable=True) from None
            try:
                line, _ = launcher.communicate(timeout=_LAUNCH_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait()
                line = b""
        if launcher.returncode != 0 or not line.strip().isdigit():
            raise CloudError(f"the node server did not start: {self._log_tail(server_dir)}", retryable=True)
        return int(line)

    def get_server(self, server_id: str) -> Server | None:
        if not _SERVER_ID.match(server_id or ""):
            return None
        state = self.layout.server(server_id).read_state()
        return self._to_server(state) if state else None

    def list_servers(self, tags: dict[str, str]) -> list[Server]:
        servers = []
        for server_id in self.layout.server_ids():
            state = self.layout.server(server_id).read_state()
            if state and all(state["tags"].get(key) == value for key, value in tags.items()):
                servers.append(self._to_server(state))
        return servers

    def list_project_resources(self) -> list[ProjectResource]:
        """Servers and key pairs, with creation times so a leak collector can wait out creations in flight."""
        found = []
        for server_id in self.layout.server_ids():
            state = self.layout.server(server_id).read_state()
            if state and state["tags"].get(TAG_PROJECT) == PROJECT_TAG:
                created = datetime.fromisoformat(state["created_at"]) if state.get("created_at") else None
                found.append(
                    ProjectResource("server", server_id, state["name"], state["tags"].get(TAG_DEPLOYMENT), created)
                )
        for path in sorted(self.layout.keypairs.glob("*")) if self.layout.keypairs.is_dir() else []:
            name = path.name.removesuffix(".pub")
            created = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            found.append(ProjectResource("key_pair", name, name, deployment_in_name(name), created))
        return found

    def delete_resource(self, kind: str, resource_id: str) -> None:
        if kind == "key_pair":
            self.delete_key_pair(resource_id)
        else:
            super().delete_resource(kind, resource_id)

    def list_all(self) -> list[Server]:
        """Every server of this local cloud, whatever its tags."""
        return self.list_servers({})

    def delete_server(self, server_id: str) -> None:
        self._maybe_fail("delete_server")
        self._delete(server_id)

    def cleanup(self) -> list[str]:
        """Delete every server (no failure injection) and empty the trash; returns the deleted ids."""
        deleted = self.layout.server_ids()
        for server_id in deleted:
            self._delete(server_id)
        shutil.rmtree(self.layout.trash, ignore_errors=True)
        self.layout.ensure()
        return deleted

    def _delete(self, server_id: str) -> None:
        if not _SERVER_ID.match(server_id or ""):
            return
        state = self.layout.server(server_id).read_state() or {}
        pid, started = state.get("pid"), state.get("pid_start")
        if procs.is_running(pid, started):
            _stop(pid, started)
        survivors = procs.kill_until_gone(lambda: procs.processes_with_node_id(server_id))
        if survivors:
            raise CloudError(f"server {server_id}: processes {survivors} survived SIGKILL", retryable=True)
        self._remove_dir(server_id)

    def _remove_dir(self, server_id: str) -> None:
        """Move the directory to the trash under the IPAM lock (this releases its IP), then remove it."""
        server_dir = self.layout.server(server_id)
        trash = self.layout.trash / f"{server_id}-{secrets.token_hex(4)}"
        with file_lock(self.layout.ipam_lock):
            if not server_dir.root.exists():
                return
            os.rename(server_dir.root, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------------------
    def _maybe_fail(self, call: str) -> None:
        rate = self.config.api_error_rate
        if rate and self._random.random() < rate:
            raise CloudError(f"{call}: injected API error (DODAS_LOCAL_API_ERROR_RATE={rate})", retryable=True)

    def quota_room(self) -> QuotaRoom | None:
        limit = self.config.max_servers
        if limit is None:
            return None
        in_use = len(self.layout.server_ids())
        return QuotaRoom(servers=max(0, limit - in_use), source=f"DODAS_LOCAL_MAX_SERVERS={limit}, {in_use} in use")

    def _check_quota(self) -> None:
        limit = self.config.max_servers
        if limit is None:
            return
        in_use = len(self.layout.server_ids())
        if in_use + 1 > limit:
            raise QuotaExceeded(
                f"local cloud quota exceeded: {in_use} of {limit} servers in use, 1 more requested "
                "(DODAS_LOCAL_MAX_SERVERS); delete servers or raise the limit"
            )

    def _to_server(self, state: dict[str, Any]) -> Server:
        status, fault = state["status"], state.get("fault")
        if status in (BUILD, ACTIVE):
            pid = state.get("pid")
            server_dir = self.layout.server(state["id"])
            if pid is None:
                age = datetime.now(UTC) - datetime.fromisoformat(state["created_at"])
                if age.total_seconds() > _LAUNCH_TIMEOUT_S:
                    status, fault = ERROR, "the node server never started"
            elif not procs.is_running(pid, state.get("pid_start")):
                status = ERROR
                fault = f"node server (pid {pid}) is gone: killed or crashed; {self._log_tail(server_dir)}"
        ip = state["ip"]
        return Server(
            id=state["id"],
            name=state["name"],
            status=status,
            private_ip=ip,
            public_ip=ip if state.get("network") == "PUBLIC" else None,
            tags=dict(state["tags"]),
            ssh_port=state["port"],
            fault=fault,
            host_key=state.get("host_key"),
        )

    @staticmethod
    def _log_tail(server_dir: ServerDir) -> str:
        try:
            lines = server_dir.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return f"last log line: {lines[-1]}" if lines else f"see {server_dir.log_file}"


def _stop(pid: int, started: int | None) -> None:
    """SIGTERM the node server (it kills its descendants), SIGKILL it if it has not exited in time."""
    for signum, grace in ((signal.SIGTERM, _STOP_TIMEOUT_S), (signal.SIGKILL, _STOP_TIMEOUT_S)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        end = time.monotonic() + grace
        while procs.is_running(pid, started) and time.monotonic() < end:
            time.sleep(0.02)
        if not procs.is_running(pid, started):
            return
