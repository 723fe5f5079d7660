"""The distributed stack, end to end: docker-compose.yml's Airflow services run as processes, read from the file.

Airflow on a PostgreSQL database of this test's own, CeleryExecutor over a redis-server of its own, two Celery
workers on host names of their own (airflow-worker-1/-2, as the compose file names them), the DODAS store on
PostgreSQL created and migrated by the compose file's airflow-init. On it the demo template (Spark standalone on
the local cloud) deploys with tasks on both workers, scales out, heals a killed worker VM and undeploys to nothing.
The mapping of container-only values is compose.Placement's; the test's own settings are the `.env` lines of
_service_fixtures (small pools for a 2-core machine, its databases) and SPEED.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
from _service_fixtures import celery_service

from dodas_tasks import demo
from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.clouds.local.procs import processes_with_node_id
from dodas_tasks.devstack import processes
from dodas_tasks.devstack.local_airflow import AirflowStack
from dodas_tasks.frameworks.cluster_view import cluster_of
from dodas_tasks.frameworks.spark import SparkStandalone
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
        print(
            f"\n[measure] compose stack (init, Airflow, 2 Celery workers) healthy in {time.monotonic() - started:.0f} s"
        )
        yield stack


@pytest.fixture
def store(service: AirflowStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """The store, cloud and Fernet key as the service's tasks see them (the CLI's view of the service too)."""
    env = service.env()
    for name in ("DODAS_DATABASE_URL", "DODAS_HOME", "AIRFLOW__CORE__FERNET_KEY"):
        monkeypatch.setenv(name, env[name])
    with Store(env["DODAS_DATABASE_URL"]) as opened:
        yield opened


def spark_workers(store: Store, deployment_id: str) -> list[str]:
    dep = store.get_deployment(deployment_id)
    cluster = cluster_of(dep.plan, store.list_nodes(deployment_id), "spark-standalone")
    return sorted(SparkStandalone().load(cluster).healthy_nodes)


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

        mark = demo.last_event_id(deployment_id)
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
