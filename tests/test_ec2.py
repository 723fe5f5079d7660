"""The EC2 driver against moto's server over HTTP (boto3 through an Airflow `aws` connection), then a deployment DAG.

moto does not enforce limits or honour ClientToken; quota and throttling answers are injected by the proxy in
_moto_fixtures (real EC2 error XML parsed by botocore), and idempotency is the driver's own (see driver.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _moto_fixtures import UBUNTU_AMI, AwsProxy, Fault, MotoServer, ec2_connections

from dodas_tasks.clouds import (
    ACTIVE,
    CloudError,
    Flavor,
    QuotaExceeded,
    ServerSpec,
    get_driver,
)
from dodas_tasks.clouds.ec2 import EC2Driver
from dodas_tasks.clouds.ec2.rules import deployment_group_name
from dodas_tasks.configure import generate_keypair
from dodas_tasks.naming import (
    TAG_DEPLOYMENT,
    TAG_GROUP,
    TAG_INDEX,
    key_pair_name,
    server_name,
    server_tags,
)

REPO = Path(__file__).resolve().parents[1]
PUBLIC_KEY = generate_keypair(comment="ec2-test").public_openssh


@dataclass(frozen=True)
class VolumeSpec(ServerSpec):
    """The proposed ServerSpec extension: BlockStorage volumes of the group (here as plain dicts)."""

    volumes: list = field(default_factory=list)


def spec(deployment: str, index: int = 0, group: str = "vm", **changes: Any) -> VolumeSpec:
    values: dict[str, Any] = {
        "name": server_name(deployment, group, index),
        "flavor": Flavor(cpus=1, mem_mb=512),
        "image": f"aws://us-east-1/{UBUNTU_AMI}",
        "key_name": key_pair_name(deployment),
        "public_key": PUBLIC_KEY,
        "tags": server_tags(deployment, group, index),
        **changes,
    }
    return VolumeSpec(**values)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def aws_proxy(moto: MotoServer) -> Iterator[AwsProxy]:
    proxy = AwsProxy(moto.url).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def connections(moto: MotoServer, aws_proxy: AwsProxy) -> Iterator[dict[str, str]]:
    with ec2_connections(moto, aws_proxy) as conns:
        yield conns


@pytest.fixture
def driver(connections: dict[str, str]) -> EC2Driver:
    made = get_driver("ec2")  # the registry finds it; the connection comes from DODAS_EC2_CONN_ID
    assert isinstance(made, EC2Driver) and made.conn_id == connections["direct"]
    return made


@pytest.fixture
def proxied(connections: dict[str, str], aws_proxy: AwsProxy) -> EC2Driver:
    aws_proxy.reset()
    return EC2Driver(aws_conn_id=connections["proxy"])


def instance(driver: EC2Driver, server_id: str) -> dict[str, Any]:
    return driver.client.describe_instances(InstanceIds=[server_id])["Reservations"][0]["Instances"][0]


def leftovers(driver: EC2Driver, deployment: str) -> list[tuple[str, str]]:
    return [(r.kind, r.id) for r in driver.list_project_resources() if r.deployment == deployment]


def test_lifecycle_with_tags_volumes_and_nothing_left(driver: EC2Driver) -> None:
    dep = str(uuid.uuid4())
    driver.import_key_pair(f"dodas-{dep}", PUBLIC_KEY)
    volumes = [{"name": "data", "size_gb": 10}, {"name": "scratch", "size_gb": 2.5, "volume_type": "gp2"}]
    made = [driver.create_server(spec(dep, i, volumes=volumes, flavor=Flavor(1, 512, disk_gb=40))) for i in (0, 1)]
    assert {s.tags[TAG_INDEX] for s in made} == {"0", "1"} and made[0].name == f"dodas-{dep[:8]}-vm-0"
    listed = driver.list_servers({TAG_DEPLOYMENT: dep, TAG_GROUP: "vm"})
    assert {s.id for s in listed} == {s.id for s in made}
    assert driver.list_servers({TAG_DEPLOYMENT: dep, TAG_INDEX: "1"})[0].id == made[1].id
    server = driver.get_server(made[0].id)
    assert server and server.status == ACTIVE and server.private_ip and server.public_ip is None  # PRIVATE
    disks = {
        m["DeviceName"]: driver.client.describe_volumes(VolumeIds=[m["Ebs"]["VolumeId"]])["Volumes"][0]
        for m in instance(driver, made[0].id)["BlockDeviceMappings"]
    }
    assert {d: v["Size"] for d, v in disks.items()} == {"/dev/sda1": 40, "/dev/sdf": 10, "/dev/sdg": 3}
    assert {t["Key"]: t["Value"] for t in disks["/dev/sdf"]["Tags"]}[TAG_DEPLOYMENT] == dep
    kinds = sorted(kind for kind, _ in leftovers(driver, dep))
    assert kinds == ["instance"] * 2 + ["key_pair"] + ["security_group"] * 2 + ["volume"] * 6  # ports, deployment

    for server in made:
        driver.delete_server(server.id)
    driver.delete_server(made[0].id)  # twice: not an error
    driver.delete_key_pair(f"dodas-{dep}")
    assert driver.list_servers({TAG_DEPLOYMENT: dep}) == []
    assert leftovers(driver, dep) == []
    assert driver.get_server("i-0123456789abcdef0") is None


def test_quota_room_is_the_accounts_max_instances_less_those_running(driver: EC2Driver) -> None:
    """What a deployment is checked against before any VM is created (issue 16); moto's account allows 20."""
    dep = str(uuid.uuid4())
    before = driver.quota_room()
    driver.import_key_pair(f"dodas-{dep}", PUBLIC_KEY)
    made = driver.create_server(spec(dep, 0))
    after = driver.quota_room()
    assert after.servers == before.servers - 1 and after.cores is None
    assert after.source.startswith("EC2 max-instances 20, ")
    driver.delete_server(made.id)
    driver.delete_key_pair(f"dodas-{dep}")
    assert driver.quota_room().servers == before.servers


