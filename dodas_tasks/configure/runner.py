"""Run one shell script on many nodes over SSH, in parallel, waiting for nodes that are still booting.

paramiko is used directly rather than Airflow's SSHHook: this library must run without Airflow, and the
hook retries every error a fixed number of times (auth failures too), pins host keys only from a fixed
connection extra or ~/.ssh/known_hosts, and sends commands on the command line instead of stdin.

The log callback is guarded (log_sink.SafeLog): a log stream that fails stops the logging, never the nodes, so
only a broken SSH channel is reported as one (SessionBroken).
"""

from __future__ import annotations

import codecs
import logging
import random
import select
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import paramiko
from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from dodas_tasks.configure.connect import Connection, NodeTarget, connect_node, describe
from dodas_tasks.configure.errors import (
    AuthenticationRefused,
    ConfigureError,
    NodesFailed,
    NodeUnreachable,
    ScriptFailed,
    ScriptTimedOut,
    SessionBroken,
)
from dodas_tasks.configure.hostkeys import KnownHosts, NewHostKeyCallback
from dodas_tasks.configure.keys import load_private_key
from dodas_tasks.configure.log_sink import LogFn, safe_log
from dodas_tasks.configure.payload import REMOTE_COMMAND, script_payload
from dodas_tasks.configure.redaction import mask_fragments, secret_fragments

EnvFor = Mapping[str, str] | Callable[["NodeTarget"], Mapping[str, str]]

TAIL_LINES = 20
_FIRST_RETRY_DELAY_S = 0.5
_MAX_RETRY_DELAY_S = 10.0
_POLL_S = 0.2
_BOOTING = (OSError, EOFError, paramiko.SSHException)  # what a node that is still booting answers: try again

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScriptResult:
    """Outcome of one script on one node; stdout/stderr are already redacted."""

    node: str
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    attempts: int


