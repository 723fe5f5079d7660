"""Healing and failure backoff on the local cloud.

- Under a real Airflow with real Spark: a worker's server deleted behind the service's back is replaced and
  Spark counts it again; the master killed is replaced and the workers re-register with the new one.
- With dag.test(): a scale-out whose VMs fail to boot backs off exponentially with a clear status reason and
  is retried no sooner than the backoff; healing leaves such never-served nodes to the autoscaler.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dodas_tasks.airflow_stack import AirflowStack
from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.deploy import service
from dodas_tasks.deploy.naming import dag_id, short_id
from dodas_tasks.elastic.observe import cluster_of
from dodas_tasks.frameworks.spark import SparkStandalone
from dodas_tasks.store import DeploymentStatus, NodeState, Store
from dodas_tasks.tosca.plan import Plan

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
SPARK = (REPO / "templates" / "spark_local.yaml").read_text()
ELASTIC_VMS = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: 1, min_instances: 1, max_instances: 3}}
        host: {properties: {num_cpus: 1, mem_size: 512 MB}}
  policies:
    - grow:
        type: tosca.policies.indigo.dodas.Elastic
        targets: [ vm ]
        properties: {poll_interval: 1, backlog_window: 1}
"""


def poll(condition, what: str, deadline_s: float = 300.0):
    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(0.5)


def messages(store: Store, deployment_id: str, kind: str) -> list[str]:
    return [e.message for e in store.list_events(deployment_id, limit=2000) if e.kind == kind]


# -- real Airflow: worker and master replaced ---------------------------------------------------------------


@pytest.fixture  # function scope: a live stack must not act on the other tests' deployments
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    airflow = AirflowStack(
        tmp_path_factory.mktemp("healing-stack") / "home",
        DAGS,
        REPO / "plugins",
        port=port,
        parallelism=6,
        extra_env={"DODAS_HEALING_INTERVAL_S": "5"},
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DODAS_HOME", str(tmp_path_factory.mktemp("healing-dodas")))  # its own store and cloud
        patch.setenv("AIRFLOW__CORE__FERNET_KEY", airflow.env()["AIRFLOW__CORE__FERNET_KEY"])
        airflow.start()
        try:
            yield airflow
        finally:
            airflow.stop()


def settled(store: Store, deployment_id: str, after_event: int) -> bool:
    """The deployment DAG ran since `after_event` and the deployment is complete again."""
    dep = store.get_deployment(deployment_id)
    runs = [e for e in store.list_events(deployment_id, limit=2000, after_id=after_event) if e.kind == "status"]
    return dep.status == DeploymentStatus.UPDATE_COMPLETE and any("→ UPDATE_COMPLETE" in e.message for e in runs)


def spark_workers(store: Store, deployment_id: str) -> list[str]:
    dep = store.get_deployment(deployment_id)
    cluster = cluster_of(Plan.from_dict(dep.plan), store.list_nodes(deployment_id), "spark-standalone")
    return SparkStandalone().load(cluster).healthy_nodes


def last_event_id(store: Store, deployment_id: str) -> int:
    return store.list_events(deployment_id, limit=1)[-1].id


def test_deleted_worker_and_killed_master_are_replaced_and_spark_counts_them(stack: AirflowStack) -> None:
    store, cloud = Store(), LocalCloud()
    deployment_id = service.submit(store, SPARK, {"number_of_workers": 1})  # default grace: lost VMs need none
    try:
        stack.wait_for_dag(dag_id(deployment_id), reparse_via="dodas_submit")

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
        assert any(worker.name in m and "replacing" in m for m in messages(store, deployment_id, "heal"))
        assert "ALIVE" in messages(store, deployment_id, "verify")[-1]  # same master: no SparkPi job again

        mark = last_event_id(store, deployment_id)
        pid = cloud.layout.server(master.cloud_id).read_state()["pid"]
        os.kill(pid, signal.SIGKILL)  # the master's VM dies
        poll(lambda: settled(store, deployment_id, mark), "the master to be replaced")
        (new_master,) = store.list_nodes(deployment_id, group="spark-master-server")
        assert new_master.cloud_id != master.cloud_id
        poll(lambda: spark_workers(store, deployment_id) == [new_worker.name], "the worker on the new master")
        dep = store.get_deployment(deployment_id)
        assert dep.outputs["spark_master_url"] == f"spark://{new_master.private_ip}:7077"
        assert "SparkPi" in messages(store, deployment_id, "verify")[-1]  # a new master is checked with a job
    finally:
        service.request_undeploy(store, deployment_id)
        stack.trigger_dag(dag_id(deployment_id))
        deleted = DeploymentStatus.DELETE_COMPLETE
        poll(lambda: store.get_deployment(deployment_id).status == deleted, "the deployment to be deleted")
        store.close()


# -- dag.test(): a failing scale-out backs off ----------------------------------------------------------------


@pytest.fixture
def airflow_db() -> None:
    from airflow.utils import db

    db.initdb()


def elastic_dag_id(deployment_id: str) -> str:
    return f"dodas_elastic_{short_id(deployment_id)}"


def run_dag(name: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(name).test()


def test_failing_scale_out_backs_off_with_a_clear_reason(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store()
    options = {"backoff": 3, "cooldown": 1}
    deployment_id = service.submit(store, ELASTIC_VMS, {}, options=options)
    try:
        assert run_dag(dag_id(deployment_id)).state == "success"
        monkeypatch.setenv("DODAS_LOCAL_BOOT_FAILURE_RATE", "1")
        service.request_scale(store, deployment_id, "vm", 2, reason="test: one more")
        assert run_dag(dag_id(deployment_id)).state == "failed"
        assert store.get_deployment(deployment_id).status == DeploymentStatus.UPDATE_FAILED

        assert run_dag(elastic_dag_id(deployment_id)).state == "success"  # the trigger fires BACKOFF at once
        dep = store.get_deployment(deployment_id)
        assert (
            "elasticity: scale-out failed 1 time(s)" in dep.status_reason and "next attempt in 3 s" in dep.status_reason
        )
        assert "boot" in dep.status_reason  # the cloud's own reason is kept

        assert run_dag(elastic_dag_id(deployment_id)).state == "success"  # RETRY, not before the backoff
        elastic = [e for e in store.list_events(deployment_id, limit=2000) if e.kind == "elastic"]
        assert "retrying" in elastic[-1].message
        assert (elastic[-1].time - elastic[-2].time).total_seconds() >= 3

        run_dag(dag_id(deployment_id))  # the retry fails again: a new failure, twice the wait
        run_dag(elastic_dag_id(deployment_id))
        dep = store.get_deployment(deployment_id)
        assert "failed 2 time(s)" in dep.status_reason and "next attempt in 6 s" in dep.status_reason

        assert run_dag("dodas_healing").state == "success"  # never-served nodes are the autoscaler's
        assert not [m for m in messages(store, deployment_id, "heal") if "replacing" in m]
    finally:
        monkeypatch.delenv("DODAS_LOCAL_BOOT_FAILURE_RATE")
        service.request_undeploy(store, deployment_id)
        run_dag(dag_id(deployment_id))
        store.close()
