"""`dodas localcloud serve` on loopback: the driver interface over HTTP, and its SSH gateway's rules.

The service is a real process (started and stopped by PID); the driver under test is what `get_driver("local")`
gives with DODAS_LOCALCLOUD_URL set. The network-isolated version is tests/test_celery_e2e.py: the service and a
Celery worker on hosts of their own (network namespaces).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _localcloud_fixtures import assert_no_node_processes, poll, spec
from _ssh_fixtures import free_port

from dodas_tasks.clouds import ACTIVE, CloudError, get_driver
from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.clouds.local.remote import RemoteLocalCloud
from dodas_tasks.configure import (
    AuthenticationRefused,
    HostKeyMismatch,
    JumpHost,
    NodeTarget,
    NodeUnreachable,
    generate_keypair,
    run_script,
    ssh_banners,
)
from dodas_tasks.naming import TAG_DEPLOYMENT

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Service:
    url: str
    token: str
    home: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("served") / "home"
    token = secrets.token_urlsafe(16)
    api, gateway = free_port("127.0.0.1"), free_port("127.0.0.1")
    log = home.parent / "serve.log"
    env = dict(os.environ, DODAS_LOCALCLOUD_TOKEN=token, PYTHONPATH=str(REPO))
    env.pop("DODAS_LOCALCLOUD_URL", None)
    command = [sys.executable, "-m", "dodas_tasks.cli", "localcloud", "serve", "--home", str(home)]
    command += ["--listen", f"127.0.0.1:{api}", "--gateway", f"127.0.0.1:{gateway}"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out, env=env, cwd=REPO)
    try:
        poll(lambda: "local cloud API on" in log.read_text() or process.poll() is not None, "the service to listen")
        assert process.poll() is None, log.read_text()
        yield Service(f"http://127.0.0.1:{api}", token, home)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
        assert_no_node_processes(LocalCloud(home=home).cleanup())


@pytest.fixture
def remote(served: Service, monkeypatch: pytest.MonkeyPatch) -> RemoteLocalCloud:
    monkeypatch.setenv("DODAS_LOCALCLOUD_URL", served.url)
    monkeypatch.setenv("DODAS_LOCALCLOUD_TOKEN", served.token)
    driver = get_driver("local")
    assert isinstance(driver, RemoteLocalCloud)
    return driver


def boot(driver: RemoteLocalCloud, key_name: str, public_key: str, deployment: str) -> tuple[str, str, int]:
    """Import the key pair, create one server, wait until ACTIVE; returns (id, ip, ssh port)."""
    driver.import_key_pair(key_name, public_key)
    created = driver.create_server(spec(f"dodas-{deployment}-vm-0", key_name, public_key, deployment=deployment))

    def active() -> object:
        server = driver.get_server(created.id)
        assert server is not None and server.status in ("BUILD", ACTIVE), server
        return server if server.status == ACTIVE else None

    server = poll(active, f"server {created.id} to be ACTIVE")
    return server.id, server.private_ip, server.ssh_port  # type: ignore[attr-defined]


def test_the_driver_interface_over_http(remote: RemoteLocalCloud, served: Service) -> None:
    keys = generate_keypair()
    server_id, _ip, _port = boot(remote, "kp-http", keys.public_openssh, "http")
    assert [s.id for s in remote.list_servers({TAG_DEPLOYMENT: "http"})] == [server_id]
    assert remote.get_server(server_id).host_key  # type: ignore[union-attr]
    assert remote.get_server("lc-000000000000") is None
    kinds = {(r.kind, r.id) for r in remote.list_project_resources()}
    assert {("server", server_id), ("key_pair", "kp-http")} <= kinds
    with pytest.raises(CloudError, match="already exists with a different public key"):
        remote.import_key_pair("kp-http", generate_keypair().public_openssh)
    with pytest.raises(CloudError, match="embedded local cloud"):
        get_driver("local", boot_delay=1.0)
    with pytest.raises(CloudError, match="DODAS_LOCALCLOUD_TOKEN"):
        RemoteLocalCloud(served.url, token="wrong").list_servers({})
    remote.delete_resource("server", server_id)
    remote.delete_key_pair("kp-http")
    assert remote.get_server(server_id) is None
    assert LocalCloud(home=served.home).list_all() == []  # gone on the service's side too


def test_the_gateway_forwards_a_key_to_its_own_vms_only(remote: RemoteLocalCloud, served: Service) -> None:
    mine, theirs = generate_keypair(), generate_keypair()
    _, my_ip, my_port = boot(remote, "kp-mine", mine.public_openssh, "mine")
    _, their_ip, their_port = boot(remote, "kp-theirs", theirs.public_openssh, "theirs")
    gateway = remote.ssh_gateway()
    hop = JumpHost(gateway.host, gateway.port, host_key=gateway.host_key, name="gateway")
    known: dict[str, str] = {}

    def run(name: str, ip: str, port: int, key: str, deadline: float = 30.0) -> str:
        target = NodeTarget(name, ip, port, jump=(hop,))
        return run_script(target, "echo $DODAS_NODE_IP", private_key=key, known_hosts=known, boot_deadline_s=deadline)

    assert run("mine", my_ip, my_port, mine.private_openssh).stdout.strip() == my_ip
    assert known[f"{gateway.host}:{gateway.port}"] == gateway.host_key  # the reported key, pinned before contact
    with pytest.raises(NodeUnreachable, match="refuses to forward"):
        run("theirs", their_ip, their_port, mine.private_openssh)
    with pytest.raises(NodeUnreachable, match="refuses to forward"):
        run("the API", "127.0.0.1", int(served.url.rsplit(":", 1)[1]), mine.private_openssh)
    with pytest.raises(AuthenticationRefused, match="jump host gateway"):
        run("stranger", my_ip, my_port, generate_keypair().private_openssh)
    banners = ssh_banners([hop], [(my_ip, my_port)], private_key=mine.private_openssh, known_hosts=known)
    assert banners == {(my_ip, my_port): True}
    unreachable = JumpHost("127.0.0.1", free_port("127.0.0.1"), name="nothing")
    banners = ssh_banners([unreachable], [(my_ip, my_port)], private_key=mine.private_openssh, known_hosts=known)
    assert banners == {(my_ip, my_port): None}  # the route is down: nothing can be said about the VM


def test_a_gateway_listening_everywhere_is_told_at_the_host_the_worker_reached(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from dodas_tasks.clouds.base import SshGateway
    from dodas_tasks.clouds.local.service import create_app

    app = create_app(LocalCloud(home=tmp_path), SshGateway("0.0.0.0", 2200, host_key="ssh-ed25519 AAAA"), token="t")
    with TestClient(app, base_url="http://cloud.example.org:8780") as client:
        assert client.get("/v1/gateway").status_code == 401
        told = client.get("/v1/gateway", headers={"Authorization": "Bearer t"}).json()
    assert (told["host"], told["port"], told["host_key"]) == ("cloud.example.org", 2200, "ssh-ed25519 AAAA")
    assert "private_key" not in told


def test_a_changed_gateway_host_key_is_refused(remote: RemoteLocalCloud) -> None:
    keys = generate_keypair()
    _, ip, port = boot(remote, "kp-pinned", keys.public_openssh, "pinned")
    gateway = remote.ssh_gateway()
    hop = JumpHost(gateway.host, gateway.port, name="gateway")  # not reported: the pin below decides
    known = {f"{gateway.host}:{gateway.port}": generate_keypair().public_openssh}
    with pytest.raises(HostKeyMismatch, match=f"host key of {gateway.host}:{gateway.port} changed"):
        run_script(NodeTarget("vm", ip, port, jump=(hop,)), "true", private_key=keys.private_openssh, known_hosts=known)
