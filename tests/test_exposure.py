"""Expose only what must be exposed: the VMs of a deployment reach each other through one rule per deployment, the
world reaches SSH and the ports a template publishes, the shipped templates publish none, and the owner alone reads
the Spark cluster's secret. That a local Spark cluster listens on its private addresses only and refuses drivers
without that secret is shown in tests/test_deployment_dag.py, on the cluster its tests share.

Security groups are read back from moto (EC2) and the OpenStack double. The local cloud itself has no firewall (its VMs
share the host's loopback).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _api_fixtures import client, serving
from _localcloud_fixtures import poll
from _moto_fixtures import UBUNTU_AMI, AwsProxy, MotoServer, ec2_connections
from oidc_provider.fixture import running_provider

from dodas_tasks.api.app import create_app
from dodas_tasks.api.settings import ApiSettings
from dodas_tasks.clouds.base import ACTIVE, Flavor, ServerSpec
from dodas_tasks.clouds.ec2 import EC2Driver
from dodas_tasks.clouds.ec2.rules import deployment_group_name
from dodas_tasks.clouds.openstack import OpenStackCloud
from dodas_tasks.clouds.openstack.rules import internal_sg_name
from dodas_tasks.configure import generate_keypair
from dodas_tasks.deploy.framework_secrets import ensure_framework_secret
from dodas_tasks.iam import IamClient, IamConfig
from dodas_tasks.naming import key_pair_name, server_name, server_tags
from dodas_tasks.store import Store
from dodas_tasks.tosca.compiler import compile as compile_template
from tests.openstack_double import OpenStackDouble

REPO = Path(__file__).resolve().parents[1]
PUBLIC_KEY = generate_keypair(comment="exposure-test").public_openssh
WORLD = "0.0.0.0/0"
WEB = {"name": "web", "protocol": "tcp", "source": 8080, "remote_cidr": "10.1.0.0/16"}  # published to one network


def spec(deployment: str, group: str, index: int, image: str, **fields: Any) -> ServerSpec:
    return ServerSpec(
        name=server_name(deployment, group, index),
        flavor=Flavor(cpus=1, mem_mb=512),
        image=image,
        key_name=key_pair_name(deployment),
        public_key=PUBLIC_KEY,
        tags=server_tags(deployment, group, index),
        **fields,
    )


# ---------------------------------------------------------------- templates


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "templates").glob("*.yaml")))
def test_shipped_templates_publish_no_port_to_the_world(name: str) -> None:
    plan = compile_template((REPO / "templates" / name).read_text(), None, source=name)
    assert [(g.name, p.name) for g in plan.groups for p in g.ports] == []


# ---------------------------------------------------------------- EC2 (moto)


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


def ec2_world_rules(driver: EC2Driver, group_ids: Iterable[str]) -> set[tuple]:
    found = set()
    for group in driver.client.describe_security_groups(GroupIds=list(group_ids))["SecurityGroups"]:
        for perm in group["IpPermissions"]:
            for cidr in perm.get("IpRanges", []):
                found.add((perm["IpProtocol"], perm.get("FromPort"), perm.get("ToPort"), cidr["CidrIp"]))
    return found


def test_ec2_vms_of_a_deployment_share_one_self_referencing_group_and_the_world_sees_ssh(moto: MotoServer) -> None:
    driver = EC2Driver()
    image = f"aws://us-east-1/{UBUNTU_AMI}"
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    for dep in (mine, other):
        driver.import_key_pair(key_pair_name(dep), PUBLIC_KEY)
    master = driver.create_server(spec(mine, "master", 0, image, network="PUBLIC", ports=[WEB]))
    workers = [driver.create_server(spec(mine, "worker", i, image)) for i in (0, 1)]
    stranger = driver.create_server(spec(other, "worker", 0, image))

    def groups_of(server_id: str) -> dict[str, str]:
        found = driver.client.describe_instances(InstanceIds=[server_id])["Reservations"][0]["Instances"][0]
        return {g["GroupName"]: g["GroupId"] for g in found["NetworkInterfaces"][0]["Groups"]}

    shared = deployment_group_name(mine)
    ids = {s.id: groups_of(s.id) for s in (master, *workers)}
    assert {names[shared] for names in ids.values()} == {groups_of(master.id)[shared]}  # one group, every VM
    (group,) = driver.client.describe_security_groups(GroupIds=[groups_of(master.id)[shared]])["SecurityGroups"]
    rules = [
        (p["IpProtocol"], [g["GroupId"] for g in p["UserIdGroupPairs"]], p["IpRanges"]) for p in group["IpPermissions"]
    ]
    assert rules == [("-1", [group["GroupId"]], [])]  # its one rule: all traffic from its own members
    assert shared not in groups_of(stranger.id)  # another deployment's VM is not let in
    assert ec2_world_rules(driver, groups_of(master.id).values()) == {
        ("tcp", 22, 22, WORLD),
        ("tcp", 8080, 8080, "10.1.0.0/16"),
    }
    assert ec2_world_rules(driver, groups_of(workers[0].id).values()) == {("tcp", 22, 22, WORLD)}

    driver.delete_server(master.id)  # its compute group's ports go, the deployment's group stays for the workers
    names = {g["GroupName"] for g in driver.client.describe_security_groups()["SecurityGroups"]}
    assert shared in names and not [n for n in names if n.startswith(f"dodas-{mine}-master-")]
    for server in (*workers, stranger):
        driver.delete_server(server.id)
    for dep in (mine, other):
        driver.delete_key_pair(key_pair_name(dep))
        assert [r for r in driver.list_project_resources() if r.deployment == dep] == []


# ---------------------------------------------------------------- OpenStack (the double)


@pytest.fixture(scope="module")
def openstack() -> Iterator[OpenStackDouble]:
    double = OpenStackDouble().start()
    double.behaviour.build_seconds = 0.2
    double.behaviour.delete_seconds = 0.1
    os.environ["AIRFLOW_CONN_OS_EXPOSURE"] = double.connection_json("password")
    try:
        yield double
    finally:
        os.environ.pop("AIRFLOW_CONN_OS_EXPOSURE", None)
        double.stop()


def test_openstack_vms_of_a_deployment_share_one_self_referencing_group_and_the_world_sees_ssh(
    openstack: OpenStackDouble,
) -> None:
    driver = OpenStackCloud("os_exposure")
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    made = [
        driver.create_server(spec(mine, "master", 0, "ubuntu-22.04", network="PUBLIC", ports=[WEB])),
        driver.create_server(spec(mine, "worker", 0, "ubuntu-22.04")),
        driver.create_server(spec(other, "worker", 0, "ubuntu-22.04")),
    ]
    for server in made:
        poll(lambda s=server: (driver.get_server(s.id) or s).status == ACTIVE, f"{server.name} ACTIVE")
    cloud = openstack.cloud
    records = {s.name: cloud.servers[s.id] for s in made}
    shared = cloud.find_sg(internal_sg_name(mine))
    ingress = [r for r in cloud.sg_rules(shared) if r["ethertype"] == "IPv4" and r["direction"] == "ingress"]
    assert [(r["remote_group_id"], r["remote_ip_prefix"], r["protocol"]) for r in ingress] == [(shared, None, None)]
    for name, record in records.items():
        assert (shared in record.security_groups) == name.startswith(f"dodas-{mine[:8]}")

    def world(record: Any) -> set[tuple]:
        return {
            (r["protocol"], r["port_range_min"], r["port_range_max"], r["remote_ip_prefix"])
            for sg in record.security_groups
            for r in cloud.sg_rules(sg)
            if r["direction"] == "ingress" and r["remote_ip_prefix"]
        }

    assert world(records[made[0].name]) == {("tcp", 22, 22, WORLD), ("tcp", 8080, 8080, "10.1.0.0/16")}
    assert world(records[made[1].name]) == {("tcp", 22, 22, WORLD)}
    for server in made:
        driver.delete_server(server.id)
    for dep in (mine, other):
        driver.delete_key_pair(key_pair_name(dep))
    poll(lambda: openstack.inventory()["security_groups"] == 0, "the deployments' security groups gone")


# ---------------------------------------------------------------- the owner alone reads the secret (orchestrator API)


VM = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
"""


