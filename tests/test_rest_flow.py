"""Through a real Airflow (scheduler, triggerer, dag-processor, api-server on 127.0.0.1) and its REST API:
submit → the deployment DAG appears at once (periodic re-parse switched off) and starts by itself → undeploy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from dodas_tasks.devstack.local_airflow import AirflowStack
from dodas_tasks.store import DeploymentStatus, Store

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


def wait_status(deployment_id: str, wanted: set[str], timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    with Store() as store:
        while True:
            status = store.get_deployment(deployment_id).status
            if status in wanted:
                return status
            assert time.monotonic() < deadline, f"deployment still {status}"
            time.sleep(0.5)


@pytest.fixture
def stack(plugin_store_env: AirflowStack) -> AirflowStack:
    """The session's plugin stack (tests/_plugin_stack.py), its store read by this test as its tasks read it."""
    return plugin_store_env


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


def wait_runs_finished(stack: AirflowStack, dag_id: str, timeout: float = 300) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        runs = stack.rest.api("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]
        if all(r["state"] in ("success", "failed") for r in runs):
            return runs
        assert time.monotonic() < deadline, f"runs of {dag_id} still going: {runs}"
        time.sleep(0.5)


def dodas_cli(stack: AirflowStack, *args: str) -> subprocess.CompletedProcess[str]:
    """The `dodas` command driving this stack, as a user on this machine runs it."""
    env = {**os.environ, "AIRFLOW_HOME": str(stack.airflow_home), "DODAS_AIRFLOW_PORT": str(stack.port)}
    return subprocess.run(
        [sys.executable, "-m", "dodas_tasks.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_the_submit_form_requires_nothing_that_has_a_default(stack: AirflowStack) -> None:
    # The trigger form stars and requires a value in every field whose schema type does not admit null (Airflow's
    # ui/src/components/FlexibleForm/isParamRequired.tsx): a required field left empty disables the Trigger button.
    params = stack.rest.api("GET", "/api/v2/dags/dodas_submit/details")["params"]
    assert set(params) >= {"template", "template_text", "inputs", "cloud", "failover_clouds", "options"}
    required = [name for name, p in params.items() if "null" not in p["schema"]["type"]]
    assert required == []
    assert params["template"]["value"] == "spark_local.yaml" and "pasted" in params["template"]["description"]


def test_default_submission_names_its_deployment_on_the_run_and_a_deleted_one_stays_deleted(
    stack: AirflowStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = stack.env()
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", env["AIRFLOW__CORE__FERNET_KEY"])
    run_id = stack.rest.trigger_dag("dodas_submit", {})  # the form's defaults: templates/spark_local.yaml on local
    assert stack.rest.wait_for_run("dodas_submit", run_id, timeout=300) == "success"
    note = stack.rest.run("dodas_submit", run_id)["note"]
    info = stack.rest.xcom("dodas_submit", run_id, "register")
    assert re.search(r"deployment ([0-9a-f-]{36})", note)[1] == info["deployment_id"], note
    assert info["dag_id"] in note and "templates/spark_local.yaml" in note
    deployment_id, dag_id = info["deployment_id"], info["dag_id"]

    # undeployed at once, by the 8-character short id the DAG name shows
    undeploy = stack.rest.trigger_dag("dodas_undeploy", {"deployment_id": deployment_id[:8]})
    assert stack.rest.wait_for_run("dodas_undeploy", undeploy, timeout=120) == "success"
    assert deployment_id in stack.rest.run("dodas_undeploy", undeploy)["note"]
    assert wait_status(deployment_id, {"DELETE_COMPLETE"}) == DeploymentStatus.DELETE_COMPLETE
    wait_runs_finished(stack, dag_id)

    stray = stack.rest.trigger_dag(dag_id)  # the DAG is still listed until the next parse
    assert stack.rest.wait_for_run(dag_id, stray, timeout=120) == "success"
    assert "this run changes nothing" in stack.rest.run(dag_id, stray)["note"]
    with Store() as store:
        assert store.get_deployment(deployment_id).status == DeploymentStatus.DELETE_COMPLETE
        assert deployment_id not in [d.id for d in store.list_deployments(live_only=True)]  # `dodas list`

    refused = dodas_cli(stack, "undeploy", deployment_id[:8])  # the CLI prints the run's reason
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == f"Refused: deployment {deployment_id} is already deleted", refused.stderr
    refused = dodas_cli(stack, "scale", deployment_id[:8], "spark-worker-server", "3")
    assert refused.returncode != 0 and "is being deleted; it cannot be scaled" in refused.stderr, refused.stderr

    deadline = time.monotonic() + 120
    next_parse = time.monotonic()
    while not stack.rest.api("GET", f"/api/v2/dags/{dag_id}")["is_stale"]:
        assert time.monotonic() < deadline, f"{dag_id} still listed"
        if time.monotonic() >= next_parse:  # the generator no longer makes the DAG: Airflow marks it stale
            stack.rest.reparse_file_of("dodas_submit")
            next_parse = time.monotonic() + 5
        time.sleep(0.5)
    listed = stack.rest.api("GET", "/api/v2/dags", params={"dag_id_pattern": dag_id})
    assert listed["total_entries"] == 0


def test_a_refused_submission_says_why_on_its_run(stack: AirflowStack) -> None:
    bad = PLAIN.replace("tosca.nodes.indigo.Compute", "tosca.nodes.DODAS.HelmInstall.Spark")
    run_id = stack.rest.trigger_dag("dodas_submit", {"template_text": bad})
    assert stack.rest.wait_for_run("dodas_submit", run_id, timeout=300) == "failed"
    note = stack.rest.run("dodas_submit", run_id)["note"]
    assert note.startswith("Refused:") and "tosca.nodes.DODAS.HelmInstall.Spark" in note, note
