"""The deployment's SSH route: the front-end named by the template (or the submit option) is the jump host of the
other VMs, on the real embedded local cloud, for scripts, banners and forwarded ports alike."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from dodas_tasks.clouds import CloudError
from dodas_tasks.clouds.local import LocalCloud
from dodas_tasks.configure import NodeUnreachable
from dodas_tasks.deploy import service
from dodas_tasks.deploy.components import Deployer
from dodas_tasks.deploy.provision import GroupProvisioner
from dodas_tasks.deploy.ssh_access import SshAccess, jump_group
from dodas_tasks.frameworks.base import Node, Script
from dodas_tasks.store import NodeState, Store
from dodas_tasks.tosca.compiler import compile as compile_template
from dodas_tasks.tosca.errors import DodasTemplateError

pytestmark = pytest.mark.slow

FRONTED = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  node_templates:
    front:
      type: tosca.nodes.indigo.Compute
      capabilities:
        endpoint: {properties: {network_name: PUBLIC}}
    wn:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: 2}}
  policies:
    - front_end_is_the_bastion:
        type: tosca.policies.indigo.dodas.SshJumpHost
        targets: [ front ]
"""
NO_POLICY = FRONTED[: FRONTED.index("  policies:")]


@pytest.fixture
def store() -> Store:
    with Store() as s:
        yield s


@pytest.fixture
def cloud() -> LocalCloud:
    cloud = LocalCloud()
    yield cloud
    cloud.cleanup()


def provision(store: Store, deployment_id: str, group: str) -> None:
    """One provisioning pass of the group, as the DAG's task does it (polling the cloud with a deadline)."""
    provisioner = GroupProvisioner(store, deployment_id, group, log=lambda _m: None)
    progress = provisioner.start()
    deadline = time.monotonic() + 120
    while progress.pending and "BUILD" in provisioner.poll(progress.pending).values():
        assert time.monotonic() < deadline, "servers never left BUILD"
        time.sleep(0.05)
    provisioner.finish(progress.pending)


def test_the_template_names_the_jump_host_and_the_option_does_when_it_does_not() -> None:
    assert [g.name for g in compile_template(FRONTED).groups if g.ssh_jump_host] == ["front"]
    assert not any(g.ssh_jump_host for g in compile_template(NO_POLICY).groups)
    two = FRONTED.replace("targets: [ front ]", "targets: [ front, wn ]")
    with pytest.raises(DodasTemplateError, match="targets exactly one Compute node"):
        compile_template(two)


def test_the_option_is_checked_at_submission(store: Store) -> None:
    deployment_id = service.submit(store, NO_POLICY, {}, options={"ssh_jump_group": "front"})
    assert jump_group(store.get_deployment(deployment_id)) == "front"
    with pytest.raises(DodasTemplateError, match="ssh_jump_group='gateway' is not a Compute node"):
        service.submit(store, NO_POLICY, {}, options={"ssh_jump_group": "gateway"})


def test_vms_behind_the_front_end_are_configured_probed_and_reached_through_it(store: Store, cloud: LocalCloud) -> None:
    deployment_id = service.submit(store, FRONTED, {})
    provision(store, deployment_id, "front")
    provision(store, deployment_id, "wn")
    (front,) = store.list_nodes(deployment_id, group="front")
    workers = store.list_nodes(deployment_id, group="wn")
    access = SshAccess(store, deployment_id)
    assert access.route(front) == ()  # the front-end itself is reached straight
    (hop,) = access.route(workers[0])
    assert (hop.host, hop.port, hop.name) == (front.public_ip, front.ssh_port, front.name)

    lines: list[str] = []
    deployer = Deployer(store, deployment_id, log=lines.append)
    for worker in workers:
        node = Node(name=worker.name, ip=worker.private_ip or "")
        result = deployer.run(node, Script("who", {}, 'echo "$DODAS_NODE_ID"'))
        assert (result.exit_status, result.stdout.strip()) == (0, worker.cloud_id)
    assert sum(f"via jump host {front.name} ({front.public_ip}:{front.ssh_port})" in line for line in lines) == 2
    pinned = store.get_deployment(deployment_id).known_hosts
    assert {f"{n.private_ip}:{n.ssh_port}" for n in [front, *workers]} <= set(pinned)

    assert access.ssh_answers([front, *workers]) == {n.id: True for n in [front, *workers]}
    # a web server on a worker, read from here through a port forwarded via the front-end (as Spark's web UI is)
    worker = workers[0]
    serve = f"nohup python -m http.server --bind {worker.private_ip} 8765 >web.log 2>&1 &\necho started"
    deployer.run(Node(name=worker.name, ip=worker.private_ip or ""), Script("web", {}, serve))
    with access.forwarded(worker, 8765) as (host, port):
        assert host == "127.0.0.1"  # a port of this process, not the worker's address

        def listing() -> bool:
            try:
                return httpx.get(f"http://{host}:{port}/", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        deadline = time.monotonic() + 60
        while not listing():
            assert time.monotonic() < deadline, "the worker's web server never answered through the tunnel"
            time.sleep(0.1)

    # the front-end out of service: what sits behind it cannot be told, and is not blamed
    store.update_node(front.id, state=NodeState.ERROR, state_reason="test: front-end lost")
    assert access.ssh_answers(workers) == {n.id: None for n in workers}
    with pytest.raises(NodeUnreachable, match=r"front-end of group 'front'.*no ready VM"):
        access.route(workers[0])


def test_a_site_sets_its_bastion_in_the_cloud_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from dodas_tasks.clouds import get_driver
    from dodas_tasks.clouds.base import SshGateway, gateway_from_extra

    bastion = {"host": "bastion.example.org", "port": 2022, "username": "centos", "host_key": "ssh-ed25519 AAAA"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_SITE_OS",
        json.dumps(
            {
                "conn_type": "openstack",
                "host": "https://keystone.example.org:5000/v3",
                "extra": {"auth_type": "v3oidcaccesstoken", "dodas_ssh_bastion": bastion},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SITE_AWS",
        json.dumps({"conn_type": "aws", "extra": {"region_name": "eu-west-1", "dodas_ssh_bastion": {"host": "b"}}}),
    )
    expected = SshGateway("bastion.example.org", 2022, "centos", "ssh-ed25519 AAAA")
    # read without authenticating: no token provider, no password, nothing listening at the Keystone URL
    assert get_driver("openstack", openstack_conn_id="site_os").ssh_gateway() == expected
    assert get_driver("ec2", aws_conn_id="site_aws").ssh_gateway() == SshGateway("b")
    assert get_driver("local").ssh_gateway() is None  # the embedded local cloud's VMs are reached directly
    with pytest.raises(CloudError, match="must be an object with at least"):
        gateway_from_extra({"dodas_ssh_bastion": "bastion.example.org"}, "site")
    with pytest.raises(CloudError, match=r"unknown key\(s\) \['hots'\]"):
        gateway_from_extra({"dodas_ssh_bastion": {"host": "b", "hots": "x"}}, "site")
