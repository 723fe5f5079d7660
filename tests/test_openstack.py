"""The OpenStack driver with unmodified openstacksdk against the HTTP double (tests/openstack_double/): auth modes,
servers with tags, security groups, floating IPs, volumes, flavours, quotas, injected faults, leak listing, and
the deployment DAG deploying and undeploying on it."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dodas_tasks.clouds.base import (
    ACTIVE,
    DEFAULT_CONCURRENCY,
    ERROR,
    CloudError,
    Flavor,
    QuotaExceeded,
    ServerSpec,
    get_driver,
)
from dodas_tasks.clouds.openstack import OpenStackCloud
from dodas_tasks.naming import (
    TAG_DEPLOYMENT,
    TAG_GROUP,
    key_pair_name,
    server_name,
    server_tags,
)
from tests.openstack_double import IMAGES, OpenStackDouble

REPO = Path(__file__).resolve().parents[1]
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx0Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWpr test"
OIDC_TOKEN = "valid-oidc-access-token"
EMPTY = {"servers": 0, "ports": 0, "floating_ips": 0, "volumes": 0, "security_groups": 0, "key_pairs": 0}


def poll(condition: Callable[[], object], what: str, deadline_s: float = 60.0) -> object:
    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def double() -> Iterator[OpenStackDouble]:
    """One double for the module, with one Airflow connection per auth mode (env AIRFLOW_CONN_*)."""
    cloud = OpenStackDouble().start()
    cloud.behaviour.build_seconds = 0.5
    cloud.behaviour.delete_seconds = 0.2
    names = {
        "AIRFLOW_CONN_OS_PASSWORD": cloud.connection_json("password", default_image="ubuntu-22.04"),
        "AIRFLOW_CONN_OS_APPCRED": cloud.connection_json("appcred"),
        "AIRFLOW_CONN_OS_OIDC": cloud.connection_json("oidc"),
        "AIRFLOW_CONN_OS_SHORT": cloud.connection_json("password", timeout=0.5),
        "AIRFLOW_CONN_OS_BADPASS": cloud.connection_json("password").replace("secret-password", "wrong"),
    }
    os.environ.update(names)
    yield cloud
    for name in names:
        os.environ.pop(name, None)
    cloud.stop()


@pytest.fixture(autouse=True)
def calm(double: OpenStackDouble) -> Iterator[None]:
    """Every test starts and ends without injected faults or quotas."""
    yield
    double.faults.error_rate = 0.0
    double.faults.latency.clear()
    for resource in ("instances", "cores", "ram", "floatingip", "volumes", "gigabytes"):
        setattr(double.quotas, resource, -1)
    double.behaviour.boot_error_names = None


@pytest.fixture(scope="module")
def driver(double: OpenStackDouble) -> OpenStackCloud:
    return OpenStackCloud("os_password")


def make_spec(deployment: str, group: str = "vm", index: int = 0, **fields: object) -> ServerSpec:
    values: dict = {
        "name": server_name(deployment, group, index),
        "flavor": Flavor(cpus=1, mem_mb=512),
        "image": "ubuntu-22.04",
        "key_name": key_pair_name(deployment),
        "public_key": PUBLIC_KEY,
        "tags": server_tags(deployment, group, index),
    }
    values.update(fields)
    return ServerSpec(**values)


def wait_active(driver: OpenStackCloud, server_id: str):
    def ready():
        server = driver.get_server(server_id)
        assert server is not None and server.status != ERROR, server
        return server if server.status == ACTIVE else None

    return poll(ready, f"server {server_id} ACTIVE")


def undeploy(driver: OpenStackCloud, deployment: str) -> None:
    for server in driver.list_servers({TAG_DEPLOYMENT: deployment}):
        driver.delete_server(server.id)
    driver.delete_key_pair(key_pair_name(deployment))


def empty(double: OpenStackDouble) -> bool:
    return double.inventory() == EMPTY


@pytest.mark.parametrize(("conn_id", "method"), [("os_password", "password"), ("os_appcred", "application_credential"),
                                                 ("os_oidc", "oidc")])  # fmt: skip
def test_each_auth_mode_reaches_the_services(double: OpenStackDouble, conn_id: str, method: str) -> None:
    before = double.identity.methods[method]
    asked: list[int] = []

    def token() -> str:
        asked.append(1)
        return OIDC_TOKEN

    driver = OpenStackCloud(conn_id, token_provider=token if method == "oidc" else None)
    assert driver.list_servers({TAG_DEPLOYMENT: str(uuid.uuid4())}) == []
    assert double.identity.methods[method] == before + 1
    assert bool(asked) == (method == "oidc")  # the IAM layer's token is what Keystone saw


def test_bad_credentials_and_tokens_are_refused_clearly(double: OpenStackDouble) -> None:
    with pytest.raises(CloudError, match="refused the credentials") as bad:
        OpenStackCloud("os_badpass").list_servers({})
    assert not bad.value.retryable and "wrong" not in str(bad.value)
    with pytest.raises(CloudError, match="refused the credentials"):
        OpenStackCloud("os_oidc", token_provider=lambda: "expired-token").list_servers({})
    with pytest.raises(CloudError, match="connection 'os_missing_conn' is not defined"):
        OpenStackCloud("os_missing_conn").list_servers({})


def test_public_server_with_ports_volume_tags_then_nothing_left(
    double: OpenStackDouble, driver: OpenStackCloud
) -> None:
    deployment = str(uuid.uuid4())
    ports = [
        {"name": "ui", "protocol": "tcp", "source": 8080, "remote_cidr": "0.0.0.0/0"},
        {"name": "range", "protocol": "tcp", "source_range": [9000, 9100], "remote_cidr": "10.0.0.0/8"},
    ]
    public = make_spec(deployment, "master", network="PUBLIC", ports=ports)
    object.__setattr__(public, "volumes", [{"name": "data", "size_gb": 10}])  # the proposed ServerSpec field
    private = make_spec(deployment, "worker")
    created = [driver.create_server(public), driver.create_server(private)]
    master, worker = (wait_active(driver, s.id) for s in created)
    assert master.public_ip and master.public_ip.startswith("172.24.4.") and master.private_ip.startswith("10.0.0.")
    assert worker.public_ip is None and worker.private_ip
    assert [s.id for s in driver.list_servers({TAG_DEPLOYMENT: deployment, TAG_GROUP: "worker"})] == [worker.id]
    assert {s.id for s in driver.list_servers({TAG_DEPLOYMENT: deployment})} == {master.id, worker.id}

    cloud = double.cloud
    groups = {g["name"]: g["id"] for g in cloud.security_groups.values()}
    rules = {(r["protocol"], r["port_range_min"], r["port_range_max"], r["remote_ip_prefix"])
             for r in cloud.sg_rules(groups[f"dodas-{deployment}-master"])}  # fmt: skip
    assert {("tcp", 22, 22, "0.0.0.0/0"), ("tcp", 8080, 8080, "0.0.0.0/0"), ("tcp", 9000, 9100, "10.0.0.0/8")} <= rules
    internal = cloud.sg_rules(groups[f"dodas-{deployment}"])
    assert any(r["remote_group_id"] == groups[f"dodas-{deployment}"] for r in internal)
    volumes = [v for v in cloud.volumes.values() if v["attachments"][0]["server_id"] == master.id]
    assert [v["size"] for v in volumes] == [10]
    kinds = {(r.kind, r.deployment) for r in driver.list_project_resources()}
    assert {(k, deployment) for k in ("server", "key_pair", "security_group", "port", "floating_ip", "volume")} <= kinds

    undeploy(driver, deployment)
    poll(lambda: empty(double), "nothing left in the double")
    assert driver.get_server(master.id) is None


def test_flavour_is_the_smallest_fit_or_the_named_one(double: OpenStackDouble, driver: OpenStackCloud) -> None:
    deployment = str(uuid.uuid4())
    fits = driver.create_server(make_spec(deployment, index=0, flavor=Flavor(cpus=2, mem_mb=3000)))
    named = driver.create_server(make_spec(deployment, index=1, flavor=Flavor(1, 512, instance_type="m1.large")))
    image = driver.create_server(make_spec(deployment, index=2, image=f"ost://cloud.example.org/{IMAGES['centos-7']}"))
    assert double.cloud.servers[fits.id].flavor[1] == "m1.medium"
    assert double.cloud.servers[named.id].flavor[1] == "m1.large"
    assert double.cloud.servers[image.id].image_id == IMAGES["centos-7"]
    before = double.inventory()
    for bad, message in [
        (make_spec(deployment, index=3, flavor=Flavor(cpus=64, mem_mb=512)), "no size .* has 64 cpu"),
        (make_spec(deployment, index=3, image="no-such-image"), "image 'no-such-image' does not exist"),
        (make_spec(deployment, index=3, ports=[{"name": "x", "protocol": "sctp", "source": 1}]), "sctp"),
    ]:
        with pytest.raises(CloudError, match=message) as info:
            driver.create_server(bad)
        assert not info.value.retryable
    assert double.inventory() == before  # refused before anything was created
    undeploy(driver, deployment)
    poll(lambda: empty(double), "nothing left in the double")


def test_quota_error_carries_the_numbers(double: OpenStackDouble, driver: OpenStackCloud) -> None:
    deployment = str(uuid.uuid4())
    double.quotas.cores = 3
    driver.create_server(make_spec(deployment, index=0, flavor=Flavor(cpus=2, mem_mb=1024)))
    with pytest.raises(QuotaExceeded, match="quota exceeded for cores: requested 2, already used 2 of 3") as info:
        driver.create_server(make_spec(deployment, index=1, flavor=Flavor(cpus=2, mem_mb=1024)))
    assert (info.value.resource, info.value.requested, info.value.used, info.value.limit) == ("cores", 2, 2, 3)
    assert not info.value.retryable
    double.quotas.cores = -1
    double.quotas.floatingip = 0
    with pytest.raises(QuotaExceeded, match="floatingip"):
        driver.create_server(make_spec(deployment, index=2, network="PUBLIC"))
    undeploy(driver, deployment)
    poll(lambda: empty(double), "nothing left in the double")


def test_quota_room_is_novas_limits_less_the_projects_use(double: OpenStackDouble, driver: OpenStackCloud) -> None:
    """What a deployment is checked against before any VM is created (issue 16)."""
    deployment = str(uuid.uuid4())
    assert driver.quota_room().servers is None  # -1: no limit, nothing to check
    double.quotas.instances, double.quotas.cores = 3, 8
    server = driver.create_server(make_spec(deployment, index=0, flavor=Flavor(cpus=2, mem_mb=1024)))
    wait_active(driver, server.id)
    room = driver.quota_room()
    assert (room.servers, room.cores, room.ram_mb) == (2, 6, None)
    assert "1/3 instances" in room.source and "2/8 cores" in room.source
    undeploy(driver, deployment)
    poll(lambda: empty(double), "nothing left in the double")


def test_boot_failure_keeps_novas_fault(double: OpenStackDouble, driver: OpenStackCloud) -> None:
    deployment = str(uuid.uuid4())
    double.behaviour.boot_error_names = f"dodas-{deployment[:8]}-vm-1$"
    good, bad = (driver.create_server(make_spec(deployment, index=i)) for i in (0, 1))
    wait_active(driver, good.id)
    failed = poll(lambda: (s := driver.get_server(bad.id)) and s.status == ERROR and s, "server in ERROR")
    assert "No valid host was found" in failed.fault
    undeploy(driver, deployment)
    poll(lambda: empty(double), "nothing left in the double")


def test_timed_out_create_is_not_doubled_by_the_retry(double: OpenStackDouble) -> None:
    """The client gives up (0.5 s timeout) while Nova still creates the server: the retry adopts it."""
    deployment = str(uuid.uuid4())
    driver = OpenStackCloud("os_short")
    spec = make_spec(deployment)
    driver.create_server(make_spec(deployment, index=9))  # warm the caches: only the create is slow below
    double.faults.latency["compute.servers.create"] = 1.0
    with pytest.raises(CloudError) as info:
        driver.create_server(spec)
    assert info.value.retryable
    double.faults.latency.clear()
    poll(lambda: any(s.name == spec.name for s in double.cloud.servers.values()), "the server Nova made anyway")
    again = driver.create_server(spec)
    assert [s.id for s in double.cloud.servers.values() if s.name == spec.name] == [again.id]
    undeploy(driver, deployment)
    poll(lambda: empty(double), "nothing left in the double")


def test_twenty_percent_faults_provisioning_still_completes(double: OpenStackDouble) -> None:
    """GroupProvisioner (tenacity retry around driver calls) + the driver's retryable errors beat 20 % 5xx/429."""
    from dodas_tasks.deploy import service
    from dodas_tasks.deploy.provision import GroupProvisioner, cloud_call
    from dodas_tasks.store import NodeState, Store

    os.environ["DODAS_OPENSTACK_CONN_ID"] = "os_password"
    try:
        with Store() as store:
            deployment = service.submit(store, PLAIN, {"count": 4}, cloud="openstack")
            double.faults.error_rate = 0.2
            errors_before = sum(1 for *_, status in double.server.log if status >= 429)
            provisioner = GroupProvisioner(store, deployment, "vm", log=lambda _: None)
            pending = provisioner.start().pending
            poll(lambda: "BUILD" not in provisioner.poll(pending).values(), "servers booted")
            ready = provisioner.finish(pending)
            assert len(ready) == 4 and {n.state for n in store.list_nodes(deployment)} == {NodeState.CREATED}
            assert sum(1 for *_, status in double.server.log if status >= 429) > errors_before  # faults happened
            assert len(double.cloud.servers) - sum(s.delete_at is not None for s in double.cloud.servers.values()) >= 4
            names = [s.name for s in double.cloud.servers.values() if s.metadata.get(TAG_DEPLOYMENT) == deployment]
            assert sorted(names) == sorted(set(names)) and len(names) == 4  # no duplicate
            # the claim is provisioning's; a delete spans several calls, each failing 1 time in 5 here, so its 6
            # attempts could all fail now and then: the clean-up runs on a healthy API
            double.faults.error_rate = 0.0
            service.request_undeploy(store, deployment)
            provisioner = GroupProvisioner(store, deployment, "vm", log=lambda _: None)
            provisioner.start()
            cloud_call(provisioner.driver.delete_key_pair)(key_pair_name(deployment))  # as finalize does, with retries
        poll(lambda: empty(double), "nothing left in the double")
    finally:
        double.faults.error_rate = 0.0  # the next tests share the double
        os.environ.pop("DODAS_OPENSTACK_CONN_ID", None)


