"""Leak collection on the local cloud, through the real maintenance DAG: only what no live deployment owns goes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from dodas_tasks.clouds.base import Flavor, ServerSpec
from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.configure import generate_keypair
from dodas_tasks.deploy import service
from dodas_tasks.deploy.provision import GroupProvisioner
from dodas_tasks.naming import key_pair_name, server_tags
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
"""


def leftover(cloud: LocalCloud, deployment_id: str, index: int, public_key: str | None = None) -> str:
    public_key = public_key or generate_keypair().public_openssh
    cloud.import_key_pair(key_pair_name(deployment_id), public_key)
    spec = ServerSpec(
        f"dodas-leak-{index}",
        Flavor(1, 512),
        "img",
        key_pair_name(deployment_id),
        public_key,
        server_tags(deployment_id, "vm", index),
    )
    return cloud.create_server(spec).id


def test_leak_collector_removes_only_orphans(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    cloud = LocalCloud()
    try:
        with Store() as store:
            live = service.submit(store, PLAIN, {})
            GroupProvisioner(store, live, "vm", log=lambda _m: None).start()
            deleted = service.submit(store, PLAIN, {})
            store.set_status(deleted, DeploymentStatus.DELETE_COMPLETE)
        deleted_server = leftover(cloud, deleted, 0)
        unknown = str(uuid.uuid4())
        unknown_server = leftover(cloud, unknown, 0)
        with Store() as store:
            live_key = store.get_deployment(live).ssh_public_key
        stray_live = leftover(cloud, live, 7, live_key)  # made for the live deployment but never recorded

        dag = DagBag(dag_folder=str(REPO / "dags" / "dodas_maintenance.py")).get_dag("dodas_leak_collector")
        assert dag.test().state == "success"  # default grace: everything is too young to judge
        assert {deleted_server, unknown_server, stray_live} <= {s.id for s in cloud.list_all()}

        monkeypatch.setenv("DODAS_LEAK_GRACE_S", "0")
        assert dag.test().state == "success"
        left = {s.id for s in cloud.list_all()}
        assert left.isdisjoint({deleted_server, unknown_server, stray_live})
        with Store() as store:
            recorded = {n.cloud_id for n in store.list_nodes(live)}
            assert recorded and recorded <= left  # the live deployment keeps its VM
            keys = {r.id for r in cloud.list_project_resources() if r.kind == "key_pair"}
            assert key_pair_name(live) in keys and key_pair_name(unknown) not in keys
            assert key_pair_name(deleted) not in keys
            assert any(e.kind == "leak" for e in store.list_events(deleted, limit=100))
    finally:
        cloud.cleanup()
