"""Failure backoff on the local cloud with dag.test(): a scale-out whose VMs fail to boot backs off exponentially
with a clear status reason and is retried no sooner than the backoff; healing leaves such never-served nodes to the
autoscaler. (Healing under a real Airflow with real Spark is in test_elastic_e2e.py, with the other live-Spark test.)
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dodas_tasks.deploy import service
from dodas_tasks.naming import deployment_dag_id, elastic_dag_id
from dodas_tasks.store import DeploymentStatus, Store

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


# -- dag.test(): a failing scale-out backs off ----------------------------------------------------------------


def run_dag(name: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(name).test()


def test_failing_scale_out_backs_off_with_a_clear_reason(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store()
    # every boot fails: with no replacement within a run (max_boot_failures 0) a failing run boots one VM, not five
    options = {"backoff": 3, "cooldown": 1, "max_boot_failures": 0}
    deployment_id = service.submit(store, ELASTIC_VMS, {}, options=options)
    try:
        assert run_dag(deployment_dag_id(deployment_id)).state == "success"
        monkeypatch.setenv("DODAS_LOCAL_BOOT_FAILURE_RATE", "1")
        service.request_scale(store, deployment_id, "vm", 2, reason="test: one more")
        assert run_dag(deployment_dag_id(deployment_id)).state == "failed"
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

        run_dag(deployment_dag_id(deployment_id))  # the retry fails again: a new failure, twice the wait
        run_dag(elastic_dag_id(deployment_id))
        dep = store.get_deployment(deployment_id)
        assert "failed 2 time(s)" in dep.status_reason and "next attempt in 6 s" in dep.status_reason

        assert run_dag("dodas_healing").state == "success"  # never-served nodes are the autoscaler's
        assert not [m for m in messages(store, deployment_id, "heal") if "replacing" in m]
    finally:
        monkeypatch.delenv("DODAS_LOCAL_BOOT_FAILURE_RATE")
        service.request_undeploy(store, deployment_id)
        run_dag(deployment_dag_id(deployment_id))
        store.close()
