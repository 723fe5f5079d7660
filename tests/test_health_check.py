"""The healing check on real local-cloud VMs, without a scheduler: what counts as lost at once, what waits its grace.

A VM the cloud reports gone or in ERROR is replaced at the first check even with the default grace (60 s), so
healing reacts within one healing interval; a VM that runs but does not answer SSH waits the grace first.
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta

import pytest

from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.deploy import service
from dodas_tasks.elastic.health import check_deployment
from dodas_tasks.elastic.settings import ElasticSettings
from dodas_tasks.store import DeploymentStatus, NodeState, Store
from tests.test_provision import PLAIN, reconcile


@pytest.fixture
def store() -> Store:
    with Store() as s:
        yield s


@pytest.fixture
def cloud() -> LocalCloud:
    cloud = LocalCloud()
    yield cloud
    cloud.cleanup()


def test_lost_vm_is_replaced_at_once_unanswering_ssh_after_the_grace(store: Store, cloud: LocalCloud) -> None:
    assert ElasticSettings().grace == 60.0  # the default this test relies on: no shortcut through the options
    deployment_id = service.submit(store, PLAIN, {"count": 3})
    reconcile(store, deployment_id)
    store.set_status(deployment_id, DeploymentStatus.CREATE_COMPLETE, "test")
    killed, deleted, silent = store.list_nodes(deployment_id)
    now = datetime.now(UTC)

    first = check_deployment(store, store.get_deployment(deployment_id), now=now, log=lambda _m: None)
    assert first.marked == [] and not first.trigger  # all three healthy

    os.kill(cloud.layout.server(killed.cloud_id).read_state()["pid"], signal.SIGKILL)  # its VM dies
    cloud.delete_server(deleted.cloud_id)  # deleted behind the service's back
    store.update_node(silent.id, ssh_port=1)  # its VM runs, but nothing answers SSH where we look

    second = check_deployment(store, store.get_deployment(deployment_id), now=now, log=lambda _m: None)
    assert sorted(second.marked) == sorted([killed.name, deleted.name]) and second.trigger
    assert store.get_node(killed.id).state == NodeState.ERROR
    assert store.get_node(killed.id).state_reason.startswith("lost: cloud says ERROR")
    assert store.get_node(deleted.id).state_reason.startswith("lost: cloud says gone")
    assert store.get_node(silent.id).state != NodeState.ERROR  # within its grace
    assert store.get_node(silent.id).unhealthy_since is not None

    later = now + timedelta(seconds=61)
    third = check_deployment(store, store.get_deployment(deployment_id), now=later, log=lambda _m: None)
    assert silent.name in third.marked
    assert store.get_node(silent.id).state_reason == "unhealthy for 61 s: SSH does not answer"
