"""Placement policies as INDIGO templates carry them: compiled onto the targeted compute groups, availability zones
honoured by EC2 (moto) and OpenStack (the HTTP double), SLAs mapped to a site by DODAS_SLA_SITES at submission."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _moto_fixtures import UBUNTU_AMI, AwsProxy, MotoServer, ec2_connections

from dodas_tasks.clouds import CloudError
from dodas_tasks.clouds.ec2 import EC2Driver
from dodas_tasks.deploy import service
from dodas_tasks.deploy.placement import SLA_SITES_ENV
from dodas_tasks.deploy.provision import GroupProvisioner
from dodas_tasks.deploy.update import request_update
from dodas_tasks.naming import TAG_DEPLOYMENT, TAG_GROUP
from dodas_tasks.store import Store
from dodas_tasks.tosca.compiler import compile as compile_template
from dodas_tasks.tosca.errors import DodasTemplateError
from tests.openstack_double import OpenStackDouble

REPO = Path(__file__).resolve().parents[1]
AMI = f"aws://us-east-1/{UBUNTU_AMI}"


def template(policies: str, image: str = "ubuntu-22.04", slaves: int = 3) -> str:
    """A master and a slave group (INDIGO's names), with the given policies section."""
    return f"""
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  node_templates:
    mesos_master_server:
      type: tosca.nodes.indigo.Compute
      capabilities:
        host: {{properties: {{num_cpus: 1, mem_size: 512 MB}}}}
        os: {{properties: {{image: "{image}"}}}}
    mesos_slave_server:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {{properties: {{count: {slaves}}}}}
        host: {{properties: {{num_cpus: 1, mem_size: 512 MB}}}}
        os: {{properties: {{image: "{image}"}}}}
  policies:
{policies}
"""


PIN_SLAVES = """
    - deploy_slaves_in_zone:
        type: tosca.policies.Placement
        properties: {{ availability_zone: {zone} }}
        targets: [ mesos_slave_server ]
"""


def groups(plan) -> dict:
    return {g.name: g for g in plan.groups}


# ---------------------------------------------------------------- compiling


def test_a_normative_placement_pins_its_targets_and_nothing_else() -> None:
    plan = compile_template(template(PIN_SLAVES.format(zone="az-2")), {})
    assert groups(plan)["mesos_slave_server"].availability_zone == "az-2"
    assert groups(plan)["mesos_master_server"].availability_zone is None
    assert plan.warnings == []


def test_tosca_groups_and_hosted_components_are_placement_targets() -> None:
    text = template("""
    - on_aws:
        type: tosca.policies.indigo.Placement
        properties: { cloud_id: aws-1, availability_zone: us-east-1c }
        targets: [ workers ]
""").replace(
        "  policies:",
        "  groups:\n    workers:\n      type: tosca.groups.Root\n      members: [ mesos_slave_server ]\n  policies:",
    )
    plan = compile_template(text, {})
    assert groups(plan)["mesos_slave_server"].availability_zone == "us-east-1c"
    assert groups(plan)["mesos_master_server"].availability_zone is None
    (warning,) = plan.warnings  # cloud_id is the INDIGO type's required property, kept but not used
    assert "cloud_id is accepted but not used" in warning


def test_unknown_properties_of_normative_policies_are_warnings_dodas_validate_lists(tmp_path: Path) -> None:
    policies = """
    - deploy_on_aws:
        type: tosca.policies.Placement
        properties: { sla_id: SLA_provider-AWS-us-east-1_indigo-dc, username: AKIA0, password: wJalr, colour: blue }
        targets: [ mesos_master_server ]
"""
    path = tmp_path / "aws.yaml"
    path.write_text(template(policies))
    done = subprocess.run(
        [sys.executable, "-m", "dodas_tasks.cli", "validate", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "mesos_master_server: SLA SLA_provider-AWS-us-east-1_indigo-dc" in done.stdout
    warnings = done.stdout.split("warnings (accepted, as the INDIGO orchestrator did, but ignored):")[1]
    assert f"{path}:" in warnings and "has no property 'colour'; it is ignored" in warnings
    assert "password is accepted but not used" in warnings and "wJalr" not in done.stdout


def test_two_zones_for_one_group_are_refused() -> None:
    both = PIN_SLAVES.format(zone="az-1") + PIN_SLAVES.format(zone="az-2").replace("deploy_slaves", "again")
    with pytest.raises(DodasTemplateError, match="placed by two policies with different availability_zone"):
        compile_template(template(both), {})


# ---------------------------------------------------------------- SLAs at submission


SLA_MASTER = """
    - sla:
        type: tosca.policies.indigo.SlaPlacement
        properties: { sla_id: SLA_site-A }
        targets: [ mesos_master_server, mesos_slave_server ]
"""


@pytest.fixture
def store() -> Iterator[Store]:
    with Store() as s:
        yield s


def test_an_sla_that_maps_to_no_site_is_refused_listing_the_known_ones(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SLA_SITES_ENV, json.dumps({"SLA_site-B": "ec2", "SLA_site-C": {"cloud": "openstack"}}))
    before = len(store.list_deployments())
    with pytest.raises(DodasTemplateError) as refused:
        service.submit(store, template(SLA_MASTER), {})
    assert "SLA 'SLA_site-A' maps to no site of this service" in refused.value.report()
    assert "known SLAs: SLA_site-B, SLA_site-C" in refused.value.report()
    monkeypatch.delenv(SLA_SITES_ENV)
    with pytest.raises(DodasTemplateError, match=f"none \\({SLA_SITES_ENV} is not set\\)"):
        service.submit(store, template(SLA_MASTER), {})
    assert len(store.list_deployments()) == before  # nothing recorded


def test_an_sla_chooses_the_cloud_and_zone_which_updates_keep(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    site = {"SLA_site-A": {"cloud": "openstack", "availability_zone": "az-2"}}
    monkeypatch.setenv(SLA_SITES_ENV, json.dumps(site))
    text = template(SLA_MASTER + PIN_SLAVES.format(zone="nova"))
    deployment = store.get_deployment(service.submit(store, text, {}, cloud="local", failover_clouds=["ec2"]))
    assert (deployment.cloud, deployment.clouds) == ("openstack", ["openstack"])  # the SLA pins the site
    assert groups(deployment.plan)["mesos_master_server"].availability_zone == "az-2"
    assert groups(deployment.plan)["mesos_slave_server"].availability_zone == "nova"  # the template's own wins
    monkeypatch.setenv(SLA_SITES_ENV, json.dumps({"SLA_site-A": "openstack"}))  # the setting changes later
    request_update(store, deployment.id, text.replace("count: 3", "count: 4"), {})
    updated = store.get_deployment(deployment.id)
    assert groups(updated.plan)["mesos_master_server"].availability_zone == "az-2"
    assert updated.desired_counts["mesos_slave_server"] == 4


# ---------------------------------------------------------------- deploying: EC2 (moto) and OpenStack (double)


def provision(store: Store, deployment_id: str, group: str, deadline_s: float = 120.0) -> list:
    """One provisioning pass of a group as the DAG's task does it; the group's ready nodes."""
    provisioner = GroupProvisioner(store, deployment_id, group, log=lambda _m: None)
    progress = provisioner.start()
    end = time.monotonic() + deadline_s
    while progress.pending and "BUILD" in provisioner.poll(progress.pending).values():
        assert time.monotonic() < end, f"{group}: servers never left BUILD"
        time.sleep(0.2)
    return provisioner.finish(progress.pending)


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


def test_ec2_puts_every_slave_in_the_pinned_zone_and_leaves_the_master_free(moto: MotoServer, store: Store) -> None:
    driver = EC2Driver()
    default_zone = min(s["AvailabilityZone"] for s in driver.client.describe_subnets()["Subnets"])
    pinned = "us-east-1c"
    assert pinned != default_zone
    deployment_id = service.submit(store, template(PIN_SLAVES.format(zone=pinned), image=AMI), {}, cloud="ec2")
    for group in ("mesos_master_server", "mesos_slave_server"):
        provision(store, deployment_id, group)
    reply = driver.client.describe_instances(Filters=[{"Name": f"tag:{TAG_DEPLOYMENT}", "Values": [deployment_id]}])
    zones: dict[str, list[str]] = {}
    for instance in (i for r in reply["Reservations"] for i in r["Instances"]):
        group = {t["Key"]: t["Value"] for t in instance["Tags"]}[TAG_GROUP]
        subnet = driver.client.describe_subnets(SubnetIds=[instance["SubnetId"]])["Subnets"][0]
        assert subnet["AvailabilityZone"] == instance["Placement"]["AvailabilityZone"]
        zones.setdefault(group, []).append(instance["Placement"]["AvailabilityZone"])
    assert zones == {"mesos_master_server": [default_zone], "mesos_slave_server": [pinned] * 3}
    with pytest.raises(CloudError, match="availability zone 'mars-1a' has no subnet"):
        driver._default_subnet("mars-1a")
    service.request_undeploy(store, deployment_id)
    for group in ("mesos_master_server", "mesos_slave_server"):
        provision(store, deployment_id, group)
    assert driver.list_servers({TAG_DEPLOYMENT: deployment_id}) == []


@pytest.fixture(scope="module")
def openstack(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[OpenStackDouble]:
    double = OpenStackDouble().start()
    double.behaviour.build_seconds = 0.3
    double.behaviour.delete_seconds = 0.1
    double.behaviour.zones = ("nova", "az-2")
    monkeypatch_module.setenv("AIRFLOW_CONN_OS_ZONES", double.connection_json("password"))
    monkeypatch_module.setenv("DODAS_OPENSTACK_CONN_ID", "os_zones")
    yield double
    double.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_openstack_puts_every_slave_in_the_pinned_zone_and_refuses_an_unknown_one(
    openstack: OpenStackDouble, store: Store
) -> None:
    deployment_id = service.submit(store, template(PIN_SLAVES.format(zone="az-2")), {}, cloud="openstack")
    for group in ("mesos_master_server", "mesos_slave_server"):
        provision(store, deployment_id, group)
    zones: dict[str, list[str]] = {}
    for server in openstack.cloud.servers.values():
        if server.metadata.get(TAG_DEPLOYMENT) == deployment_id:
            zones.setdefault(server.metadata[TAG_GROUP], []).append(server.availability_zone)
    assert zones == {"mesos_master_server": ["nova"], "mesos_slave_server": ["az-2"] * 3}  # nova: the site's default

    elsewhere = service.submit(store, template(PIN_SLAVES.format(zone="az-9"), slaves=1), {}, cloud="openstack")
    with pytest.raises(Exception, match="The requested availability zone is not available"):
        provision(store, elsewhere, "mesos_slave_server")
    for dep in (deployment_id, elsewhere):
        service.request_undeploy(store, dep)
        for group in ("mesos_master_server", "mesos_slave_server"):
            provision(store, dep, group)
    assert not [s for s in openstack.cloud.servers.values() if s.delete_at is None]
