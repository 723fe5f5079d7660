"""The distributed stack, end to end: docker-compose.yml's services run as processes, read from the file.

Airflow on a PostgreSQL database of this test's own, CeleryExecutor over a redis-server of its own, two Celery
workers on host names of their own (airflow-worker-1/-2, as the compose file names them), the DODAS store on
PostgreSQL created and migrated by the compose file's airflow-init, and the local cloud as the compose file's
service of its own. The local cloud and airflow-worker-2 run on hosts of their own (network namespaces): the VMs
are on the cloud host's loopback, so every worker reaches them only through the service's SSH gateway. On it the
demo template (Spark standalone) deploys with tasks on both workers, scales out with airflow-worker-2 alone taking
tasks (so SSH sessions from its host are sure), heals a killed worker VM and undeploys to nothing; every SSH session
went through the gateway, and the worker's host has no way to the VMs.
The mapping of container-only values is compose.Placement's; the test's own settings are the `.env` lines of
_service_fixtures (small pools for a 2-core machine, its databases, its hosts) and SPEED.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import pytest
from _service_fixtures import REMOTE_WORKER, celery_service

from dodas_tasks import demo
from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.clouds.local.procs import processes_with_node_id
from dodas_tasks.deploy.components import deployment_framework
from dodas_tasks.devstack import processes
from dodas_tasks.devstack.compose import LOCALCLOUD_SERVICE
from dodas_tasks.devstack.local_airflow import AirflowStack, Component
from dodas_tasks.frameworks.cluster_view import cluster_of
from dodas_tasks.naming import deployment_dag_id
from dodas_tasks.store import DeploymentStatus, NodeState, Store

pytestmark = pytest.mark.slow

WORKERS = "spark-worker-server"
DEADLINE_S = 420.0
# The test's own overrides of the compose file's settings: a VM found dead is replaced within seconds (default
# interval 30 s).
SPEED = {"DODAS_HEALING_INTERVAL_S": "5"}


def poll(condition: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S) -> Any:
    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(1.0)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    started = time.monotonic()
    with celery_service(tmp_path_factory.mktemp("celery-stack"), extra_env=SPEED) as stack:
        took = time.monotonic() - started
        print(f"\n[measure] compose stack (local cloud, init, Airflow, 2 Celery workers) healthy in {took:.0f} s")
        yield stack


@pytest.fixture
def store(service: AirflowStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """The store, cloud and Fernet key as the service's tasks see them (the CLI's view of the service too); the
    local cloud is the service, its VMs reached through its gateway."""
    env = service.env()
    names = ("DODAS_DATABASE_URL", "DODAS_HOME", "AIRFLOW__CORE__FERNET_KEY", "DODAS_LOCALCLOUD_URL")
    for name in (*names, "DODAS_LOCALCLOUD_TOKEN"):
        monkeypatch.setenv(name, env[name])
    with Store(env["DODAS_DATABASE_URL"]) as opened:
        yield opened


def spark_workers(store: Store, deployment_id: str) -> list[str]:
    """The master's healthy workers, read as the watchers read them: through the gateway (no way to the VMs here)."""
    dep = store.get_deployment(deployment_id)
    cluster = cluster_of(dep.plan, store.list_nodes(deployment_id), "spark-standalone")
    return sorted(deployment_framework(store, dep, "spark-standalone").load(cluster).healthy_nodes)


def task_hosts(stack: AirflowStack, deployment_id: str) -> dict[str, set[str]]:
    """Airflow's record of where each task instance of the deployment's DAG ran: host name → task ids."""
    reply = stack.rest.api(
        "GET", f"/api/v2/dags/{deployment_dag_id(deployment_id)}/dagRuns/~/taskInstances", params={"limit": 1000}
    )
    hosts: dict[str, set[str]] = {}
    for ti in reply["task_instances"]:
        if ti.get("hostname"):
            hosts.setdefault(ti["hostname"], set()).add(ti["task_id"])
    return hosts


