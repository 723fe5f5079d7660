"""The embedded local cloud: real SSH servers on loopback IPs, detached processes, complete clean-up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest

from dodas_tasks.clouds import (
    ACTIVE,
    BUILD,
    ERROR,
    CloudError,
    QuotaExceeded,
    get_driver,
)
from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.clouds.local.procs import is_running, processes_with_node_id, zombie_children
from dodas_tasks.naming import TAG_DEPLOYMENT, TAG_GROUP
from tests._localcloud_fixtures import (  # noqa: F401 - *_fixture are pytest fixtures
    cloud_fixture,
    cloud_home_fixture,
    key_pair_fixture,
    make_cloud_fixture,
    make_key_pair,
    poll,
    spec,
    ssh_client,
    ssh_run,
    wait_status,
)

pytestmark = pytest.mark.slow


def test_three_servers_created_concurrently_get_distinct_ips_and_become_active(cloud, key_pair):
    with ThreadPoolExecutor(3) as pool:
        created = list(
            pool.map(lambda i: cloud.create_server(spec(f"node-{i}", "test-key", key_pair.public)), range(3))
        )
    servers = [wait_status(cloud, server.id, ACTIVE) for server in created]
    assert len({server.private_ip for server in servers}) == 3
    assert all(server.private_ip.startswith("127.77.") for server in servers)
    assert all(server.host_key and server.host_key.startswith("ssh-ed25519 ") for server in servers)
    assert len({server.id for server in servers}) == 3


def test_ssh_runs_commands_in_the_sandbox(cloud, key_pair):
    server = wait_status(cloud, cloud.create_server(spec("node", "test-key", key_pair.public)).id, ACTIVE)
    status, out, err = ssh_run(server, key_pair.private, "echo hi; id -u; pwd; echo oops >&2; exit 3")
    assert status == 3
    assert out.splitlines() == ["hi", str(os.getuid()), str(cloud.layout.server(server.id).home)]
    assert err == "oops\n"
    status, out, _ = ssh_run(server, key_pair.private, 'echo "$HOME $DODAS_NODE_ID $DODAS_NODE_IP"')
    assert (status, out.split()) == (0, [str(cloud.layout.server(server.id).home), server.id, server.private_ip])


def test_stdin_and_large_output_come_through(cloud, key_pair):
    server = wait_status(cloud, cloud.create_server(spec("node", "test-key", key_pair.public)).id, ACTIVE)
    client = ssh_client(server, key_pair.private)
    try:
        stdin, stdout, _ = client.exec_command("wc -c; head -c 1000000 /dev/zero")
        stdin.write(b"x" * 12345)
        stdin.channel.shutdown_write()
        data = stdout.read()
        assert stdout.channel.recv_exit_status() == 0
    finally:
        client.close()
    assert data.startswith(b"12345\n") and len(data) == len(b"12345\n") + 1_000_000


def test_sftp_and_client_environment_work_in_the_sandbox(cloud, key_pair):
    server = wait_status(cloud, cloud.create_server(spec("node", "test-key", key_pair.public)).id, ACTIVE)
    client = ssh_client(server, key_pair.private)
    try:
        with client.open_sftp() as sftp, sftp.open("uploaded.txt", "w") as remote:
            remote.write("via sftp\n")
        _, stdout, _ = client.exec_command("cat uploaded.txt; echo $GREETING", environment={"GREETING": "hello"})
        assert stdout.read().decode() == "via sftp\nhello\n"
    finally:
        client.close()
    assert (cloud.layout.server(server.id).home / "uploaded.txt").read_text() == "via sftp\n"


def test_a_wrong_key_is_refused(cloud, key_pair):
    server = wait_status(cloud, cloud.create_server(spec("node", "test-key", key_pair.public)).id, ACTIVE)
    with pytest.raises(paramiko.AuthenticationException):
        ssh_run(server, make_key_pair().private, "true")


def test_server_outlives_the_process_that_created_it(cloud, cloud_home, key_pair):
    creator = textwrap.dedent(f"""
        from dodas_tasks.clouds import get_driver
        from tests._localcloud_fixtures import spec
        cloud = get_driver("local", home={str(cloud_home)!r})
        server = cloud.create_server(spec("orphan", "test-key", {key_pair.public!r}, deployment="outlive"))
        print(server.id)
    """)
    result = subprocess.run(
        [sys.executable, "-c", creator],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
    )
    created_id = result.stdout.strip()
    found = poll(lambda: cloud.list_servers({TAG_DEPLOYMENT: "outlive"}), "the server created by the child")
    assert [server.id for server in found] == [created_id]
    server = wait_status(cloud, created_id, ACTIVE)
    assert ssh_run(server, key_pair.private, "echo alive") == (0, "alive\n", "")


def test_a_restarted_driver_finds_the_servers_on_disk(cloud, cloud_home, key_pair):
    first = cloud.create_server(spec("a", "test-key", key_pair.public, deployment="dep-a", **{TAG_GROUP: "wn"}))
    second = cloud.create_server(spec("b", "test-key", key_pair.public, deployment="dep-b"))
    wait_status(cloud, first.id, ACTIVE)
    restarted = LocalCloud(home=cloud_home)
    assert restarted.get_server(first.id).private_ip == first.private_ip
    assert [s.id for s in restarted.list_servers({TAG_DEPLOYMENT: "dep-a"})] == [first.id]
    assert [s.id for s in restarted.list_servers({TAG_DEPLOYMENT: "dep-a", TAG_GROUP: "wn"})] == [first.id]
    assert restarted.list_servers({TAG_DEPLOYMENT: "dep-a", TAG_GROUP: "master"}) == []
    assert {s.id for s in restarted.list_all()} == {first.id, second.id}
    assert restarted.get_server("lc-000000000000") is None
    assert restarted.get_server("../../etc") is None


def _start_daemons(server, key: paramiko.PKey) -> None:
    """A nohup'd job, a setsid daemon and a double-forked process: all escape their SSH session."""
    status, _, _ = ssh_run(
        server,
        key,
        textwrap.dedent("""
        nohup sleep 1001 >/dev/null 2>&1 &
        setsid sleep 1002 </dev/null >/dev/null 2>&1 &
        (sleep 1003 </dev/null >/dev/null 2>&1 &)
        echo started
    """),
    )
    assert status == 0


