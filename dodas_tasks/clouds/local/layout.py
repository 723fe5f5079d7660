"""Where the local cloud keeps its state on disk, and safe read/update of one server's state json.

dodas_home()/localcloud/
  ipam.lock                       held while allocating or releasing a server directory (and so its IP)
  keypairs/<name>.pub             imported public keys
  servers/<id>/state.json         id, name, ip, port, pid, tags, status, created_at, flavor, image, fault
  servers/<id>/home/              the sandbox: cwd and HOME of every command (tmp/ is TMPDIR)
  servers/<id>/ssh/               host key (kept across restarts) and authorized_keys
  servers/<id>/logs/              node server log
  trash/                          deleted sandboxes being removed
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive flock on `path`: excludes other processes and other threads (each opens its own fd)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


@dataclass(frozen=True)
class ServerDir:
    """The directory of one local server."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "state.lock"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    @property
    def host_key(self) -> Path:
        return self.ssh / "ssh_host_ed25519_key"

    @property
    def authorized_keys(self) -> Path:
        return self.ssh / "authorized_keys"

    @property
    def user_data(self) -> Path:
        return self.root / "user-data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs / "nodeserver.log"

    def create(self) -> None:
        for directory in (self.root, self.home, self.home / "tmp", self.ssh, self.logs):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def read_state(self) -> dict[str, Any] | None:
        """The state json, or None if the server directory is gone or not written yet."""
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None

    def update_state(self, **changes: Any) -> dict[str, Any] | None:
        """Read-modify-write under the server's lock (driver and node server both update it)."""
        if not self.root.is_dir():
            return None
        with file_lock(self.lock_file):
            state = self.read_state()
            if state is None:
                return None
            state.update(changes)
            write_json_atomic(self.state_file, state)
            return state


@dataclass(frozen=True)
class CloudLayout:
    """The local cloud's directory tree under one DODAS home."""

    root: Path

    @property
    def servers(self) -> Path:
        return self.root / "servers"

    @property
    def keypairs(self) -> Path:
        return self.root / "keypairs"

    @property
    def trash(self) -> Path:
        return self.root / "trash"

    @property
    def ipam_lock(self) -> Path:
        return self.root / "ipam.lock"

    def ensure(self) -> None:
        for directory in (self.root, self.servers, self.keypairs, self.trash):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def server(self, server_id: str) -> ServerDir:
        return ServerDir(self.servers / server_id)

    def server_ids(self) -> list[str]:
        try:
            return sorted(entry.name for entry in os.scandir(self.servers) if entry.is_dir())
        except FileNotFoundError:
            return []

    def keypair_file(self, name: str) -> Path:
        return self.keypairs / f"{name}.pub"