def test_leak_collection_removes_everything(double: OpenStackDouble, driver: OpenStackCloud) -> None:
    deployment = str(uuid.uuid4())
    spec = make_spec(deployment, network="PUBLIC")
    object.__setattr__(spec, "volumes", [{"name": "scratch", "size_gb": 1}])
    wait_active(driver, driver.create_server(spec).id)
    found = [r for r in driver.list_project_resources() if r.deployment == deployment]
    assert {r.kind for r in found} == {"server", "floating_ip", "port", "volume", "key_pair", "security_group"}
    order = ["server", "floating_ip", "port", "key_pair", "volume", "security_group"]
    for resource in sorted(found, key=lambda r: order.index(r.kind)):
        if resource.kind == "volume":  # attached volumes wait for their server (the collector retries later)
            poll(lambda: not double.cloud.servers, "servers gone before their volumes and groups")
        driver.delete_resource(resource.kind, resource.id)
    poll(lambda: empty(double), "nothing left in the double")


def test_get_driver_finds_the_connection_from_the_environment(double: OpenStackDouble, monkeypatch) -> None:
    monkeypatch.setenv("DODAS_OPENSTACK_CONN_ID", "os_appcred")
    driver = get_driver("openstack")
    assert isinstance(driver, OpenStackCloud) and driver.conn_id == "os_appcred"
    assert driver.max_concurrency == DEFAULT_CONCURRENCY
    monkeypatch.setenv("AIRFLOW_CONN_OS_NARROW", double.connection_json("appcred", dodas_max_concurrency=3))
    assert OpenStackCloud("os_narrow").max_concurrency == 3  # a site that wants fewer parallel calls says so