def test_only_the_owner_is_shown_the_spark_secret(tmp_path: Path) -> None:
    with running_provider(600) as provider, Store(f"sqlite:///{tmp_path / 'dodas.db'}") as store:
        iam = IamClient(IamConfig(provider.issuer, provider.client_id, provider.client_secret, audience="dodas"))
        app = create_app(store=store, iam=lambda: iam, settings=ApiSettings(admin_groups=frozenset({"admins"})))
        with serving(app) as base:
            users = {
                name: client(base, provider.login(name, aud="dodas", groups=groups))
                for name, groups in (("alice", ["cms"]), ("carol", ["cms"]), ("root", ["admins"]))
            }
            created = users["alice"].post("/deployments", json={"template": VM, "userGroup": "cms"})
            assert created.status_code == 201, created.text
            uuid_ = created.json()["uuid"]
            secret = ensure_framework_secret(store, uuid_, "spark-standalone")  # as the first deploy makes it
            assert users["alice"].get(f"/deployments/{uuid_}").json()["outputs"] == {"spark_standalone_secret": secret}
            for other in ("carol", "root"):  # a member of the shared group, an administrator: no secret
                answer = users[other].get(f"/deployments/{uuid_}")
                assert answer.status_code == 200 and secret not in answer.text
            listed = users["alice"].get("/deployments", params={"size": 100})
            assert listed.status_code == 200 and secret not in listed.text
            assert secret not in json.dumps(store.get_deployment(uuid_).outputs)