def test_retried_create_makes_one_instance_and_dead_slots_get_a_new_token(driver: EC2Driver) -> None:
    dep = str(uuid.uuid4())
    driver.import_key_pair(f"dodas-{dep}", PUBLIC_KEY)
    first = driver.create_server(spec(dep))
    again = EC2Driver().create_server(spec(dep))  # a retry from a fresh driver in the same process
    assert again.id == first.id and len(driver.list_servers({TAG_DEPLOYMENT: dep})) == 1
    token = instance(driver, first.id)["ClientToken"]
    assert token.startswith("dodas-") and len(token) <= 64
    driver.delete_server(first.id)
    reborn = driver.create_server(spec(dep))  # scale down then up: the slot gets a new, live instance
    assert reborn.id != first.id and reborn.status != "DELETED"
    attempt = driver.create_server(spec(dep, tags={**spec(dep).tags, "dodas:attempt": "1"}))
    assert instance(driver, attempt.id)["ClientToken"] != instance(driver, reborn.id)["ClientToken"]
    for server in driver.list_servers({TAG_DEPLOYMENT: dep}):
        driver.delete_server(server.id)
    driver.delete_key_pair(f"dodas-{dep}")
    assert leftovers(driver, dep) == []


def test_security_group_from_ports_and_public_ip(driver: EC2Driver) -> None:
    dep = str(uuid.uuid4())
    ports = [
        {"name": "web", "protocol": "tcp", "source": 8080, "remote_cidr": "10.0.0.0/8"},
        {"name": "range", "protocol": "udp", "source_range": [9000, 9100], "remote_cidr": "0.0.0.0/0"},
    ]
    a = driver.create_server(spec(dep, 0, network="PUBLIC", ports=ports))
    b = driver.create_server(spec(dep, 1, network="PUBLIC", ports=list(reversed(ports))))
    assert a.public_ip and b.public_ip
    nics = [instance(driver, s.id)["NetworkInterfaces"][0] for s in (a, b)]
    groups = {g["GroupId"] for nic in nics for g in nic["Groups"] if g["GroupName"] != deployment_group_name(dep)}
    assert len(groups) == 1, "one security group per deployment, group and port set"
    (group,) = driver.client.describe_security_groups(GroupIds=list(groups))["SecurityGroups"]
    rules = {
        (p["IpProtocol"], p["FromPort"], p["ToPort"], r["CidrIp"])
        for p in group["IpPermissions"]
        for r in p["IpRanges"]
    }
    assert rules == {("tcp", 22, 22, "0.0.0.0/0"), ("tcp", 8080, 8080, "10.0.0.0/8"), ("udp", 9000, 9100, "0.0.0.0/0")}
    assert group["GroupName"].startswith(f"dodas-{dep}-vm-")
    driver.delete_server(a.id)
    assert driver.client.describe_security_groups(GroupIds=list(groups))["SecurityGroups"], "b still uses it"
    driver.delete_server(b.id)
    assert leftovers(driver, dep) == []