def _sleeps_of(server_id: str) -> set[str]:
    found = set()
    for pid in processes_with_node_id(server_id):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline[0] == b"sleep":
            found.add(cmdline[1].decode())
    return found


def test_delete_kills_everything_the_node_started(cloud, key_pair):
    server = wait_status(cloud, cloud.create_server(spec("node", "test-key", key_pair.public)).id, ACTIVE)
    _start_daemons(server, key_pair.private)
    poll(lambda: _sleeps_of(server.id) == {"1001", "1002", "1003"}, "the three daemons to run")
    server_dir = cloud.layout.server(server.id).root

    cloud.delete_server(server.id)

    assert processes_with_node_id(server.id) == []
    assert not server_dir.exists()
    assert cloud.get_server(server.id) is None
    cloud.delete_server(server.id)  # idempotent


def test_the_node_reaps_orphans_without_stealing_exit_statuses(cloud, key_pair):
    server = wait_status(cloud, cloud.create_server(spec("node", "test-key", key_pair.public)).id, ACTIVE)
    node_pid = cloud.layout.server(server.id).read_state()["pid"]
    orphans = "for i in 1 2 3 4 5; do (sleep 0.2 </dev/null >/dev/null 2>&1 &); done"
    assert ssh_run(server, key_pair.private, orphans)[0] == 0
    poll(lambda: not _sleeps_of(server.id) and not zombie_children(node_pid), "the orphans to exit and be reaped")
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda n: ssh_run(server, key_pair.private, f"exit {n}")[0], range(8)))
    assert statuses == list(range(8))


