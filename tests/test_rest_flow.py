"""Through a real Airflow (scheduler, triggerer, dag-processor, api-server on 127.0.0.1) and its REST API:
submit → the deployment DAG appears at once (periodic re-parse switched off) and starts by itself → undeploy."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dodas_tasks.devstack.local_airflow import AirflowStack
from dodas_tasks.store import DeploymentStatus, Store

REPO = Path(__file__).resolve().parents[1]
PLAIN = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: 2}}
"""

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_status(deployment_id: str, wanted: set[str], timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    with Store() as store:
        while True:
            status = store.get_deployment(deployment_id).status
            if status in wanted:
                return status
            assert time.monotonic() < deadline, f"deployment still {status}"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    home = tmp_path_factory.mktemp("rest-airflow")
    patch = pytest.MonkeyPatch()
    patch.setenv("DODAS_HOME", str(tmp_path_factory.mktemp("rest-dodas")))  # its own store: no other test's DAGs
    stack = AirflowStack(
        home,
        REPO / "dags",
        REPO / "plugins",
        port=free_port(),
        parallelism=4,
        # no periodic re-parse during the test: only dodas_submit's explicit re-parse can show the new DAG
        extra_env={
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
            "DODAS_HOME": os.environ["DODAS_HOME"],
        },
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        patch.undo()


def test_submit_and_undeploy_through_the_rest_api(stack: AirflowStack, monkeypatch: pytest.MonkeyPatch) -> None:
    env = stack.env()
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", env["AIRFLOW__CORE__FERNET_KEY"])  # read the store as Airflow does
    run_id = stack.rest.trigger_dag("dodas_submit", {"template_text": PLAIN, "inputs": {}})
    assert stack.rest.wait_for_run("dodas_submit", run_id, timeout=300) == "success"
    info = stack.rest.xcom("dodas_submit", run_id, "register")
    stack.rest.wait_for_dag(info["dag_id"], timeout=60)  # appears through the submit DAG's own re-parse request
    assert wait_status(info["deployment_id"], {"CREATE_COMPLETE", "CREATE_FAILED"}) == DeploymentStatus.CREATE_COMPLETE
    runs = stack.rest.api("GET", f"/api/v2/dags/{info['dag_id']}/dagRuns")["dag_runs"]
    assert [r["run_type"] for r in runs] == ["scheduled"]  # the first run started by itself (@once)

    bad = stack.rest.trigger_dag("dodas_undeploy", {"deployment_id": "0" * 36})
    assert stack.rest.wait_for_run("dodas_undeploy", bad, timeout=120) == "failed"  # unknown id: refused, clearly

    run_id = stack.rest.trigger_dag("dodas_undeploy", {"deployment_id": info["deployment_id"]})
    assert stack.rest.wait_for_run("dodas_undeploy", run_id, timeout=120) == "success"
    final = wait_status(info["deployment_id"], {"DELETE_COMPLETE", "DELETE_FAILED"})
    assert final == DeploymentStatus.DELETE_COMPLETE
    with Store() as store:
        assert store.list_nodes(info["deployment_id"]) == []