PLAIN = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  inputs:
    count: {type: integer, default: 3}
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: {get_input: count}}}
        host: {properties: {num_cpus: 1, mem_size: 512 MB}}
"""


@pytest.mark.slow
def test_deployment_dag_deploys_and_undeploys_on_openstack(
    double: OpenStackDouble, airflow_db: None, monkeypatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from dodas_tasks.deploy import service
    from dodas_tasks.naming import deployment_dag_id
    from dodas_tasks.store import DeploymentStatus, NodeState, Store

    monkeypatch.setenv("DODAS_OPENSTACK_CONN_ID", "os_password")

    def run(deployment: str):
        bag = DagBag(dag_folder=str(REPO / "dags" / "dodas.py"))
        assert not bag.import_errors, bag.import_errors
        return bag.get_dag(deployment_dag_id(deployment)).test()

    with Store() as store:
        deployment = service.submit(store, PLAIN, {"count": 3}, cloud="openstack")
        assert run(deployment).state == "success", store.get_deployment(deployment).status_reason
        assert store.get_deployment(deployment).status == DeploymentStatus.CREATE_COMPLETE
        nodes = store.list_nodes(deployment)
        servers = {s.id: s for s in double.cloud.servers.values() if s.metadata.get(TAG_DEPLOYMENT) == deployment}
        assert len(nodes) == 3 and {n.state for n in nodes} == {NodeState.CREATED}
        assert {n.cloud_id for n in nodes} == set(servers) and {s.status for s in servers.values()} == {"ACTIVE"}
        assert all(n.private_ip and n.private_ip.startswith("10.0.0.") for n in nodes)

        service.request_undeploy(store, deployment)
        assert run(deployment).state == "success"
        assert store.get_deployment(deployment).status == DeploymentStatus.DELETE_COMPLETE
    poll(lambda: empty(double), "nothing left in the double after undeploy")
