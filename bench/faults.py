"""Faults survived: deployments completed while the local cloud fails 30 % of boots and 30 % of API calls.

Prints `figure completion_rate_30pct_faults` = completed ÷ 10 deployments of the local Spark template with 3 workers
(a master and 3 worker VMs each, configured, verified with SparkPi), through Airflow's dag.test() on the embedded
local cloud with DODAS_LOCAL_BOOT_FAILURE_RATE=0.3 and DODAS_LOCAL_API_ERROR_RATE=0.3 (target 1.0), and for each
deployment its outcome and the boot failures it replaced. `--vms-only` deploys the same 4 VMs without Spark (fast).

Run: .venv/bin/python bench/faults.py [--deployments N] [--vms-only]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TMP = tempfile.mkdtemp(prefix="dodas-bench-faults-")
os.environ.update(
    AIRFLOW_HOME=f"{TMP}/airflow",
    DODAS_HOME=f"{TMP}/dodas",
    AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    DODAS_LOCAL_BOOT_FAILURE_RATE="0.3",
    DODAS_LOCAL_API_ERROR_RATE="0.3",
)
sys.path.insert(0, str(REPO))

SPARK = (REPO / "templates" / "spark_local.yaml").read_text()
VMS_ONLY = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  inputs:
    number_of_workers: {type: integer, default: 3}
  node_templates:
    master:
      type: tosca.nodes.indigo.Compute
    workers:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: {get_input: number_of_workers}}}
"""


def deploy_once(template: str) -> tuple[bool, str, float]:
    """One deployment of 3 workers under faults: (completed, its status and reason, seconds); then undeployed."""
    from airflow.dag_processing.dagbag import DagBag

    from dodas_tasks.deploy import service
    from dodas_tasks.naming import deployment_dag_id
    from dodas_tasks.store import DeploymentStatus, Store

    with Store() as store:
        deployment_id = service.submit(store, template, {"number_of_workers": 3})
    dag = DagBag(dag_folder=str(REPO / "dags" / "dodas.py")).get_dag(deployment_dag_id(deployment_id))
    start = time.perf_counter()
    run = dag.test()
    elapsed = time.perf_counter() - start
    with Store() as store:
        dep = store.get_deployment(deployment_id)
        replaced = sum(1 for e in store.list_events(deployment_id, limit=1000) if e.kind == "boot_failed")
        completed = run.state == "success" and dep.status == DeploymentStatus.CREATE_COMPLETE
        outcome = f"{dep.status} ({replaced} failed boot(s) replaced){'' if completed else ': ' + dep.status_reason}"
        service.request_undeploy(store, deployment_id)
    dag.test()
    return completed, outcome, elapsed


def killed_task_recovery_s() -> float:
    """TODO(issue 16, point 2): a worker SIGKILLed mid-task → the deployment moves on (target ≤ 60 s).

    Needs a live stack (devstack.local_airflow.AirflowStack) and its heartbeat/zombie settings, which another
    change sets; measured by hand with today's defaults, the killed task waits for Airflow's task heartbeat timeout
    ([scheduler] task_instance_heartbeat_timeout, 300 s) before its retry runs."""
    raise NotImplementedError("killed_task_recovery_s waits for the dev stack's heartbeat settings (issue 16 point 2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=10)
    parser.add_argument("--vms-only", action="store_true", help="the 4 VMs without Spark (provisioning alone)")
    args = parser.parse_args()
    import logging

    from airflow.utils import db

    from dodas_tasks.clouds.local import LocalCloud

    logging.disable(logging.WARNING)
    db.initdb()
    template = VMS_ONLY if args.vms_only else SPARK
    completed = 0
    try:
        for number in range(1, args.deployments + 1):
            ok, outcome, elapsed = deploy_once(template)
            completed += ok
            print(f"deployment {number}: {outcome} in {elapsed:.0f} s", flush=True)
    finally:
        LocalCloud(api_error_rate=0).cleanup()
    print(f"figure completion_rate_30pct_faults = {completed / args.deployments:.2f}")


if __name__ == "__main__":
    from dodas_tasks.devstack.interrupts import exit_on_signals

    with exit_on_signals():  # SIGTERM (a time limit), SIGINT, SIGHUP: main's finally blocks stop what it started
        main()
