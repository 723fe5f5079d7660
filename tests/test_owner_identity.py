"""Sites that act as each deployment's owner: the owner's token reaches every cloud call of every task.

Real parts: the test OpenID provider (a process; short-lived access tokens), the OpenStack double whose Keystone
validates the owner's OIDC access tokens against that provider and maps each owner to a project of their own, and
moto's STS and EC2 behind a recording proxy. The deployment DAG runs with dag.test() (tasks and triggers in this
process), its tasks reading the `dodas_iam` connection as in production.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _moto_fixtures import UBUNTU_AMI, AwsProxy, MotoServer, aws_connection
from joserfc import jwt
from joserfc.jwk import KeySet
from oidc_provider.fixture import Provider, running_provider

from dodas_tasks.clouds.base import OwnerRequired
from dodas_tasks.clouds.ec2.client import forget_clients
from dodas_tasks.clouds.openstack.connection import forget_site
from dodas_tasks.deploy import service
from dodas_tasks.iam import IamClient, IamConfig
from dodas_tasks.iam.token_source import forget_cached_tokens
from dodas_tasks.naming import TAG_DEPLOYMENT, deployment_dag_id
from dodas_tasks.store import DeploymentStatus, Store
from dodas_tasks.tosca.errors import DodasTemplateError
from tests.openstack_double import Behaviour, OpenStackDouble

REPO = Path(__file__).resolve().parents[1]
AUDIENCE = "dodas"
ACCESS_TTL_S = 6  # the IdP's access tokens: several expire during one deployment run. Not shorter: a token is
# renewed a third of its life before it expires and the IdP's exp is a whole second, so ≥ 1 s is left when it
# is handed out; the double's Keystone checks exp with no leeway (test_iam.py uses the same lifetime)
OS_CONN, AWS_CONN = "os_owners", "aws_owners"
PLAIN = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  inputs:
    count: {type: integer, default: 2}
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: {get_input: count}}}
        host: {properties: {num_cpus: 1, mem_size: 512 MB}}
"""


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider(ACCESS_TTL_S) as running:
        yield running


@pytest.fixture(scope="module")
def double(provider: Provider) -> Iterator[OpenStackDouble]:
    """An OpenStack site federated with the provider: Keystone tokens of 125 s, so keystoneauth (which renews
    2 minutes before expiry) logs in again with a fresh OIDC access token every few seconds."""
    cloud = OpenStackDouble(Behaviour(private_cidr="127.66.0.0/24"))  # the healing probe's SSH: refused at once
    cloud.credentials.oidc_issuer = provider.issuer
    cloud.credentials.token_ttl_s = 125.0
    cloud.behaviour.build_seconds = 1.0
    cloud.behaviour.delete_seconds = 0.2
    with cloud:
        yield cloud