def test_a_sigkilled_node_reports_error_and_delete_still_cleans_its_orphans(cloud, key_pair):
    server = wait_status(cloud, cloud.create_server(spec("node", "test-key", key_pair.public)).id, ACTIVE)
    _start_daemons(server, key_pair.private)
    poll(lambda: _sleeps_of(server.id) == {"1001", "1002", "1003"}, "the three daemons to run")
    pid = cloud.layout.server(server.id).read_state()["pid"]

    os.kill(pid, signal.SIGKILL)
    poll(lambda: not is_running(pid), "the node server to die")

    failed = cloud.get_server(server.id)
    assert failed.status == ERROR
    assert f"pid {pid}" in failed.fault
    assert _sleeps_of(server.id) == {"1001", "1002", "1003"}  # orphans of a dead node still run…
    cloud.delete_server(server.id)
    assert processes_with_node_id(server.id) == []  # …until delete sweeps them by DODAS_NODE_ID
    assert cloud.get_server(server.id) is None


def test_boot_delay_keeps_the_server_in_build_before_active(make_cloud, key_pair):
    cloud = make_cloud(boot_delay=3)
    cloud.import_key_pair("test-key", key_pair.public)
    created = cloud.create_server(spec("slow", "test-key", key_pair.public))
    assert created.status == BUILD
    server = wait_status(cloud, created.id, ACTIVE)
    assert ssh_run(server, key_pair.private, "echo up")[1] == "up\n"


def test_boot_failure_injection_gives_error_with_fault(make_cloud, key_pair):
    cloud = make_cloud(boot_failure_rate=1)
    cloud.import_key_pair("test-key", key_pair.public)
    created = cloud.create_server(spec("doomed", "test-key", key_pair.public))
    failed = wait_status(cloud, created.id, ERROR)
    assert "boot failed" in failed.fault
    cloud.delete_server(created.id)
    assert cloud.get_server(created.id) is None


def test_api_error_injection_raises_a_retryable_error_before_doing_anything(
    make_cloud, cloud_home, key_pair, monkeypatch
):
    monkeypatch.setenv("DODAS_LOCAL_API_ERROR_RATE", "1")
    cloud = make_cloud()
    cloud.import_key_pair("test-key", key_pair.public)
    with pytest.raises(CloudError) as raised:
        cloud.create_server(spec("n", "test-key", key_pair.public))
    assert raised.value.retryable is True
    assert "injected" in str(raised.value)
    assert cloud.list_all() == []
    with pytest.raises(CloudError):
        cloud.delete_server("lc-000000000000")


def test_quota_exceeded_names_the_numbers(make_cloud, key_pair):
    cloud = make_cloud(max_servers=1)
    cloud.import_key_pair("test-key", key_pair.public)
    first = cloud.create_server(spec("one", "test-key", key_pair.public))
    with pytest.raises(QuotaExceeded, match="1 of 1 servers in use") as raised:
        cloud.create_server(spec("two", "test-key", key_pair.public))
    assert raised.value.retryable is False
    cloud.delete_server(first.id)
    cloud.create_server(spec("two", "test-key", key_pair.public))


def test_key_pairs_are_idempotent_and_validated(cloud, key_pair):
    cloud.import_key_pair("test-key", key_pair.public + " a comment")  # same key again: fine
    with pytest.raises(CloudError, match="different public key"):
        cloud.import_key_pair("test-key", make_key_pair().public)
    with pytest.raises(CloudError, match="not an OpenSSH public key"):
        cloud.import_key_pair("other", "not a key")
    with pytest.raises(CloudError, match="invalid key pair name"):
        cloud.import_key_pair("../evil", key_pair.public)
    with pytest.raises(CloudError, match="not found"):
        cloud.create_server(spec("n", "missing-key", ""))
    cloud.delete_key_pair("test-key")
    cloud.delete_key_pair("test-key")


def test_bad_settings_and_unknown_clouds_give_clear_errors(cloud_home, monkeypatch):
    monkeypatch.setenv("DODAS_LOCAL_BOOT_FAILURE_RATE", "2")
    with pytest.raises(CloudError, match="DODAS_LOCAL_BOOT_FAILURE_RATE='2' is out of range"):
        get_driver("local")
    with pytest.raises(CloudError, match=r"unknown cloud 'nimbus'; known clouds: .*local"):
        get_driver("nimbus")
    with pytest.raises(CloudError, match="bad options for cloud 'local'"):
        get_driver("local", colour="blue")