class _Output:
    """Collects one stream, passing each complete, redacted line on as soon as it arrives."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._chunks: list[str] = []
        self._on_line = on_line

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self._decoder.decode(data, final=final)
        self._chunks.append(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        if final and self._pending:
            lines.append(self._pending)
            self._pending = ""
        for line in lines:
            self._on_line(line.rstrip("\r"))

    def text(self) -> str:
        return "".join(self._chunks)


def _connect(
    target: NodeTarget,
    pkey: paramiko.PKey,
    known_hosts: KnownHosts,
    on_new_host_key: NewHostKeyCallback | None,
    connect_timeout: float,
    boot_deadline_s: float,
    emit: LogFn,
) -> tuple[Connection, int]:
    """Connect (through the target's jump hosts, if any), retrying with backoff while the node may still be
    booting; returns (connection, attempts)."""
    deadline = time.monotonic() + boot_deadline_s
    backoff = wait_exponential(multiplier=_FIRST_RETRY_DELAY_S, max=_MAX_RETRY_DELAY_S)

    def wait(state: RetryCallState) -> float:  # ±20 % jitter, never past the deadline
        return max(0.0, min(backoff(state) * random.uniform(0.8, 1.2), deadline - time.monotonic()))

    def log_retry(state: RetryCallState) -> None:
        reason = describe(state.outcome.exception())
        wait_s = state.next_action.sleep
        emit(f"[{target.name}] not reachable yet ({reason}); attempt {state.attempt_number + 1} in {wait_s:.1f} s")

    def attempt() -> Connection:
        timeout = max(1.0, min(connect_timeout, deadline - time.monotonic()))
        return connect_node(target, pkey, known_hosts, on_new_host_key, timeout)

    retrying = Retrying(
        retry=retry_if_exception_type(_BOOTING),
        stop=stop_after_delay(boot_deadline_s),
        wait=wait,
        before_sleep=log_retry,
    )
    try:
        connection = retrying(attempt)
    except RetryError as gave_up:
        path = f"to {target.jump[-1].label}" if target.jump else "to this worker"
        raise NodeUnreachable(
            f"node {target.name} ({target.route}) did not accept SSH within "
            f"{boot_deadline_s:g} s ({gave_up.last_attempt.attempt_number} attempts; last error: "
            f"{describe(gave_up.last_attempt.exception())}); check that the VM booted and that port "
            f"{target.port} is open {path}",
            target.name,
        ) from None
    return connection, retrying.statistics["attempt_number"]


def _execute(
    client: paramiko.SSHClient,
    target: NodeTarget,
    payload: str,
    channel_timeout: float,
    script_timeout_s: float | None,
    stdout: _Output,
    stderr: _Output,
) -> int:
    """Send the payload on stdin of the fixed remote command, stream both outputs, return the exit code."""
    transport = client.get_transport()
    if transport is None:  # connect() succeeded, so this means the node closed the connection at once
        raise ConfigureError(f"node {target.name} closed the SSH connection right after login", target.name)
    channel = transport.open_session(timeout=channel_timeout)
    try:
        channel.exec_command(REMOTE_COMMAND)
        channel.sendall(payload.encode("utf-8"))
        channel.shutdown_write()
        deadline = None if script_timeout_s is None else time.monotonic() + script_timeout_s
        while True:
            while channel.recv_ready():
                stdout.feed(channel.recv(65536))
            while channel.recv_stderr_ready():
                stderr.feed(channel.recv_stderr(65536))
            if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            if deadline is not None and time.monotonic() > deadline:
                raise ScriptTimedOut(
                    f"script on node {target.name} still running after {script_timeout_s:g} s; a background "
                    "job that keeps stdout/stderr open holds the session (start daemons with start_daemon, "
                    "which redirects their output)",
                    target.name,
                )
            select.select([channel], [], [], _POLL_S)
        status = channel.recv_exit_status()
        if status == -1:  # paramiko's answer for a channel that closed with no exit status: the session broke
            raise EOFError("the channel closed without an exit status")
        return status
    finally:
        stdout.feed(b"", final=True)
        stderr.feed(b"", final=True)
        channel.close()


def run_script(
    target: NodeTarget,
    script: str,
    *,
    private_key: str,
    known_hosts: KnownHosts,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    on_new_host_key: NewHostKeyCallback | None = None,
    connect_timeout: float = 10.0,
    boot_deadline_s: float = 300.0,
    script_timeout_s: float | None = 3600.0,
    log: LogFn | None = None,
    check: bool = True,
) -> ScriptResult:
    """Run script on one node with env exported (quoted) before it; output streams to log, secrets masked.

    Raises NodeUnreachable after boot_deadline_s of refused/timed-out connections, AuthenticationRefused
    and HostKeyMismatch at once, ScriptTimedOut, and ScriptFailed on a non-zero exit when check is set.
    """
    started = time.monotonic()
    fragments = secret_fragments([*secrets, private_key])
    sink = safe_log(log or _logger.info)

    def emit(line: str) -> None:
        sink(mask_fragments(line, fragments))

    tail: deque[str] = deque(maxlen=TAIL_LINES)

    def on_line(stream: str) -> Callable[[str], None]:
        def handle(line: str) -> None:
            shown = f"[{target.name}{'' if stream == 'stdout' else ' stderr'}] {mask_fragments(line, fragments)}"
            tail.append(shown)
            sink(shown)

        return handle

    payload = script_payload(script, env)
    pkey = load_private_key(private_key)
    try:
        connection, attempts = _connect(
            target, pkey, known_hosts, on_new_host_key, connect_timeout, boot_deadline_s, emit
        )
    except (NodeUnreachable, AuthenticationRefused) as error:
        raise type(error)(mask_fragments(str(error), fragments), target.name) from None
    emit(f"[{target.name}] connected to {target.route} (attempt {attempts})")
    stdout, stderr = _Output(on_line("stdout")), _Output(on_line("stderr"))
    try:
        exit_code = _execute(connection.client, target, payload, connect_timeout, script_timeout_s, stdout, stderr)
    except (OSError, EOFError, paramiko.SSHException) as error:
        raise SessionBroken(
            f"SSH session to node {target.name} broke while the script ran "
            f"({mask_fragments(describe(error), fragments)}); "
            "scripts are idempotent, so running the step again is safe",
            target.name,
        ) from None
    finally:
        connection.close()
    result = ScriptResult(
        node=target.name,
        exit_code=exit_code,
        stdout=mask_fragments(stdout.text(), fragments),
        stderr=mask_fragments(stderr.text(), fragments),
        duration_s=time.monotonic() - started,
        attempts=attempts,
    )
    emit(f"[{target.name}] exit code {exit_code} after {result.duration_s:.1f} s")
    if check and exit_code != 0:
        raise ScriptFailed(target.name, exit_code, "\n".join(tail), result)
    return result


def run_on_nodes(
    targets: Iterable[NodeTarget],
    script_for: Callable[[NodeTarget], str] | str,
    *,
    private_key: str,
    known_hosts: KnownHosts,
    env: EnvFor | None = None,
    secrets: Iterable[str] = (),
    on_new_host_key: NewHostKeyCallback | None = None,
    connect_timeout: float = 10.0,
    boot_deadline_s: float = 300.0,
    script_timeout_s: float | None = 3600.0,
    log: LogFn | None = None,
    check: bool = True,
    max_parallel: int = 32,
) -> dict[str, ScriptResult]:
    """run_script on every target at once (at most max_parallel at a time); one node's failure stops no other.

    script_for and env may be callables giving each node its own script/environment. Returns results by
    node name in target order, or raises NodesFailed naming every failed node and carrying the others.
    """
    targets = list(targets)
    names = [target.name for target in targets]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"node names must be unique; repeated: {', '.join(duplicates)}")
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be at least 1, got {max_parallel}")
    if not targets:
        return {}
    secrets = [*secrets]
    fragments = secret_fragments([*secrets, private_key])
    sink = safe_log(log or _logger.info)  # one guard for every node: the first loss silences them all

    def run_one(target: NodeTarget) -> ScriptResult:
        script = script_for if isinstance(script_for, str) else script_for(target)
        node_env = env(target) if callable(env) else env
        return run_script(
            target,
            script,
            private_key=private_key,
            known_hosts=known_hosts,
            env=node_env,
            secrets=secrets,
            on_new_host_key=on_new_host_key,
            connect_timeout=connect_timeout,
            boot_deadline_s=boot_deadline_s,
            script_timeout_s=script_timeout_s,
            log=sink,
            check=check,
        )

    results: dict[str, ScriptResult] = {}
    failures: dict[str, ConfigureError] = {}
    workers = min(max_parallel, len(targets))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dodas-ssh") as pool:
        futures = {pool.submit(run_one, target): target for target in targets}
        for future in as_completed(futures):
            name = futures[future].name
            try:
                results[name] = future.result()
            except ConfigureError as error:
                failures[name] = error
            except Exception as error:  # a bad script_for/env callable or input: report it per node
                failures[name] = ConfigureError(mask_fragments(describe(error), fragments), name)
    ordered = {name: results[name] for name in names if name in results}
    if failures:
        raise NodesFailed(failures, ordered)
    return ordered
