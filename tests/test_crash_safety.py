"""Crash safety: a provisioning process killed mid-way leaves servers the next run adopts, never duplicates."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.deploy import service
from dodas_tasks.naming import TAG_INDEX, deployment_dag_id, deployment_tags
from dodas_tasks.store import DeploymentStatus, NodeState, Store

REPO = Path(__file__).resolve().parents[1]
PLAIN = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  inputs:
    count: {type: integer, default: 6}
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: {get_input: count}}}
        host: {properties: {num_cpus: 1, mem_size: 512 MB}}
"""

pytestmark = pytest.mark.slow


def provision_forever(deployment_id: str, env: dict[str, str]) -> None:
    """The 'worker' that gets killed: provisions the group (slowly: injected API latency keeps it mid-way)."""
    os.environ.update(env)
    from dodas_tasks.deploy.provision import GroupProvisioner

    with Store() as store:
        GroupProvisioner(store, deployment_id, "vm").start()
    time.sleep(3600)


def poll(condition, deadline_s: float = 120, what: str = "condition"):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_provisioning_is_adopted_by_the_next_run(airflow_db: None) -> None:
    cloud = LocalCloud()
    try:
        with Store() as store:
            deployment_id = service.submit(store, PLAIN, {"count": 6})
        tags = deployment_tags(deployment_id)
        env = {k: os.environ[k] for k in ("DODAS_HOME", "AIRFLOW_HOME")}
        worker = multiprocessing.get_context("spawn").Process(target=provision_forever, args=(deployment_id, env))
        worker.start()
        try:
            poll(lambda: cloud.list_servers(tags), what="the first server")
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.join()
        before = cloud.list_servers(tags)
        assert 1 <= len(before) <= 6

        from airflow.dag_processing.dagbag import DagBag

        run = DagBag(dag_folder=str(REPO / "dags" / "dodas.py")).get_dag(deployment_dag_id(deployment_id)).test()
        with Store() as store:
            dep = store.get_deployment(deployment_id)
            assert run.state == "success", dep.status_reason
            assert dep.status == DeploymentStatus.CREATE_COMPLETE
            nodes = store.list_nodes(deployment_id)
            servers = cloud.list_servers(tags)
            assert sorted(int(s.tags[TAG_INDEX]) for s in servers) == list(range(6))  # no duplicate slot
            assert {n.cloud_id for n in nodes} == {s.id for s in servers}  # every server recorded, none leaked
            assert {n.state for n in nodes} == {NodeState.CREATED}
            assert {s.id for s in before} & {s.id for s in servers}, "servers made before the kill were not kept"
    finally:
        cloud.cleanup()


def provision_once(deployment_id: str, env: dict[str, str]) -> None:
    """One provisioning pass, as a worker runs it (killed at a random moment by the test)."""
    os.environ.update(env)
    from dodas_tasks.deploy.provision import GroupProvisioner

    with Store() as store:
        GroupProvisioner(store, deployment_id, "vm").start()


def test_twenty_random_kills_leave_no_duplicate_and_no_leak() -> None:
    import random

    from dodas_tasks.deploy.provision import GroupProvisioner

    cloud = LocalCloud(api_error_rate=0.0)
    rng = random.Random(20)
    try:
        with Store() as store:
            deployment_id = service.submit(store, PLAIN, {"count": 6})
        tags = deployment_tags(deployment_id)
        env = {k: os.environ[k] for k in ("DODAS_HOME", "AIRFLOW_HOME")}
        env["DODAS_LOCAL_API_ERROR_RATE"] = "0.3"  # a flaky API too, so kills land mid-retry as well
        spawn = multiprocessing.get_context("spawn")
        for _ in range(20):
            worker = spawn.Process(target=provision_once, args=(deployment_id, env))
            worker.start()
            started = time.monotonic()
            kill_after = rng.uniform(0.5, 4.0)  # interpreter start-up included: some die before, some mid-way
            while worker.is_alive() and time.monotonic() - started < kill_after:
                time.sleep(0.05)
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGKILL)
            worker.join()
        with Store() as store:
            final = GroupProvisioner(store, deployment_id, "vm", log=lambda _m: None)
            progress = final.start()
            poll(lambda: "BUILD" not in final.poll(progress.pending).values(), what="servers to boot")
            final.finish(progress.pending)
            nodes = store.list_nodes(deployment_id)
        servers = cloud.list_servers(tags)
        assert sorted(int(s.tags[TAG_INDEX]) for s in servers) == list(range(6))  # no duplicate slot
        assert {n.cloud_id for n in nodes} == {s.id for s in servers}  # none leaked, none lost
        assert {n.state for n in nodes} == {NodeState.CREATED}
    finally:
        cloud.cleanup()
