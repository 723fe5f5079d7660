"""The cluster view: a compiled plan and the store's node records give each framework its nodes by role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dodas_tasks.frameworks.base import Node
from dodas_tasks.frameworks.cluster_view import cluster_of, framework_names, framework_of_group, ready_nodes
from dodas_tasks.store import NodeState, Store
from dodas_tasks.tosca.compiler import compile

REPO = Path(__file__).resolve().parents[1]
MASTER, WORKER = "spark-master-server", "spark-worker-server"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        yield opened


def test_ready_nodes_with_an_address_hold_their_components_roles(store: Store) -> None:
    plan = compile((REPO / "templates" / "spark_local.yaml").read_text(), {"worker_cpus": 4, "worker_mem": "2 GB"})
    deployment_id = store.create_deployment(
        template="-", plan=plan, owner_subject="alice", owner_issuer="iss", ssh_private_key="k", ssh_public_key="p"
    )
    states = {
        (MASTER, 0): (NodeState.STARTED, "127.0.9.1"),
        (WORKER, 0): (NodeState.CONFIGURED, "127.0.9.2"),
        (WORKER, 1): (NodeState.CREATED, "127.0.9.3"),
        (WORKER, 2): (NodeState.ERROR, "127.0.9.4"),  # failed: not counted on
        (WORKER, 3): (NodeState.CREATING, None),  # no address yet
    }
    names = {}
    for (group, index), (state, ip) in states.items():
        names[group, index] = store.upsert_node(deployment_id, group, index, state=state, private_ip=ip).name
    nodes = store.list_nodes(deployment_id)
    record = store.get_deployment(deployment_id)

    assert {n.name for n in ready_nodes(nodes)} == {names[k] for k in [(MASTER, 0), (WORKER, 0), (WORKER, 1)]}
    assert framework_names(record.plan) == ["spark-standalone"]
    assert framework_of_group(record.plan, WORKER) == "spark-standalone"
    assert framework_of_group(record.plan, "no-such-group") is None
    cluster = cluster_of(record.plan, nodes, "spark-standalone")
    assert cluster.single("master") == Node(names[MASTER, 0], "127.0.9.1", cpus=1, memory_mb=1024)
    assert sorted(cluster.nodes("worker"), key=lambda n: n.ip) == [
        Node(names[WORKER, 0], "127.0.9.2", cpus=4, memory_mb=2048),
        Node(names[WORKER, 1], "127.0.9.3", cpus=4, memory_mb=2048),
    ]
    assert cluster_of(record.plan, nodes, "mesos").roles == {}