def listening_off_loopback(stack: AirflowStack) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every socket a process of the stack listens on outside 127.0.0.0/8 and ::1."""
    records = json.loads(stack.pid_file.read_text())["components"].values()
    leaders = [proc for proc in (processes.live_process(r) for r in records) if proc is not None]
    pids = {proc.pid for proc in processes.process_trees(leaders)}
    return [
        (c.laddr.ip, c.laddr.port, c.pid)
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids and not ipaddress.ip_address(c.laddr.ip).is_loopback
    ]


def component(stack: AirflowStack, name: str) -> Component:
    return next(c for c in stack.components if c.name == name)


def tcp_connect(netns: str, host: str, port: int) -> str:
    """From inside network namespace `netns`: "ok" if a TCP connection to host:port opens, else the error's name."""
    code = "import socket, sys\ntry:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\n"
    code += "    print('ok')\nexcept OSError as e:\n    print(type(e).__name__)\n"
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", code, host, str(port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.strip() or done.stderr


@contextmanager
def only_worker(stack: AirflowStack, name: str) -> Iterator[None]:
    """While the block runs, the other Celery workers take no new task (Celery's cancel_consumer, add_consumer)."""
    from celery import Celery

    others = [c for c in stack.components if c.celery_node and c.name != name]
    env = stack.component_env(others[0])
    queue = env.get("AIRFLOW__OPERATORS__DEFAULT_QUEUE", "default")
    app = Celery(broker=env["AIRFLOW__CELERY__BROKER_URL"])
    nodes = [c.celery_node for c in others]
    try:
        replies = app.control.cancel_consumer(queue, destination=nodes, reply=True, timeout=10)
        assert len(replies) == len(nodes), replies
        yield
    finally:
        app.control.add_consumer(queue, destination=nodes, reply=True, timeout=10)
        app.close()


def ssh_routes(stack: AirflowStack, deployment_id: str) -> dict[str, list[str]]:
    """Host name → every `connected to <node> via …` route in the logs of the deployment's task instances there."""
    dag_id = deployment_dag_id(deployment_id)
    reply = stack.rest.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/~/taskInstances", params={"limit": 1000})
    routes: dict[str, list[str]] = {}
    for ti in reply["task_instances"]:
        mapped = f"map_index={ti['map_index']}/" if ti.get("map_index", -1) >= 0 else ""
        log = stack.logs_dir / f"dag_id={dag_id}/run_id={ti['dag_run_id']}/task_id={ti['task_id']}"
        log = log / f"{mapped}attempt={ti['try_number']}.log"
        if ti.get("hostname") and log.exists():
            found = re.findall(r"connected to (.+?) \(attempt", log.read_text(errors="replace"))
            routes.setdefault(ti["hostname"], []).extend(found)
    return routes


def settled(store: Store, deployment_id: str, after_event: int) -> bool:
    """The deployment DAG ran since `after_event` and the deployment is complete again."""
    dep = store.get_deployment(deployment_id)
    assert not dep.status.endswith("FAILED"), f"{dep.status}: {dep.status_reason}"
    runs = [e for e in store.list_events(deployment_id, limit=2000, after_id=after_event) if e.kind == "status"]
    return dep.status == DeploymentStatus.UPDATE_COMPLETE and any("→ UPDATE_COMPLETE" in e.message for e in runs)