def test_flavour_choice_and_bad_sizes_create_nothing(driver: EC2Driver) -> None:
    dep = str(uuid.uuid4())
    small = driver.create_server(spec(dep, 0, flavor=Flavor(1, 512)))
    named = driver.create_server(spec(dep, 1, flavor=Flavor(1, 512, instance_type="m5.large")))
    fit = driver.create_server(spec(dep, 2, flavor=Flavor(3, 6000)))
    chosen = {s.id: instance(driver, s.id)["InstanceType"] for s in (small, named, fit)}
    assert (chosen[small.id], chosen[named.id]) == ("t2.nano", "m5.large")
    types = driver.client.describe_instance_types(InstanceTypes=[chosen[fit.id]])["InstanceTypes"][0]
    assert types["VCpuInfo"]["DefaultVCpus"] >= 3 and types["MemoryInfo"]["SizeInMiB"] >= 6000
    with pytest.raises(CloudError, match=r"no instance type 'x9\.huge'"):
        driver.create_server(spec(dep, 3, flavor=Flavor(1, 512, instance_type="x9.huge")))
    with pytest.raises(CloudError, match="is in region eu-west-1"):
        driver.create_server(spec(dep, 3, image="aws://eu-west-1/ami-1e749f67"))
    with pytest.raises(CloudError, match="needs a size"):
        driver.create_server(spec(dep, 3, volumes=[{"name": "data"}]))
    assert len(driver.list_servers({TAG_DEPLOYMENT: dep})) == 3
    for server in (small, named, fit):
        driver.delete_server(server.id)
    assert leftovers(driver, dep) == []


def test_key_pair_import_is_idempotent(driver: EC2Driver) -> None:
    name = f"dodas-{uuid.uuid4()}"
    driver.import_key_pair(name, PUBLIC_KEY)
    driver.import_key_pair(name, PUBLIC_KEY + " other-comment")
    with pytest.raises(CloudError, match="different public key"):
        driver.import_key_pair(name, generate_keypair().public_openssh)
    driver.delete_key_pair(name)
    driver.delete_key_pair(name)
    assert not [r for r in driver.list_project_resources() if r.id == name]
    with pytest.raises(CloudError, match="'dodas_missing' is not defined"):
        EC2Driver(aws_conn_id="dodas_missing").list_servers({})


