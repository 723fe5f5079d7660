"""The distributed stack, end to end: docker-compose.yml's services run as processes, read from the file.

Airflow on a PostgreSQL database of this test's own, CeleryExecutor over a redis-server of its own, two Celery
workers on host names of their own (airflow-worker-1/-2, as the compose file names them), the DODAS store on
PostgreSQL created and migrated by the compose file's airflow-init, and the local cloud as the compose file's
service of its own. The local cloud and airflow-worker-2 run on hosts of their own (network namespaces): the VMs
are on the cloud host's loopback, so every worker reaches them only through the service's SSH gateway. On it the
demo template (Spark standalone) deploys with tasks on both workers, scales out with airflow-worker-2 alone taking
tasks (so SSH sessions from its host are sure), heals a killed worker VM and undeploys to nothing; every SSH session
went through the gateway, and the worker's host has no way to the VMs.
Then a light template survives a Celery worker killed mid-provisioning, Redis and the scheduler restarted.
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
from pathlib import Path
from typing import Any

import psutil
import pytest
from _service_fixtures import REMOTE_WORKER, celery_service, reported_on_failure

from dodas_tasks import demo
from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.clouds.local.procs import NODE_ID_ENV, processes_with_node_id
from dodas_tasks.deploy import service as requests
from dodas_tasks.deploy.components import deployment_framework
from dodas_tasks.devstack import processes
from dodas_tasks.devstack.compose import LOCALCLOUD_SERVICE
from dodas_tasks.devstack.local_airflow import AirflowStack, Component
from dodas_tasks.frameworks.cluster_view import cluster_of
from dodas_tasks.naming import SUBMIT_DAG_ID, TAG_INDEX, UNDEPLOY_DAG_ID, deployment_dag_id, deployment_tags
from dodas_tasks.store import DeploymentStatus, NodeState, Store

pytestmark = pytest.mark.slow

WORKERS = "spark-worker-server"
DEADLINE_S = 420.0
# The test's own overrides of the compose file's settings: a VM found dead is replaced within seconds (default
# interval 30 s). A task whose worker died is failed (and retried) 30-35 s after its last heartbeat, as the compose
# file sets it (AIRFLOW_TASK_HEARTBEAT_TIMEOUT).
SPEED = {"DODAS_HEALING_INTERVAL_S": "5"}


def poll(condition: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S, every_s: float = 1.0) -> Any:
    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(every_s)


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
        with reported_on_failure(service):
            assert demo.watch(deployment_id, print, timeout=DEADLINE_S) == DeploymentStatus.CREATE_COMPLETE
            print(f"[measure] created in {time.monotonic() - started:.0f} s")
            assert listening_off_loopback(service) == []
            (first_worker,) = store.list_nodes(deployment_id, group=WORKERS)
            cloud_host, worker_host = (
                component(service, LOCALCLOUD_SERVICE).netns,
                component(service, REMOTE_WORKER).netns,
            )
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
            poll(
                lambda: spark_workers(store, deployment_id) == sorted(n.name for n in workers),
                "Spark to count 2 workers",
            )

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
        with reported_on_failure(service):
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


# -- faults on the distributed stack (issue 14 point 4) ----------------------------------------------------------

LIGHT = (Path(__file__).parent / "data" / "two_vms.yaml").read_text()  # 2 VMs, no framework
PROVISION = "provision.vm"
SCHEDULER, REDIS = "airflow-scheduler", "redis"


def submit_light(stack: AirflowStack, store: Store) -> str:
    """A 2-VM deployment, no framework (bench/throughput.py's), registered as the submit DAG does, its DAG parsed."""
    deployment_id = requests.submit(store, LIGHT, {})
    stack.rest.reparse_file_of(SUBMIT_DAG_ID)
    stack.rest.wait_for_dag(deployment_dag_id(deployment_id), timeout=120, reparse_via=SUBMIT_DAG_ID)
    return deployment_id


def task_instance(stack: AirflowStack, deployment_id: str, task_id: str) -> dict[str, Any] | None:
    """The task instance of the deployment's first run (its creation), as the REST API reports it."""
    reply = stack.rest.api(
        "GET", f"/api/v2/dags/{deployment_dag_id(deployment_id)}/dagRuns/~/taskInstances", params={"limit": 1000}
    )
    found = [ti for ti in reply["task_instances"] if ti["task_id"] == task_id]
    return min(found, key=lambda ti: ti["run_after"]) if found else None


def running_on_a_worker(stack: AirflowStack, deployment_id: str, task_id: str) -> dict[str, Any] | None:
    ti = task_instance(stack, deployment_id, task_id)
    return ti if ti and ti["state"] == "running" and ti["hostname"] and ti["pid"] else None


def provisioning(stack: AirflowStack, deployment_id: str) -> bool:
    """The deployment's provision task has started and not finished yet: the deployment is midway."""
    ti = task_instance(stack, deployment_id, PROVISION)
    return bool(ti and ti["state"] in ("running", "deferred") and ti["hostname"])


def retried_on(stack: AirflowStack, deployment_id: str, after_try: int, host: str) -> dict[str, Any] | None:
    """The provision task instance once a try after `after_try` has started on `host`."""
    ti = task_instance(stack, deployment_id, PROVISION)
    started = ti and ti["try_number"] > after_try and ti["state"] not in ("up_for_retry", "scheduled", "queued")
    return ti if started and ti["hostname"] == host else None


def first_server(cloud: LocalCloud, deployment_id: str, deadline_s: float = 120.0) -> None:
    """Polls the cloud closely (a create takes a fraction of a second) until a server of the deployment exists."""
    end = time.monotonic() + deadline_s
    while not cloud.list_servers(deployment_tags(deployment_id)):
        if time.monotonic() > end:
            pytest.fail(f"no server of {deployment_id} within {deadline_s:.0f} s")
        time.sleep(0.01)


def local_cloud_vm(proc: psutil.Process) -> bool:
    """A VM of the local cloud being launched by a task (it carries its node id): the cloud's, not the worker's
    host's, as a cloud's VM outlives the client that asked for it."""
    return NODE_ID_ENV in proc.environ()


def assert_servers_match_the_plan(cloud: LocalCloud, store: Store, deployment_id: str) -> set[str]:
    """One server per slot of the plan (no duplicate VM), each one a node's (none leaked); returns their ids."""
    servers = cloud.list_servers(deployment_tags(deployment_id))
    assert sorted(int(s.tags[TAG_INDEX]) for s in servers) == [0, 1], [(s.id, s.tags) for s in servers]
    assert {n.cloud_id for n in store.list_nodes(deployment_id)} == {s.id for s in servers}
    return {s.id for s in servers}


def test_a_killed_worker_a_restarted_scheduler_and_redis_leave_no_duplicate_and_nothing_behind(
    service: AirflowStack, store: Store
) -> None:
    """First deployment: the Celery worker running `provision.vm` is SIGKILLed (its whole process tree, as when its
    host dies) once the task has made a VM, and Redis is restarted (it keeps no data) while the task is orphaned;
    Airflow's task heartbeat timeout fails that try, the retry runs on the other worker and adopts the VMs made.
    Second deployment, submitted once the retry runs: the scheduler is SIGKILLed while it provisions, and started
    again. Both complete with one VM per slot, then are undeployed together to nothing."""
    started = time.monotonic()
    cloud = LocalCloud()
    workers = {c.hostname: c.name for c in service.components if c.airflow_subcommand == "celery worker"}
    deployments: list[str] = []
    seen: set[str] = set()
    try:
        with reported_on_failure(service):
            # -- a Celery worker dies while its task provisions; Redis restarts while the task is orphaned
            killed_worker = submit_light(service, store)
            deployments.append(killed_worker)
            ti = poll(lambda: running_on_a_worker(service, killed_worker, PROVISION), f"{PROVISION} to run", 120, 0.1)
            victim, (survivor,) = workers[ti["hostname"]], set(workers) - {ti["hostname"]}
            first_server(cloud, killed_worker)
            pids = service.kill(victim, spare=local_cloud_vm)
            made = {s.id for s in cloud.list_servers(deployment_tags(killed_worker))}
            seen |= made
            after_kill = task_instance(service, killed_worker, PROVISION)
            print(f"[measure] {victim} killed ({len(pids)} processes) with {len(made)} VM(s) made")
            assert ti["pid"] in pids  # the task's own process was on the killed worker
            assert after_kill and after_kill["state"] == "running" and after_kill["try_number"] == ti["try_number"]
            service.restart(REDIS)
            retry = poll(
                lambda: retried_on(service, killed_worker, ti["try_number"], survivor), f"the retry on {survivor}"
            )
            print(f"[measure] try {retry['try_number']} on {retry['hostname']} {time.monotonic() - started:.0f} s in")

            # -- the scheduler dies while a second deployment provisions, and is started again
            killed_scheduler = submit_light(service, store)
            deployments.append(killed_scheduler)
            # provisioning lasts seconds (1 s boots): watched closely, and nothing else done meanwhile
            poll(lambda: provisioning(service, killed_scheduler), f"{PROVISION} of the second deployment", 120, 0.1)
            service.kill(SCHEDULER)
            restarted = time.monotonic()
            service.restart(SCHEDULER)
            print(f"[measure] scheduler back in {time.monotonic() - restarted:.0f} s")
            service.restart(victim)  # as compose's `restart: always`; both deployments go on meanwhile

            for deployment_id in deployments:
                assert demo.watch(deployment_id, print, timeout=DEADLINE_S) == DeploymentStatus.CREATE_COMPLETE
                seen |= assert_servers_match_the_plan(cloud, store, deployment_id)
            kept = made & seen
            adopted = [e.message for e in store.list_events(killed_worker, limit=1000) if e.kind == "adopt"]
            print(f"[measure] made before the kill {sorted(made)}, kept {sorted(kept)}; adopted: {adopted}")
            assert kept, "no VM made before the kill was kept"
    finally:
        with reported_on_failure(service):
            marks = {d: demo.last_event_id(d) for d in deployments}
            runs = [service.rest.trigger_dag(UNDEPLOY_DAG_ID, {"deployment_id": d}) for d in deployments]
            assert [service.rest.wait_for_run(UNDEPLOY_DAG_ID, r, timeout=DEADLINE_S) for r in runs] == [
                "success"
            ] * len(runs)
            until = {DeploymentStatus.DELETE_COMPLETE, DeploymentStatus.DELETE_FAILED}
            outcomes = [demo.watch(d, print, until=until, since=marks[d], timeout=DEADLINE_S) for d in deployments]
    assert outcomes == [DeploymentStatus.DELETE_COMPLETE] * 2
    assert [s for d in deployments for s in cloud.list_servers(deployment_tags(d))] == []
    leftovers = {server: processes_with_node_id(server) for server in seen}
    assert not any(leftovers.values()), leftovers
    assert service.is_running()  # every component up again for whatever runs next
    print(f"[measure] worker killed, Redis and scheduler restarted, 2 deployments: {time.monotonic() - started:.0f} s")
