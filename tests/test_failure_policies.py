"""When VMs fail: backfill (retry them), keep what runs, roll back, or fail over to the next cloud."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _moto_fixtures import AwsProxy, MotoServer, ec2_connections

from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.deploy import service
from dodas_tasks.deploy.provision import GroupProvisioner, ProvisioningFailed
from dodas_tasks.naming import deployment_dag_id, deployment_tags
from dodas_tasks.store import DeploymentStatus, NodeState, Store

REPO = Path(__file__).resolve().parents[1]
PLAIN = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  inputs:
    count: {type: integer, default: 4}
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: {get_input: count}}}
        host: {properties: {num_cpus: 1, mem_size: 512 MB}}
"""


@pytest.fixture
def store() -> Iterator[Store]:
    with Store() as s:
        yield s


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    cloud = LocalCloud()
    yield cloud
    cloud.cleanup()


def boot_with_two_crashes(store: Store, cloud: LocalCloud, deployment_id: str) -> GroupProvisioner:
    """Start 4 VMs (8 s boot), kill two node servers while they boot: two real boot failures."""
    provisioner = GroupProvisioner(store, deployment_id, "vm", log=lambda _m: None)
    progress = provisioner.start()
    for node in store.list_nodes(deployment_id)[:2]:
        os.kill(cloud.layout.server(node.cloud_id).read_state()["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 120
    while "BUILD" in provisioner.poll(progress.pending).values():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return provisioner


def test_backfill_names_the_failed_vms_then_replaces_them(
    store: Store, cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DODAS_LOCAL_BOOT_DELAY", "8")
    deployment_id = service.submit(store, PLAIN, {})
    provisioner = boot_with_two_crashes(store, cloud, deployment_id)
    pending = [n.id for n in store.list_nodes(deployment_id)]
    with pytest.raises(ProvisioningFailed) as failed:
        provisioner.finish(pending)
    broken = [n for n in store.list_nodes(deployment_id) if n.state == NodeState.ERROR]
    assert len(broken) == 2 and all(n.name in str(failed.value) for n in broken)
    monkeypatch.setenv("DODAS_LOCAL_BOOT_DELAY", "0")
    retry = GroupProvisioner(store, deployment_id, "vm", log=lambda _m: None)  # what the task's retry does
    progress = retry.start()
    deadline = time.monotonic() + 120
    while "BUILD" in retry.poll(progress.pending).values():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    retry.finish(progress.pending)
    assert {n.state for n in store.list_nodes(deployment_id)} == {NodeState.CREATED}
    assert len(cloud.list_servers(deployment_tags(deployment_id))) == 4


def test_keep_accepts_a_partial_group_above_min_ready(
    store: Store, cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DODAS_LOCAL_BOOT_DELAY", "8")
    deployment_id = service.submit(store, PLAIN, {}, options={"on_partial": "keep", "min_ready": 0.5})
    provisioner = boot_with_two_crashes(store, cloud, deployment_id)
    ready = provisioner.finish([n.id for n in store.list_nodes(deployment_id)])
    assert len(ready) == 2
    assert store.get_deployment(deployment_id).desired_counts == {"vm": 2}
    assert len(cloud.list_servers(deployment_tags(deployment_id))) == 2  # the failed ones were deleted
    assert any(e.kind == "partial" for e in store.list_events(deployment_id, limit=100))


WITH_POLICY = (
    PLAIN
    + """
  policies:
    - all_or_nothing:
        type: tosca.policies.indigo.dodas.Provisioning
        targets: [ vm ]
        properties: {on_partial: rollback}
"""
)


def test_rollback_from_the_templates_policy_deletes_the_group(
    store: Store, cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DODAS_LOCAL_BOOT_DELAY", "8")
    deployment_id = service.submit(store, WITH_POLICY, {}, options={"on_partial": "keep"})  # the template wins
    provisioner = boot_with_two_crashes(store, cloud, deployment_id)
    with pytest.raises(ProvisioningFailed, match="rolled back") as failed:
        provisioner.finish([n.id for n in store.list_nodes(deployment_id)])
    assert "2 VM(s) failed" in str(failed.value)
    assert cloud.list_servers(deployment_tags(deployment_id)) == []
    assert store.list_nodes(deployment_id) == []


def test_an_unknown_on_partial_in_the_template_is_refused_at_compile_time() -> None:
    from dodas_tasks.tosca.compiler import compile as compile_plan
    from dodas_tasks.tosca.errors import DodasTemplateError

    with pytest.raises(DodasTemplateError) as refused:
        compile_plan(WITH_POLICY.replace("on_partial: rollback", "on_partial: retry"), {})
    assert "retry" in refused.value.report() and "on_partial" in refused.value.report()


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    proxy = AwsProxy(server.url).start()
    try:
        with ec2_connections(server, proxy):
            yield server
    finally:
        proxy.stop()
        server.stop()


@pytest.mark.slow
def test_over_quota_cloud_fails_over_to_the_next_and_leaves_nothing_behind(
    moto: MotoServer, airflow_db: None, store: Store, cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from dodas_tasks.clouds import get_driver

    monkeypatch.setenv("DODAS_LOCAL_MAX_SERVERS", "2")  # the local cloud's quota: 2 VMs, the template wants 4
    deployment_id = service.submit(store, PLAIN, {}, failover_clouds=["ec2"])
    dag = DagBag(dag_folder=str(REPO / "dags" / "dodas.py")).get_dag(deployment_dag_id(deployment_id))
    first = dag.test()
    dep = store.get_deployment(deployment_id)
    assert first.state == "failed"
    assert dep.cloud == "ec2" and dep.status == DeploymentStatus.CREATE_IN_PROGRESS
    assert "failing over from local to ec2" in (dep.status_reason or "") and "quota" in dep.status_reason.lower()
    assert cloud.list_servers(deployment_tags(deployment_id)) == []  # the first cloud was cleaned
    second = dag.test()  # the run the failover task queued
    dep = store.get_deployment(deployment_id)
    assert second.state == "success" and dep.status == DeploymentStatus.CREATE_COMPLETE, dep.status_reason
    ec2 = get_driver("ec2")
    assert len(ec2.list_servers(deployment_tags(deployment_id))) == 4
    service.request_undeploy(store, deployment_id)
    assert dag.test().state == "success"
    assert ec2.list_servers(deployment_tags(deployment_id)) == []
    assert [r for r in ec2.list_project_resources() if r.deployment == deployment_id] == []
