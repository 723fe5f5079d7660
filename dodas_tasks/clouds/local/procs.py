"""Linux /proc helpers to find and kill every process a local-cloud node started.

Two ways to find them: parent links from the node server (a child subreaper, so orphans stay its
descendants), and the DODAS_NODE_ID variable every command inherits (for when the node server is gone).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

NODE_ID_ENV = "DODAS_NODE_ID"
NODE_IP_ENV = "DODAS_NODE_IP"
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "JAVA_HOME")  # host variables a node's commands see
_PR_SET_CHILD_SUBREAPER = 36


def become_child_subreaper() -> None:
    """Make orphaned descendants re-parent to this process instead of PID 1."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode().split()


def process_state(pid: int) -> str | None:
    """One-letter state (R, S, Z…) or None if there is no such process."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot: with the pid it identifies a process despite pid reuse."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def is_running(pid: int | None, started: int | None = None) -> bool:
    """True if `pid` exists, is not a zombie, and (when given) started at `started`."""
    if not pid:
        return False
    fields = _stat_fields(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    return started is None or int(fields[19]) == started


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root: int) -> list[int]:
    """Every live (non-zombie) process below `root` by parent links, excluding `root`."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields and fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(pid)
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def zombie_children(parent: int) -> list[int]:
    """Zombie processes whose parent is `parent` (waiting to be reaped)."""
    found = []
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields and fields[0] == "Z" and int(fields[1]) == parent:
            found.append(pid)
    return found


def processes_with_node_id(node_id: str) -> list[int]:
    """Live processes whose environment holds DODAS_NODE_ID=<node_id> (ours to read: same user or root)."""
    marker = f"\0{NODE_ID_ENV}={node_id}\0".encode()
    me = os.getpid()
    found = []
    for pid in _all_pids():
        if pid == me:
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker in b"\0" + environ + b"\0" and is_running(pid):
            found.append(pid)
    return found


def _signal_all(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def kill_until_gone(
    find: Callable[[], list[int]], *, reap: Callable[[], None] = lambda: None, deadline_s: float = 10.0
) -> list[int]:
    """Freeze (SIGSTOP) then SIGKILL whatever `find` returns, reaping between rounds, until nothing is left.

    Freezing first stops a fork loop from outrunning us. Returns what is still alive at the deadline.
    """
    end = time.monotonic() + deadline_s
    while True:
        targets = find()
        if not targets or time.monotonic() > end:
            return targets
        _signal_all(targets, signal.SIGSTOP)
        _signal_all(targets, signal.SIGKILL)
        reap()
        time.sleep(0.01)


def reap_children(skip: Iterable[int] = ()) -> None:
    """Collect exit statuses of zombie children not in `skip` (those belong to someone else's waitpid)."""
    owned = set(skip)
    for pid in zombie_children(os.getpid()):
        if pid in owned:
            continue
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
