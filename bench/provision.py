"""Parallel provisioning through the deployment DAG: 20 VMs against 1 VM, each with a 5 s boot delay.

Prints `figure provision_20_over_1` (wall time of the deployment DAG run, begin → provision → finalize, for 20 VMs
divided by the same for 1 VM; runs alternate, median of 3) on the embedded local cloud, through Airflow's
dag.test() (the deferrable wait runs inline). Run: .venv/bin/python bench/provision.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TMP = tempfile.mkdtemp(prefix="dodas-bench-provision-")
os.environ.update(
    AIRFLOW_HOME=f"{TMP}/airflow",
    DODAS_HOME=f"{TMP}/dodas",
    AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    DODAS_LOCAL_BOOT_DELAY=os.environ.get("DODAS_LOCAL_BOOT_DELAY", "5"),
)
sys.path.insert(0, str(REPO))

TEMPLATE = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  inputs:
    count: {type: integer, default: 1}
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: {get_input: count}}}
        host: {properties: {num_cpus: 1, mem_size: 512 MB}}
"""


def run_once(count: int) -> float:
    import logging

    from airflow.dag_processing.dagbag import DagBag

    from dodas_tasks.deploy import service
    from dodas_tasks.naming import deployment_dag_id
    from dodas_tasks.store import DeploymentStatus, Store

    logging.disable(logging.INFO)
    with Store() as store:
        deployment_id = service.submit(store, TEMPLATE, {"count": count})
    dag = DagBag(dag_folder=str(REPO / "dags" / "dodas.py")).get_dag(deployment_dag_id(deployment_id))
    start = time.perf_counter()
    run = dag.test()
    elapsed = time.perf_counter() - start
    with Store() as store:
        status = store.get_deployment(deployment_id).status
        assert run.state == "success" and status == DeploymentStatus.CREATE_COMPLETE, status
        service.request_undeploy(store, deployment_id)
    DagBag(dag_folder=str(REPO / "dags" / "dodas.py")).get_dag(deployment_dag_id(deployment_id)).test()
    return elapsed


def main() -> None:
    from airflow.utils import db

    db.initdb()
    run_once(1)  # warm-up: first dag.test() in a process pays a one-time cost
    one, twenty = [], []
    for _ in range(3):
        one.append(run_once(1))
        twenty.append(run_once(20))
    a, b = statistics.median(one), statistics.median(twenty)
    print(f"deployment DAG run, boot delay {os.environ['DODAS_LOCAL_BOOT_DELAY']} s: 1 VM {a:.1f} s, 20 VMs {b:.1f} s")
    print(f"figure provision_1_vm_s = {a:.2f}")
    print(f"figure provision_20_vms_s = {b:.2f}")
    print(f"figure provision_20_over_1 = {b / a:.3f}")


if __name__ == "__main__":
    from dodas_tasks.devstack.interrupts import exit_on_signals

    with exit_on_signals():  # SIGTERM (a time limit), SIGINT, SIGHUP: main's finally blocks stop what it started
        main()
