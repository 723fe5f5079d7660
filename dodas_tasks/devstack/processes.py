"""Process supervision for the stacks: start a detached process (optionally under a host name, or in a network
namespace, of its own), tell whether a recorded process is still the same one, snapshot process trees, find the
processes carrying a stack's marker variable and signal them by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

# Loopback address a process with a host name of its own resolves that name to (Debian's convention for the
# machine's own name): getfqdn() then answers the name from /etc/hosts, with no DNS query.
OWN_HOSTNAME_ADDRESS = "127.0.1.1"
# Runs in fresh UTS and mount namespaces: set the host name, put a hosts file naming it over /etc/hosts, then exec
# the command (same PID, so it is recorded and signalled as itself).
_AS_HOST = 'hostname "$1" && mount --bind "$2" /etc/hosts && shift 2 && exec "$@"'


class HostnameUnavailable(RuntimeError):
    """A process asked for a host of its own (name or network) where namespaces cannot be made (not root, no
    unshare or ip)."""


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    hostname: str | None = None,
    netns: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start argv detached in its own session and process group, stdout and stderr appended to `log`.

    With `hostname`, the process runs as a container would on its own host: `uname -n` and Airflow's recorded
    hostname are that name (the compose file's `hostname:`), while files stay this machine's. With `netns`, its
    network is that named namespace's (`ip netns exec`), else this machine's.
    """
    command = list(argv)
    if hostname is not None:
        command = [*_as_host_prefix(hostname, log.with_name(f"{log.stem}.hosts")), *command]
    if netns is not None:
        command = [*_in_netns_prefix(netns), *command]
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _as_host_prefix(hostname: str, hosts_file: Path) -> list[str]:
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        raise HostnameUnavailable(
            f"running a process as host {hostname!r} needs root and util-linux's unshare (UTS and mount namespaces)"
        )
    hosts_file.write_text(Path("/etc/hosts").read_text() + f"\n{OWN_HOSTNAME_ADDRESS} {hostname}\n")
    return [unshare, "--uts", "--mount", "--", "/bin/sh", "-c", _AS_HOST, "sh", hostname, str(hosts_file)]


def _in_netns_prefix(netns: str) -> list[str]:
    ip = shutil.which("ip")
    if os.geteuid() != 0 or ip is None:
        raise HostnameUnavailable(f"running a process in network namespace {netns!r} needs root and iproute2")
    return [ip, "netns", "exec", netns]  # execs the command: the same PID, recorded and signalled as itself


def record(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """What identifies a started process later, from any process: its pid and creation time."""
    return {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time()}


def live_process(recorded: Mapping[str, Any]) -> psutil.Process | None:
    """The recorded process if it is still the same one (pid not reused) and not a zombie."""
    try:
        proc = psutil.Process(recorded["pid"])
        if abs(proc.create_time() - recorded["create_time"]) > 0.05:
            return None
    except psutil.Error:
        return None
    return proc if is_alive(proc) else None


def is_alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def children(proc: psutil.Process) -> list[psutil.Process]:
    """Its direct children; none once it is gone."""
    try:
        return proc.children()
    except psutil.Error:  # gone meanwhile
        return []


def process_group(proc: psutil.Process) -> int | None:
    """Its process group id; None once it is gone."""
    try:
        return os.getpgid(proc.pid)
    except OSError:  # gone meanwhile
        return None


def exists(proc: psutil.Process) -> bool:
    """Whether the process still exists, a zombie included (psutil checks that the pid is still the same one)."""
    try:
        return proc.is_running()
    except psutil.Error:
        return False


def process_trees(leaders: list[psutil.Process]) -> list[psutil.Process]:
    """Leaders, all their descendants and every process still in a leader's process group."""
    found: dict[int, psutil.Process] = {}
    for leader in leaders:
        found[leader.pid] = leader
        try:
            for child in leader.children(recursive=True):
                found[child.pid] = child
        except psutil.Error:
            pass
    groups = {leader.pid for leader in leaders}
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) in groups:
                found.setdefault(proc.pid, proc)
        except (OSError, psutil.Error):
            continue
    return [proc for proc in found.values() if is_alive(proc)]


def marked(variable: str, value: str) -> list[psutil.Process]:
    """Live processes whose environment holds variable=value, except this process and its ancestors.

    The environment is inherited by every descendant whatever its session, process group or parent (an orphan
    reparented to init keeps it), and /proc/<pid>/environ shows the one a process started with, so the marker
    finds what a process tree or a process group misses. Readable for our own user's processes (or as root).
    """
    spared = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for proc in psutil.process_iter():
        if proc.pid in spared:
            continue
        try:
            if proc.environ().get(variable) == value and is_alive(proc):
                found.append(proc)
        except (psutil.Error, OSError):  # gone, a kernel thread, or another user's
            continue
    return found


def send(proc: psutil.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)  # psutil checks that the pid still belongs to the same process


def send_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0