@pytest.fixture
def iam(provider: Provider, monkeypatch: pytest.MonkeyPatch) -> IamClient:
    conn = {"conn_type": "http", "host": provider.issuer, "login": provider.client_id,
            "password": provider.client_secret, "extra": {"audience": AUDIENCE}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_DODAS_IAM", json.dumps(conn))
    forget_cached_tokens()
    return IamClient(IamConfig(provider.issuer, provider.client_id, provider.client_secret, audience=AUDIENCE))


@pytest.fixture
def openstack_owners(double: OpenStackDouble, monkeypatch: pytest.MonkeyPatch) -> str:
    """The site's connection: Keystone OIDC as each owner, no project named (each owner's own, from the mapping)."""
    conn = double.connection("oidc", dodas_auth="owner", default_image="ubuntu-22.04")
    conn["extra"].pop("project_id")
    monkeypatch.setenv(f"AIRFLOW_CONN_{OS_CONN.upper()}", json.dumps(conn))
    monkeypatch.setenv("DODAS_OPENSTACK_CONN_ID", OS_CONN)
    forget_site(OS_CONN)
    return OS_CONN


@pytest.fixture
def store() -> Iterator[Store]:
    with Store() as s:
        yield s


def run(deployment_id: str):
    """One run of the deployment's DAG with dag.test()."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "dodas.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(deployment_dag_id(deployment_id)).test()


def servers_of(cloud, deployment_id: str) -> list:
    return [s for s in cloud.servers.values() if s.metadata.get(TAG_DEPLOYMENT) == deployment_id]


def submit_as(store: Store, provider: Provider, iam: IamClient, who: str, cloud: str) -> str:
    token = provider.login(who, aud=AUDIENCE, ttl=900)
    return service.submit(store, PLAIN, {}, cloud=cloud, access_token=token, iam=iam)


@pytest.mark.slow
def test_openstack_owners_act_as_themselves_in_their_own_projects(
    airflow_db: None,
    provider: Provider,
    double: OpenStackDouble,
    iam: IamClient,
    openstack_owners: str,
    store: Store,
) -> None:
    with pytest.raises(DodasTemplateError, match="acts as each deployment's owner"):  # nobody to act as
        service.submit(store, PLAIN, {}, cloud="openstack")

    # a run longer than two access-token lifetimes: the owner's tokens expire and are renewed on the way
    double.behaviour.build_seconds = 2.5 * ACCESS_TTL_S
    alice = submit_as(store, provider, iam, "alice", "openstack")
    calls_before, logins_before, started = (
        len(double.identity.service_calls),
        len(double.identity.oidc_logins),
        time.time(),
    )
    assert run(alice).state == "success", store.get_deployment(alice).status_reason
    assert store.get_deployment(alice).status == DeploymentStatus.CREATE_COMPLETE
    calls = double.identity.service_calls[calls_before:]
    assert calls and {(c.user, c.project) for c in calls} == {("alice", "alice")}  # every call, as alice
    logins = double.identity.oidc_logins[logins_before:]
    assert {who for who, _, _ in logins} == {"alice"}
    assert len({jti for _, jti, _ in logins}) >= 3  # the run outlived several access tokens, each renewed
    assert time.time() - started > 2 * ACCESS_TTL_S

    double.behaviour.build_seconds = 1.0
    bob = submit_as(store, provider, iam, "bob", "openstack")
    assert run(bob).state == "success", store.get_deployment(bob).status_reason
    assert len(servers_of(double.project("alice"), alice)) == 2 and len(servers_of(double.project("bob"), bob)) == 2
    assert not servers_of(double.project("alice"), bob) and not servers_of(double.cloud, alice)
    assert not servers_of(double.cloud, bob)  # the site's own project has none of them

    # healing probes the cloud as the owner
    from dodas_tasks.airflow.hooks.iam import owner_tokens_for
    from dodas_tasks.elastic.health import probe_nodes

    calls_before = len(double.identity.service_calls)
    dep = store.get_deployment(bob)
    probes = probe_nodes(store, dep, store.list_nodes(bob), owner_tokens_for(store)(dep))
    assert {p.cloud for p in probes.values()} == {"ACTIVE"}
    assert {(c.user, c.project) for c in double.identity.service_calls[calls_before:]} == {("bob", "bob")}

    # scaling as the owner; then the owner's delegation is revoked at the IdP: the next run fails, saying so,
    # and changes nothing at the cloud
    service.request_scale(store, bob, "vm", 3)
    assert run(bob).state == "success" and len(servers_of(double.project("bob"), bob)) == 3
    provider.revoke(store.get_refresh_token(bob))
    forget_cached_tokens()  # a new worker process: no access token cached
    service.request_scale(store, bob, "vm", 1)
    calls_before = len(double.identity.service_calls)
    assert run(bob).state == "failed"
    dep = store.get_deployment(bob)
    assert dep.status == DeploymentStatus.UPDATE_FAILED and "refresh token revoked" in (dep.status_reason or "")
    assert len(servers_of(double.project("bob"), bob)) == 3
    assert double.identity.service_calls[calls_before:] == []

    # undeploy as the owner: nothing of alice's is left in her project
    service.request_undeploy(store, alice)
    calls_before = len(double.identity.service_calls)
    assert run(alice).state == "success", store.get_deployment(alice).status_reason
    assert store.get_deployment(alice).status == DeploymentStatus.DELETE_COMPLETE
    assert {(c.user, c.project) for c in double.identity.service_calls[calls_before:]} == {("alice", "alice")}
    deadline = time.monotonic() + 30
    while servers_of(double.project("alice"), alice) and time.monotonic() < deadline:
        time.sleep(0.1)  # Nova finishes deletions asynchronously
    assert not servers_of(double.project("alice"), alice) and not double.project("alice").keypairs


@pytest.mark.slow
def test_leak_collector_acts_as_each_owner(
    airflow_db: None,
    provider: Provider,
    double: OpenStackDouble,
    iam: IamClient,
    openstack_owners: str,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resources in an owner's project are listed and removed as that owner; what no delegated owner can list is
    reported as not collectable, or listed with the site's service connection when it names one."""
    from datetime import timedelta

    from dodas_tasks.airflow.hooks.iam import owner_tokens_for
    from dodas_tasks.deploy.cloud_access import driver_for
    from dodas_tasks.deploy.leaks import collect_leaks
    from dodas_tasks.deploy.provision import GroupProvisioner

    carol = submit_as(store, provider, iam, "carol", "openstack")
    tokens_for = owner_tokens_for(store)
    dep = store.get_deployment(carol)
    provisioner = GroupProvisioner(store, carol, "vm", log=lambda _m: None, tokens=tokens_for(dep))
    provisioner.start()
    driver = driver_for(dep, tokens_for(dep))
    ghost = "00000000-0000-4000-8000-000000000000"  # a deployment the store never knew, in carol's project
    driver.import_key_pair(f"dodas-{ghost}", dep.ssh_public_key)
    with pytest.raises(OwnerRequired, match="no delegated owner"):
        driver_for(dep, None).list_servers({})

    calls_before = len(double.identity.service_calls)
    report = collect_leaks(store, clouds=["openstack"], grace=timedelta(0), log=lambda _m: None, tokens_for=tokens_for)
    assert report.errors == []
    assert f"openstack key_pair dodas-{ghost} (deployment unknown to the store)" in report.removed
    deletions = [c for c in double.identity.service_calls[calls_before:] if c.op == "compute.keypairs.delete"]
    assert [(c.user, c.project) for c in deletions] == [("carol", "carol")]
    assert len(report.not_collectable) == 1 and "dodas_service_conn_id" in report.not_collectable[0]
    assert len(servers_of(double.project("carol"), carol)) == 2  # the live deployment's servers stay

    # a site that also names a service connection: what no owner can see is listed and removed with it
    from dodas_tasks.clouds.openstack import OpenStackCloud

    monkeypatch.setenv("AIRFLOW_CONN_OS_SERVICE", double.connection_json("password"))
    site = double.connection("oidc", dodas_auth="owner", dodas_service_conn_id="os_service")
    site["extra"].pop("project_id")
    monkeypatch.setenv(f"AIRFLOW_CONN_{OS_CONN.upper()}", json.dumps(site))
    OpenStackCloud("os_service").import_key_pair(f"dodas-{ghost}", dep.ssh_public_key)  # in the site's own project
    report = collect_leaks(store, clouds=["openstack"], grace=timedelta(0), log=lambda _m: None, tokens_for=tokens_for)
    assert report.errors == [] and report.not_collectable == []
    assert report.removed == [f"openstack key_pair dodas-{ghost} (deployment unknown to the store)"]
    assert f"dodas-{ghost}" not in double.cloud.keypairs
    service.request_undeploy(store, carol)
    assert run(carol).state == "success", store.get_deployment(carol).status_reason


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


@pytest.mark.slow
def test_ec2_acts_as_the_owner_through_sts_web_identity(
    airflow_db: None, provider: Provider, iam: IamClient, aws_proxy: AwsProxy, store: Store, monkeypatch
) -> None:
    """Every EC2 call is signed by a role session named after the owner, obtained with the owner's access token;
    900 s credentials are inside botocore's renewal window, so each use asks STS again with a fresh token."""
    conn = aws_connection(
        aws_proxy.url,
        dodas_default_image=UBUNTU_AMI,
        dodas_auth="owner",
        role_arn="arn:aws:iam::123456789012:role/dodas-users",
        duration_seconds=900,
    )
    monkeypatch.setenv(f"AIRFLOW_CONN_{AWS_CONN.upper()}", conn)
    monkeypatch.setenv("DODAS_EC2_CONN_ID", AWS_CONN)
    forget_clients()
    with pytest.raises(DodasTemplateError, match="acts as each deployment's owner"):
        service.submit(store, PLAIN, {}, cloud="ec2")

    dana = submit_as(store, provider, iam, "dana", "ec2")
    aws_proxy.reset()
    assert run(dana).state == "success", store.get_deployment(dana).status_reason
    service.request_undeploy(store, dana)
    assert run(dana).state == "success", store.get_deployment(dana).status_reason
    assert store.get_deployment(dana).status == DeploymentStatus.DELETE_COMPLETE

    ec2_calls = [c for c in aws_proxy.signed if c.action != "AssumeRoleWithWebIdentity"]
    assert {"RunInstances", "TerminateInstances", "DeleteKeyPair"} <= {c.action for c in ec2_calls}
    sessions = {c.access_key: aws_proxy.role_sessions.get(c.access_key) for c in ec2_calls}
    assert None not in sessions.values()  # every EC2 call signed by an STS role session
    assert {s.session_name for s in sessions.values()} == {"dodas-dana"}
    keys = KeySet.import_key_set(json.loads(_get(f"{provider.issuer}/jwk")))
    subjects = {jwt.decode(s.web_identity_token, keys).claims["sub"] for s in aws_proxy.role_sessions.values()}
    assert subjects == {"dana"}  # the web identity was dana's own access token (signed by the IdP)
    assert all(c.access_key is None for c in aws_proxy.signed if c.action == "AssumeRoleWithWebIdentity")


def _get(url: str) -> str:
    import httpx

    return httpx.get(url, timeout=10).text