def test_demo_template_deploys_scales_heals_and_undeploys_on_two_celery_workers(
    service: AirflowStack, store: Store
) -> None:
    started = time.monotonic()
    cloud = LocalCloud()
    conf = {"template": "spark_local.yaml", "inputs": {"number_of_workers": 1}, "cloud": "local"}
    deployment_id = demo.submit(service, conf, print)
    try:
        assert demo.watch(deployment_id, print, timeout=DEADLINE_S) == DeploymentStatus.CREATE_COMPLETE
        print(f"[measure] created in {time.monotonic() - started:.0f} s")
        assert listening_off_loopback(service) == []
        (first_worker,) = store.list_nodes(deployment_id, group=WORKERS)
        cloud_host, worker_host = component(service, LOCALCLOUD_SERVICE).netns, component(service, REMOTE_WORKER).netns
        assert cloud_host and worker_host
        for node in store.list_nodes(deployment_id):  # the VMs answer on the cloud's host, not on the worker's
            assert tcp_connect(cloud_host, node.private_ip, node.ssh_port) == "ok"
            assert tcp_connect(worker_host, node.private_ip, node.ssh_port) in {"ConnectionRefusedError", "OSError"}

        mark = demo.last_event_id(deployment_id)
        with only_worker(service, REMOTE_WORKER):  # the scaling run's SSH sessions all start on the other host
            demo.scale(service, deployment_id, WORKERS, 2)
            until = {DeploymentStatus.UPDATE_COMPLETE, DeploymentStatus.UPDATE_FAILED}
            assert demo.watch(deployment_id, print, until=until, since=mark) == DeploymentStatus.UPDATE_COMPLETE
        workers = store.list_nodes(deployment_id, group=WORKERS)
        assert len(workers) == 2 and {n.state for n in workers} == {NodeState.STARTED}
        poll(lambda: spark_workers(store, deployment_id) == sorted(n.name for n in workers), "Spark to count 2 workers")

        mark = demo.last_event_id(deployment_id)
        os.kill(cloud.layout.server(first_worker.cloud_id).read_state()["pid"], signal.SIGKILL)  # its VM dies
        poll(lambda: settled(store, deployment_id, mark), "the killed worker VM to be replaced")
        heals = [e.message for e in store.list_events(deployment_id, limit=1000, after_id=mark) if e.kind == "heal"]
        print("\n".join(heals))
        assert any(first_worker.name in m and "replacing" in m for m in heals)  # by the healing DAG
        healed = store.list_nodes(deployment_id, group=WORKERS)
        assert first_worker.cloud_id not in {n.cloud_id for n in healed} and len(healed) == 2
        poll(lambda: len(spark_workers(store, deployment_id)) == 2, "Spark to count the replacement")

        hosts = task_hosts(service, deployment_id)
        print(f"[measure] task instances per Celery worker: { {h: len(t) for h, t in hosts.items()} }")
        assert set(hosts) == {"airflow-worker-1", "airflow-worker-2"}
        routes = ssh_routes(service, deployment_id)  # SSH sessions from both hosts, all through the gateway
        print({host: sorted(set(found)) for host, found in routes.items()})
        assert routes.get(REMOTE_WORKER), routes
        for host, found in routes.items():  # each through the gateway at the address its host reaches it at
            url = component(service, host).env["DODAS_LOCALCLOUD_URL"] if host in hosts else "?"
            gateway = f"({url.removeprefix('http://').rsplit(':', 1)[0]}:2200)"
            assert all(route.endswith(f"via jump host local gateway {gateway}") for route in found), (host, found)
    finally:
        nodes = [n.cloud_id for n in store.list_nodes(deployment_id) if n.cloud_id]
        mark = demo.last_event_id(deployment_id)
        demo.undeploy(service, deployment_id)
        until = {DeploymentStatus.DELETE_COMPLETE, DeploymentStatus.DELETE_FAILED}
        final = demo.watch(deployment_id, print, until=until, since=mark, timeout=DEADLINE_S)
    assert final == DeploymentStatus.DELETE_COMPLETE
    assert cloud.list_servers({"dodas:deployment": deployment_id}) == []
    leftovers = {server: processes_with_node_id(server) for server in [*nodes, first_worker.cloud_id]}
    assert not any(leftovers.values()), leftovers
    print(f"[measure] deploy, scale, heal, undeploy on Celery: {time.monotonic() - started:.0f} s")