def test_quota_throttling_and_server_errors_are_mapped(proxied: EC2Driver, aws_proxy: AwsProxy) -> None:
    dep = str(uuid.uuid4())
    limit = (
        "You have requested more vCPU capacity than your current vCPU limit of 32 allows for the instance "
        "bucket that the specified instance type belongs to."
    )
    aws_proxy.faults.append(Fault("RunInstances", "VcpuLimitExceeded", limit))
    with pytest.raises(QuotaExceeded, match="vCPU limit of 32") as info:
        proxied.create_server(spec(dep))
    assert info.value.retryable is False
    aws_proxy.faults.append(Fault("RunInstances", "InstanceLimitExceeded", "Your quota allows for 0 more running"))
    with pytest.raises(QuotaExceeded, match="InstanceLimitExceeded: Your quota allows for 0 more"):
        proxied.create_server(spec(dep))
    aws_proxy.faults.append(Fault("DescribeInstances", "RequestLimitExceeded", "Request limit exceeded.", 503, 2))
    with pytest.raises(CloudError) as throttled:
        proxied.list_servers({TAG_DEPLOYMENT: dep})
    assert throttled.value.retryable and not isinstance(throttled.value, QuotaExceeded)
    aws_proxy.faults.append(Fault("DescribeInstances", "InternalError", "An internal error has occurred", 500))
    assert proxied.list_servers({TAG_DEPLOYMENT: dep}) == []  # botocore's one quick retry absorbs a single 5xx
    aws_proxy.faults.append(Fault("TerminateInstances", "UnauthorizedOperation", "You are not authorized"))
    server = proxied.create_server(spec(dep))
    with pytest.raises(CloudError, match="check the credentials") as denied:
        proxied.delete_server(server.id)
    assert not denied.value.retryable
    proxied.delete_server(server.id)
    assert leftovers(proxied, dep) == []
    assert aws_proxy.calls["RunInstances"] == 3


@pytest.mark.slow
def test_deployment_dag_deploys_scales_and_undeploys_on_ec2(connections: dict[str, str], airflow_db: None) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from dodas_tasks.deploy import service
    from dodas_tasks.naming import deployment_dag_id
    from dodas_tasks.store import DeploymentStatus, NodeState, Store

    template = f"""
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  inputs:
    count: {{type: integer, default: 3}}
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
      capabilities:
        endpoint:
          properties:
            network_name: PUBLIC
            ports:
              web: {{protocol: tcp, source: 8080}}
        scalable: {{properties: {{count: {{get_input: count}}}}}}
        host: {{properties: {{num_cpus: 1, mem_size: 512 MB}}}}
        os: {{properties: {{image: "aws://us-east-1/{UBUNTU_AMI}"}}}}
"""
    driver = EC2Driver()

    def run(deployment_id: str) -> str:
        dag = DagBag(dag_folder=str(REPO / "dags" / "dodas.py")).get_dag(deployment_dag_id(deployment_id))
        result = dag.test()
        with Store() as store:
            dep = store.get_deployment(deployment_id)
        assert result.state == "success", dep.status_reason
        return dep.status

    with Store() as store:
        deployment_id = service.submit(store, template, {}, cloud="ec2")
    assert run(deployment_id) == DeploymentStatus.CREATE_COMPLETE
    servers = driver.list_servers({TAG_DEPLOYMENT: deployment_id})
    assert len(servers) == 3 and all(s.public_ip for s in servers)

    with Store() as store:
        service.request_scale(store, deployment_id, "vm", 5)
    assert run(deployment_id) == DeploymentStatus.UPDATE_COMPLETE
    with Store() as store:
        nodes = store.list_nodes(deployment_id)
    servers = driver.list_servers({TAG_DEPLOYMENT: deployment_id})
    assert sorted(int(s.tags[TAG_INDEX]) for s in servers) == list(range(5))
    assert {n.cloud_id for n in nodes} == {s.id for s in servers} and {n.state for n in nodes} == {NodeState.CREATED}

    with Store() as store:
        service.request_undeploy(store, deployment_id)
    assert run(deployment_id) == DeploymentStatus.DELETE_COMPLETE
    assert leftovers(driver, deployment_id) == []
