"""Faults survived: deployments completed while the local cloud fails 30 % of boots and 30 % of API calls.

Prints `figure killed_task_recovery_s`: a live dev stack deploys the local Spark template; the LocalExecutor worker
supervising a configure/deploy task is SIGKILLed mid-task; seconds until the task's retry runs (median of 3 trials;
target ≤ 60 s; the heartbeat settings of devstack/local_airflow.py TASK_HEARTBEAT bound it). Then prints
`figure completion_rate_30pct_faults` = completed ÷ 10 deployments of the local Spark template with 3 workers
(a master and 3 worker VMs each, configured, verified with SparkPi), through Airflow's dag.test() on the embedded
local cloud with DODAS_LOCAL_BOOT_FAILURE_RATE=0.3 and DODAS_LOCAL_API_ERROR_RATE=0.3 (target 1.0), and for each
deployment its outcome and the boot failures it replaced. `--vms-only` deploys the same 4 VMs without Spark (fast).

Run: .venv/bin/python bench/faults.py [--deployments N] [--vms-only] [--killed-tasks N] [--only-killed-tasks]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from datetime import datetime
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


def killed_task_recovery_s(trials: int) -> list[float]:
    """A task's supervisor (the LocalExecutor worker process running it) SIGKILLed mid-task → its retry runs.

    A live dev stack (AirflowStack: scheduler, LocalExecutor, its heartbeat settings) deploys the local Spark
    template with 1 worker, no faults injected. Once a configure/deploy task has run 3 s, the LocalExecutor worker
    supervising it (the parent of the task process Airflow records) is SIGKILLed, as the OOM killer or a `kill -9`
    would: nothing reports the task's end, its heartbeats stop, the scheduler fails it after the heartbeat timeout and
    queues its retry. Measured: the kill → the task's next try running (the deployment moves on). Each deployment must
    then complete; tasks retried without having been killed (false heartbeat timeouts) are counted and printed.
    """
    import psutil

    from dodas_tasks import demo
    from dodas_tasks.devstack.local_airflow import AirflowStack
    from dodas_tasks.naming import deployment_dag_id

    stack = AirflowStack(
        Path(TMP) / "stack",
        REPO / "dags",
        REPO / "plugins",
        port=_free_port(),
        parallelism=4,
        extra_env={"DODAS_HOME": os.environ["DODAS_HOME"], **NO_FAULTS},
    )
    seconds: list[float] = []
    stack.start()
    try:
        os.environ["AIRFLOW__CORE__FERNET_KEY"] = stack.env()["AIRFLOW__CORE__FERNET_KEY"]  # the store, as tasks see it
        for trial in range(1, trials + 1):
            conf = {"template": "spark_local.yaml", "inputs": {"number_of_workers": 1}, "cloud": "local"}
            deployment_id = demo.submit(stack, conf, lambda _line: None)
            dag_id = deployment_dag_id(deployment_id)
            task, tried, supervisor = _running_step(stack, dag_id, psutil)
            supervisor.kill()
            killed = time.monotonic()
            while (ti := _task_instances(stack, dag_id)[task])["try_number"] <= tried or ti["state"] not in MOVED_ON:
                if time.monotonic() - killed > 900:
                    raise RuntimeError(f"{task} not retried 900 s after its worker was killed: {ti['state']}")
                time.sleep(0.2)
            seconds.append(time.monotonic() - killed)
            status = demo.watch(deployment_id, lambda _line: None)
            others = sorted(t for t, i in _task_instances(stack, dag_id).items() if i["try_number"] > 1 and t != task)
            timed_out = [line for line in _scheduler_log(stack) if HEARTBEAT_TIMEOUT in line and dag_id in line]
            print(
                f"trial {trial}: the worker of {task} (try {tried}, pid {supervisor.pid}) SIGKILLed → try"
                f" {ti['try_number']} {ti['state']} after {seconds[-1]:.1f} s; deployment {status};"
                f" tasks failed for want of heartbeats: {len(timed_out)} (the killed one: 1 expected);"
                f" other tasks retried: {others or 'none'}",
                flush=True,
            )
            since = demo.last_event_id(deployment_id)
            demo.undeploy(stack, deployment_id)
            demo.watch(deployment_id, lambda _line: None, until={"DELETE_COMPLETE", "DELETE_FAILED"}, since=since)
    finally:
        stack.stop()
    return seconds


HEARTBEAT_TIMEOUT = "Detected a task instance without a heartbeat"  # the scheduler's line for each task it fails so
NO_FAULTS = {"DODAS_LOCAL_BOOT_FAILURE_RATE": "0", "DODAS_LOCAL_API_ERROR_RATE": "0"}
MOVED_ON = {"running", "success", "deferred"}


def _scheduler_log(stack) -> list[str]:
    return (stack.logs_dir / "scheduler.out").read_text(errors="replace").splitlines()


def _task_instances(stack, dag_id: str) -> dict[str, dict]:
    """The task instances of the deployment DAG's only run, by task id."""
    runs = stack.rest.api("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]
    if not runs:
        return {}
    listed = stack.rest.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{runs[0]['dag_run_id']}/taskInstances")
    return {ti["task_id"]: ti for ti in listed["task_instances"]}


def _running_step(stack, dag_id: str, psutil) -> tuple[str, int, object]:
    """A configure/deploy task running for 3 s: its id, try number, and the LocalExecutor worker supervising it."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        for task, ti in _task_instances(stack, dag_id).items():
            started = ti.get("start_date")
            if not (task.startswith(("configure.", "deploy.")) and ti["state"] == "running" and ti.get("pid")):
                continue
            if time.time() - datetime.fromisoformat(started).timestamp() < 3:
                continue
            try:
                supervisor = psutil.Process(ti["pid"]).parent()
                if supervisor is not None and "LocalExecutor" in " ".join(supervisor.cmdline()):
                    return task, ti["try_number"], supervisor
            except psutil.Error:
                continue
        time.sleep(0.2)
    raise RuntimeError(f"no configure/deploy task of {dag_id} ran for 3 s within 900 s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=10)
    parser.add_argument("--vms-only", action="store_true", help="the 4 VMs without Spark (provisioning alone)")
    parser.add_argument("--killed-tasks", type=int, default=3, help="trials of killed_task_recovery_s (0: none)")
    parser.add_argument("--only-killed-tasks", action="store_true", help="skip completion_rate_30pct_faults")
    args = parser.parse_args()
    import logging

    from airflow.utils import db

    from dodas_tasks.clouds.local import LocalCloud

    logging.disable(logging.WARNING)
    try:
        if args.killed_tasks:
            seconds = killed_task_recovery_s(args.killed_tasks)
            print(f"figure killed_task_recovery_s = {statistics.median(seconds):.1f}  (max {max(seconds):.1f})")
        if not args.only_killed_tasks:
            db.initdb()
            template = VMS_ONLY if args.vms_only else SPARK
            completed = 0
            for number in range(1, args.deployments + 1):
                ok, outcome, elapsed = deploy_once(template)
                completed += ok
                print(f"deployment {number}: {outcome} in {elapsed:.0f} s", flush=True)
            print(f"figure completion_rate_30pct_faults = {completed / args.deployments:.2f}")
    finally:
        LocalCloud(api_error_rate=0).cleanup()


if __name__ == "__main__":
    from dodas_tasks.devstack.interrupts import exit_on_signals

    with exit_on_signals():  # SIGTERM (a time limit), SIGINT, SIGHUP: main's finally blocks stop what it started
        main()
