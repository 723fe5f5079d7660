"""Fixtures and helpers for tests that need local-cloud servers: a private cloud per test, keys, SSH."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import paramiko
import pytest

from dodas_tasks.clouds import Flavor, Server, ServerSpec
from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.clouds.local.procs import processes_with_node_id
from dodas_tasks.naming import TAG_DEPLOYMENT, TAG_PROJECT
from dodas_tasks.settings import PROJECT_TAG

DEADLINE_S = 120.0  # generous: the test machine may be busy; polls return as soon as the condition holds


@dataclass(frozen=True)
class KeyPair:
    """An SSH key pair for tests: OpenSSH public line and paramiko private key."""

    public: str
    private: paramiko.PKey


def make_key_pair() -> KeyPair:
    key = asyncssh.generate_private_key("ssh-ed25519")
    private = paramiko.Ed25519Key.from_private_key(io.StringIO(key.export_private_key().decode()))
    return KeyPair(public=key.export_public_key().decode().strip(), private=private)


def poll(condition: Callable[[], object], what: str, deadline_s: float = DEADLINE_S) -> object:
    """Return condition()'s first truthy value, checking every 50 ms; fail the test at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(0.05)


def wait_status(cloud: LocalCloud, server_id: str, status: str) -> Server:
    """Poll until the server reaches `status` (fails at once if it lands in another final status)."""

    def reached() -> Server | None:
        server = cloud.get_server(server_id)
        assert server is not None, f"server {server_id} disappeared"
        if server.status != status and server.status != "BUILD":
            pytest.fail(f"server {server_id} is {server.status} ({server.fault}), expected {status}")
        return server if server.status == status else None

    return poll(reached, f"server {server_id} to be {status}")  # type: ignore[return-value]


def spec(name: str, key_name: str, public_key: str, deployment: str = "dep-1", **extra_tags: str) -> ServerSpec:
    tags = {TAG_PROJECT: PROJECT_TAG, TAG_DEPLOYMENT: deployment, **extra_tags}
    return ServerSpec(
        name=name, flavor=Flavor(cpus=1, mem_mb=512), image="local", key_name=key_name, public_key=public_key, tags=tags
    )


def ssh_client(server: Server, key: paramiko.PKey) -> paramiko.SSHClient:
    """A connected paramiko client that trusts only the host key the cloud reported (no TOFU)."""
    assert server.host_key, "the cloud did not report the host key"
    key_type, key_b64 = server.host_key.split()[:2]
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.get_host_keys().add(
        f"[{server.private_ip}]:{server.ssh_port}",
        key_type,
        paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64)),
    )
    client.connect(
        server.private_ip,
        server.ssh_port,
        username="root",
        pkey=key,
        look_for_keys=False,
        allow_agent=False,
        timeout=30,
        banner_timeout=30,
        auth_timeout=30,
    )
    return client


def ssh_run(server: Server, key: paramiko.PKey, command: str) -> tuple[int, str, str]:
    """Run one command; returns (exit status, stdout, stderr)."""
    client = ssh_client(server, key)
    try:
        _, stdout, stderr = client.exec_command(command, timeout=60)
        out, err = stdout.read().decode(), stderr.read().decode()
        return stdout.channel.recv_exit_status(), out, err
    finally:
        client.close()


def assert_no_node_processes(server_ids: list[str]) -> None:
    leftovers = {server_id: processes_with_node_id(server_id) for server_id in server_ids}
    assert not any(leftovers.values()), f"processes left behind: {leftovers}"


@pytest.fixture(name="key_pair")
def key_pair_fixture() -> KeyPair:
    return make_key_pair()


@pytest.fixture(name="cloud_home")
def cloud_home_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private DODAS home (also exported, so child processes use it too)."""
    home = tmp_path / "dodas"
    monkeypatch.setenv("DODAS_HOME", str(home))
    for name in ("BOOT_DELAY", "BOOT_FAILURE_RATE", "API_ERROR_RATE", "MAX_SERVERS"):
        monkeypatch.delenv(f"DODAS_LOCAL_{name}", raising=False)
    return home


@pytest.fixture(name="make_cloud")
def make_cloud_fixture(cloud_home: Path) -> Iterator[Callable[..., LocalCloud]]:
    """Factory of LocalCloud drivers on the test's home; every server is deleted and checked at the end."""

    def factory(**options: object) -> LocalCloud:
        return LocalCloud(home=cloud_home, **options)  # type: ignore[arg-type]

    yield factory
    cleaner = LocalCloud(home=cloud_home)
    deleted = cleaner.cleanup()
    assert_no_node_processes(deleted)
    assert cleaner.list_all() == []


@pytest.fixture(name="cloud")
def cloud_fixture(make_cloud: Callable[..., LocalCloud], key_pair: KeyPair) -> LocalCloud:
    """A default local cloud with `key_pair` imported as key pair "test-key"."""
    driver = make_cloud()
    driver.import_key_pair("test-key", key_pair.public)
    return driver
