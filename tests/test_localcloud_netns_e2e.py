"""Workers on other hosts share one local cloud: hosts of our own as network namespaces joined by a veth link.

The local cloud runs as a service (`dodas localcloud serve`) in one namespace, its VMs on that namespace's
loopback addresses; the worker (the deployment DAG under dag.test()) runs in another, reaching the cloud's API
and SSH gateway over the veth link only. The Spark deployment completes, is verified and probed from the worker
through the gateway, and the worker's namespace has no route to the VMs. Needs root (ip netns).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _localcloud_fixtures import assert_no_node_processes, poll

from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.store import DeploymentStatus, NodeState

REPO = Path(__file__).resolve().parents[1]
SPARK = REPO / "templates" / "spark_local.yaml"
CLOUD_IP, WORKER_IP = "192.168.77.1", "192.168.77.2"  # exist only inside the namespaces this test makes
API_PORT, GATEWAY_PORT = 8780, 2200
STEP_TIMEOUT_S = 900

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (ip netns)"),
]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass(frozen=True)
class Hosts:
    """Two network namespaces joined by a veth pair: `cloud` at CLOUD_IP, `worker` at WORKER_IP."""

    cloud: str
    worker: str

    def python(self, namespace: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run this venv's Python inside `namespace` (same files and environment, other network)."""
        return subprocess.run(
            ["ip", "netns", "exec", namespace, sys.executable, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")])),
        )


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    tag = uuid.uuid4().hex[:8]
    made = Hosts(cloud=f"dodas-cloud-{tag}", worker=f"dodas-worker-{tag}")
    links = (f"dc{tag}", f"dw{tag}")
    try:
        for namespace in (made.cloud, made.worker):
            ip("netns", "add", namespace)
            ip("-n", namespace, "link", "set", "lo", "up")
        ip("link", "add", links[0], "type", "veth", "peer", "name", links[1])
        for namespace, link, address in ((made.cloud, links[0], CLOUD_IP), (made.worker, links[1], WORKER_IP)):
            ip("link", "set", link, "netns", namespace)
            ip("-n", namespace, "addr", "add", f"{address}/30", "dev", link)
            ip("-n", namespace, "link", "set", link, "up")
        yield made
    finally:
        for namespace in (made.cloud, made.worker):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", links[0]], capture_output=True, timeout=30)  # if never moved


@dataclass(frozen=True)
class CloudService:
    url: str
    token: str
    home: Path
    log: Path


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process by its PID, SIGKILL it if it has not exited in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@pytest.fixture
def cloud_service(hosts: Hosts, tmp_path: Path) -> Iterator[CloudService]:
    """`dodas localcloud serve` in the cloud namespace, with a token; its VMs are all deleted at the end."""
    home, log = tmp_path / "cloud-home", tmp_path / "localcloud-serve.log"
    token = secrets.token_urlsafe(16)
    env = dict(os.environ, DODAS_LOCALCLOUD_TOKEN=token, PYTHONPATH=str(REPO))
    env.pop("DODAS_LOCALCLOUD_URL", None)
    command = [sys.executable, "-m", "dodas_tasks.cli", "localcloud", "serve", "--home", str(home)]
    command += ["--listen", f"{CLOUD_IP}:{API_PORT}", "--gateway", f"{CLOUD_IP}:{GATEWAY_PORT}"]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["ip", "netns", "exec", hosts.cloud, *command], stdout=out, stderr=out, env=env, cwd=REPO
        )
    try:
        poll(
            lambda: "local cloud API on" in log.read_text() or process.poll() is not None,
            "the local cloud service to listen",
        )
        assert process.poll() is None, log.read_text()
        yield CloudService(f"http://{CLOUD_IP}:{API_PORT}", token, home, log)
    finally:
        stop(process)
        cloud = LocalCloud(home=home)  # VMs are processes of this machine: delete what a failure left
        assert_no_node_processes(cloud.cleanup())


def result_of(step: subprocess.CompletedProcess[str]) -> dict:
    lines = [line for line in step.stdout.splitlines() if line.startswith("RESULT ")]
    output = f"{step.stdout[-4000:]}\n{step.stderr[-4000:]}"
    assert step.returncode == 0 and lines, f"worker step failed ({step.returncode}):\n{output}"
    return json.loads(lines[-1].removeprefix("RESULT "))


def tcp_connect(hosts: Hosts, namespace: str, address: str, port: int) -> str:
    """From `namespace`: "ok <first bytes>" if a TCP connection to address:port opens, else the error's name."""
    code = (
        "import socket\n"
        "try:\n"
        f"    s = socket.create_connection(({address!r}, {port}), timeout=3); s.settimeout(3)\n"
        "    print('ok', s.recv(4))\n"
        "except OSError as e:\n"
        "    print(type(e).__name__)\n"
    )
    return hosts.python(namespace, "-c", code).stdout.strip()


def test_a_worker_in_another_namespace_deploys_spark_through_the_gateway_and_cannot_reach_the_vms(
    airflow_db: None, hosts: Hosts, cloud_service: CloudService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DODAS_LOCALCLOUD_URL", cloud_service.url)  # the worker's local cloud is the service
    monkeypatch.setenv("DODAS_LOCALCLOUD_TOKEN", cloud_service.token)
    started = time.monotonic()
    step = hosts.python(
        hosts.worker,
        "tests/_netns_worker.py",
        "deploy",
        str(SPARK),
        json.dumps({"number_of_workers": 1}),
        timeout=STEP_TIMEOUT_S,
    )
    deployed = result_of(step)
    assert deployed["run"] == "success", (deployed, step.stdout[-4000:])
    assert deployed["status"] == DeploymentStatus.CREATE_COMPLETE
    print(f"deployed through the gateway in {time.monotonic() - started:.0f} s")
    nodes = deployed["nodes"]
    assert len(nodes) == 2 and {n["state"] for n in nodes} == {NodeState.STARTED}
    assert "via jump host local gateway" in step.stdout  # every SSH session went through the gateway
    assert deployed["verified_again"][0].startswith("all 1 worker(s) ALIVE")  # the master's web UI, tunnelled
    assert all(answers == [True, True] for answers in deployed["probes"].values()), deployed["probes"]

    for node in nodes:  # the VMs answer in the cloud's namespace, and not at all in the worker's
        assert tcp_connect(hosts, hosts.cloud, node["ip"], node["port"]) == "ok b'SSH-'"
        assert tcp_connect(hosts, hosts.worker, node["ip"], node["port"]) in {
            "ConnectionRefusedError",
            "TimeoutError",
            "OSError",
        }
    assert tcp_connect(hosts, hosts.worker, CLOUD_IP, GATEWAY_PORT) == "ok b'SSH-'"

    undeployed = result_of(
        hosts.python(hosts.worker, "tests/_netns_worker.py", "undeploy", deployed["deployment_id"], timeout=600)
    )
    assert undeployed == {"run": "success", "status": str(DeploymentStatus.DELETE_COMPLETE)}
    cloud = LocalCloud(home=cloud_service.home)
    poll(lambda: cloud.list_all() == [], "the service's VMs to be gone")
