"""Elasticity and healing end to end under a real Airflow (scheduler + triggerer), real Spark on the local cloud.

- An application asking for more cores than the cluster has makes it grow by exactly the nodes it needs; once the
  work is done it shrinks back to min_workers after idle_time, and the worker still running an executor stays.
- A worker's server deleted behind the service's back is replaced and Spark counts it again; the master killed is
  replaced and the workers re-register with the new one.
Both live-Spark tests are in this one file so that parallel test workers run them one after the other.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.deploy import service
from dodas_tasks.deploy.framework_secrets import framework_secret
from dodas_tasks.devstack.local_airflow import AirflowStack
from dodas_tasks.frameworks.cluster_view import cluster_of
from dodas_tasks.frameworks.spark import SparkStandalone, read_master_state
from dodas_tasks.naming import deployment_dag_id
from dodas_tasks.runtime import spark_env
from dodas_tasks.store import DeploymentStatus, NodeState, Store

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = (REPO / "templates" / "spark_local_elastic.yaml").read_text()
SPARK = (REPO / "templates" / "spark_local.yaml").read_text()
WORKERS = "spark-worker-server"
DEADLINE_S = 300.0
APP = """
import sys, time
from pyspark.sql import SparkSession
seconds, parts = float(sys.argv[1]), int(sys.argv[2])
spark = SparkSession.builder.appName(sys.argv[3]).getOrCreate()
spark.sparkContext.parallelize(range(parts), parts).map(lambda x: time.sleep(seconds) or x).collect()
spark.stop()
"""


def poll(condition, what: str, deadline_s: float = DEADLINE_S):
    import time

    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    """One live Airflow for both tests (starting one takes ~15 s): its own store and cloud, healing every 5 s."""
    root = tmp_path_factory.mktemp("live-stack")
    airflow = AirflowStack(
        root / "home",
        REPO / "dags",
        REPO / "plugins",
        port=free_port(),
        parallelism=6,
        extra_env={"DODAS_HEALING_INTERVAL_S": "5", "DODAS_HOME": str(root / "dodas")},
    )
    airflow.start()
    try:
        airflow.rest.wait_for_dag("dodas_healing")
        yield airflow
    finally:
        airflow.stop()


@pytest.fixture
def stack(live_stack: AirflowStack) -> Iterator[AirflowStack]:
    """The live stack as this test process sees it: the same store, cloud and Fernet key as its tasks."""
    env = live_stack.env()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DODAS_HOME", env["DODAS_HOME"])
        patch.setenv("AIRFLOW__CORE__FERNET_KEY", env["AIRFLOW__CORE__FERNET_KEY"])
        yield live_stack


def set_healing_paused(stack: AirflowStack, paused: bool) -> None:
    """Healing has its own test: the scaling test pauses the DAG (Airflow's own switch) while it runs."""
    stack.rest.api("PATCH", "/api/v2/dags/dodas_healing", json={"is_paused": paused})


def submit_app(
    master_ip: str, workdir: Path, name: str, cores: int, seconds: float, parts: int, secret: str
) -> subprocess.Popen:
    """A user's driver, outside the cluster: it authenticates with the deployment's Spark secret."""
    script = workdir / "app.py"
    script.write_text(APP)
    scratch = workdir / f"{name}-scratch"  # a driver killed at the end leaves its temp dirs here, not in /tmp
    scratch.mkdir(exist_ok=True)
    env = {**spark_env(), "SPARK_LOCAL_IP": "127.0.0.1", "HOME": str(workdir)}
    env.update(SPARK_LOCAL_DIRS=str(scratch), TMPDIR=str(scratch))
    command = [
        str(Path(env["SPARK_HOME"]) / "bin" / "spark-submit"),
        *("--master", f"spark://{master_ip}:7077", "--executor-memory", "512m"),
        *("--conf", f"spark.cores.max={cores}", "--conf", "spark.ui.enabled=false"),
        *("--conf", "spark.authenticate=true", "--conf", f"spark.authenticate.secret={secret}"),
        *("--conf", "spark.driver.host=127.0.0.1", str(script), str(seconds), str(parts), name),
    ]
    log = (workdir / f"{name}.log").open("wb")
    return subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)


def status_is(store: Store, deployment_id: str, wanted: str) -> bool:
    dep = store.get_deployment(deployment_id)
    if dep.status.endswith("FAILED"):
        pytest.fail(f"deployment {dep.status}: {dep.status_reason}")
    return dep.status == wanted


def events(store: Store, deployment_id: str, kind: str) -> list[str]:
    return [e.message for e in store.list_events(deployment_id, limit=1000) if e.kind == kind]


def started_by_trigger(stack: AirflowStack, deployment_id: str) -> list[dict]:
    """Deployment runs the elasticity trigger created itself through the REST API (noted with the decision)."""
    runs = stack.rest.api("GET", f"/api/v2/dags/{deployment_dag_id(deployment_id)}/dagRuns")["dag_runs"]
    return [r for r in runs if (r.get("note") or "").startswith("scale_out: ")]


def test_grows_for_an_app_then_shrinks_to_min_keeping_the_busy_worker(stack: AirflowStack, tmp_path: Path) -> None:
    set_healing_paused(stack, True)
    store = Store()
    cloud = LocalCloud()
    drivers: list[subprocess.Popen] = []
    inputs = {"min_workers": 1, "max_workers": 3, "idle_time": 20}
    deployment_id = service.submit(
        store, TEMPLATE, inputs, options={"backlog_window": 3, "poll_interval": 1, "cooldown": 5}
    )
    try:
        stack.rest.wait_for_dag(deployment_dag_id(deployment_id), reparse_via="dodas_submit")
        poll(lambda: status_is(store, deployment_id, DeploymentStatus.CREATE_COMPLETE), "the cluster")
        master_ip = store.list_nodes(deployment_id, group="spark-master-server")[0].private_ip
        assert master_ip
        secret = framework_secret(store.get_deployment(deployment_id), "spark-standalone")

        # A wants 3 cores, the cluster has 1 (one 1-core worker): +2 workers, not one at a time.
        drivers.append(submit_app(master_ip, tmp_path, "wide", cores=3, seconds=8, parts=6, secret=secret))
        poll(lambda: store.get_deployment(deployment_id).desired_counts[WORKERS] == 3, "the scale-out")
        scale_outs = [m for m in events(store, deployment_id, "scale") if "elasticity" in m]
        assert len(scale_outs) == 1 and "desired 3" in scale_outs[0] and "2 core(s) wanted" in scale_outs[0]
        poll(lambda: started_by_trigger(stack, deployment_id), "the deployment run started by the elasticity trigger")
        # B wants 1 core while A holds all: it waits (max_workers reached: no scale-out) and runs after A.
        drivers.append(submit_app(master_ip, tmp_path, "narrow", cores=1, seconds=30, parts=1, secret=secret))
        assert poll(lambda: drivers[0].poll() is not None, "app A to finish") is not None
        assert drivers[0].returncode == 0, (tmp_path / "wide.log").read_text()[-2000:]
        by_ip = {n.private_ip: n for n in store.list_nodes(deployment_id, group=WORKERS)}
        assert len(by_ip) == 3 and {n.state for n in by_ip.values()} == {NodeState.STARTED}

        def busy_worker() -> str | None:
            if drivers[1].poll() is not None:
                pytest.fail("app B ended before its worker could be observed")
            busy = [w["host"] for w in read_master_state(master_ip)["workers"] if w.get("coresused")]
            return by_ip[busy[0]].name if len(busy) == 1 else None

        busy = poll(busy_worker, "app B running on one worker")
        poll(lambda: store.get_deployment(deployment_id).desired_counts[WORKERS] == 1, "the scale-in")
        scale_in = [m for m in events(store, deployment_id, "scale") if "elasticity" in m][-1]
        assert "idle for at least 20 s" in scale_in and busy not in scale_in

        assert poll(lambda: drivers[1].poll() is not None, "app B to finish") is not None
        assert drivers[1].returncode == 0, (tmp_path / "narrow.log").read_text()[-2000:]

        def shrunk() -> list | None:
            dep = store.get_deployment(deployment_id)
            nodes = store.list_nodes(deployment_id, group=WORKERS)
            done = dep.status == DeploymentStatus.UPDATE_COMPLETE and len(nodes) == 1
            return nodes if done else None

        (kept,) = poll(shrunk, "the cluster back at min_workers")
        assert kept.name == busy  # the worker that ran B's executor was never removed
        assert len(cloud.list_servers({"dodas:deployment": deployment_id})) == 2
        assert len(scale_outs) == 1  # B's wait (max reached) and SparkPi checks caused no further scale-out
        assert len([m for m in events(store, deployment_id, "scale") if "elasticity" in m]) == 2
    finally:
        for driver in drivers:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
        history = store.list_events(deployment_id, limit=1000)  # shown when the test fails
        print("\n".join(f"{e.time:%H:%M:%S} {e.kind}: {e.message}" for e in history), file=sys.stderr)
        service.request_undeploy(store, deployment_id)
        stack.rest.trigger_dag(deployment_dag_id(deployment_id))
        deleted = DeploymentStatus.DELETE_COMPLETE
        poll(lambda: store.get_deployment(deployment_id).status == deleted, "the deployment to be deleted")
        store.close()
        set_healing_paused(stack, False)


# -- healing: worker and master replaced ----------------------------------------------------------------


def settled(store: Store, deployment_id: str, after_event: int) -> bool:
    """The deployment DAG ran since `after_event` and the deployment is complete again."""
    dep = store.get_deployment(deployment_id)
    runs = [e for e in store.list_events(deployment_id, limit=2000, after_id=after_event) if e.kind == "status"]
    return dep.status == DeploymentStatus.UPDATE_COMPLETE and any("→ UPDATE_COMPLETE" in e.message for e in runs)


def spark_workers(store: Store, deployment_id: str) -> list[str]:
    dep = store.get_deployment(deployment_id)
    cluster = cluster_of(dep.plan, store.list_nodes(deployment_id), "spark-standalone")
    return SparkStandalone().load(cluster).healthy_nodes


def last_event_id(store: Store, deployment_id: str) -> int:
    return store.list_events(deployment_id, limit=1)[-1].id


def test_deleted_worker_and_killed_master_are_replaced_and_spark_counts_them(stack: AirflowStack) -> None:
    set_healing_paused(stack, False)
    store, cloud = Store(), LocalCloud()
    deployment_id = service.submit(store, SPARK, {"number_of_workers": 1})  # default grace: lost VMs need none
    try:
        stack.rest.wait_for_dag(deployment_dag_id(deployment_id), reparse_via="dodas_submit")

        def complete() -> bool:
            dep = store.get_deployment(deployment_id)
            assert dep.status != DeploymentStatus.CREATE_FAILED, dep.status_reason
            return dep.status == DeploymentStatus.CREATE_COMPLETE

        poll(complete, "the cluster")
        (worker,) = store.list_nodes(deployment_id, group="spark-worker-server")
        (master,) = store.list_nodes(deployment_id, group="spark-master-server")
        assert spark_workers(store, deployment_id) == [worker.name]

        mark = last_event_id(store, deployment_id)
        cloud.delete_server(worker.cloud_id)  # behind the service's back
        poll(lambda: settled(store, deployment_id, mark), "the worker to be replaced")
        (new_worker,) = store.list_nodes(deployment_id, group="spark-worker-server")
        assert new_worker.cloud_id != worker.cloud_id and new_worker.state == NodeState.STARTED
        poll(lambda: spark_workers(store, deployment_id) == [new_worker.name], "Spark to count the new worker")
        assert any(worker.name in m and "replacing" in m for m in events(store, deployment_id, "heal"))
        assert "ALIVE" in events(store, deployment_id, "verify")[-1]  # same master: no SparkPi job again

        mark = last_event_id(store, deployment_id)
        pid = cloud.layout.server(master.cloud_id).read_state()["pid"]
        os.kill(pid, signal.SIGKILL)  # the master's VM dies
        poll(lambda: settled(store, deployment_id, mark), "the master to be replaced")
        (new_master,) = store.list_nodes(deployment_id, group="spark-master-server")
        assert new_master.cloud_id != master.cloud_id
        poll(lambda: spark_workers(store, deployment_id) == [new_worker.name], "the worker on the new master")
        dep = store.get_deployment(deployment_id)
        assert dep.outputs["spark_master_url"] == f"spark://{new_master.private_ip}:7077"
        assert "SparkPi" in events(store, deployment_id, "verify")[-1]  # a new master is checked with a job
    finally:
        service.request_undeploy(store, deployment_id)
        stack.rest.trigger_dag(deployment_dag_id(deployment_id))
        deleted = DeploymentStatus.DELETE_COMPLETE
        poll(lambda: store.get_deployment(deployment_id).status == deleted, "the deployment to be deleted")
        store.close()
