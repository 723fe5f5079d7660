"""IAM layer against a real OpenID Connect provider process (tests/oidc_provider), moto's STS server and a Keystone
federation endpoint: validation, delegation, refresh with rotation, revocation, cloud credentials, secret hygiene."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc import jws, jwt
from joserfc.jwk import RSAKey
from oidc_provider.fixture import Provider, free_port, running_provider

from dodas_tasks.clouds.ec2.web_identity import AwsWebIdentity, web_identity_session
from dodas_tasks.clouds.openstack.connection import KeystoneSite, keystone_oidc_auth, keystone_session
from dodas_tasks.iam import (
    DelegationRefused,
    IamClient,
    IamConfig,
    IdpError,
    IdpUnreachable,
    InvalidToken,
    RefreshTokenRevoked,
    TokenSource,
    delegate,
    mark_token_failure,
)
from dodas_tasks.iam.token_source import forget_cached_tokens
from dodas_tasks.store import DeploymentStatus, Store
from dodas_tasks.tosca.plan import Plan

AUDIENCE = "dodas"
ACCESS_TTL_S = 6
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    # 6 s access tokens: the tests that outlive a token's lifetime wait for one lifetime, not for 30 s. Not shorter:
    # TokenSource renews a token a third of its life before it expires, and the IdP's exp is a whole second (up to
    # 1 s earlier than expires_in says), so a token has ≥ 1 s left when handed out; its Keystone has no leeway
    with running_provider(ACCESS_TTL_S) as running:
        yield running


@pytest.fixture
def iam(provider: Provider) -> IamClient:
    forget_cached_tokens()
    return IamClient(
        IamConfig(
            issuer=provider.issuer,
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            audience=AUDIENCE,
            group_claim="wlcg.groups",
            jwks_min_refetch_s=0,
        )
    )


@pytest.fixture
def store() -> Iterator[Store]:
    with Store() as s:
        yield s


def new_deployment(store: Store, provider: Provider, subject: str) -> str:
    return store.create_deployment(
        template="tosca_definitions_version: tosca_simple_yaml_1_0\n",
        plan=Plan(),
        owner_subject=subject,
        owner_issuer=provider.issuer,
        ssh_private_key="not-a-real-key",
        ssh_public_key="ssh-ed25519 AAAA test",
    )


def store_dump(store: Store) -> str:
    """Every row of every table of the store's SQLite file, as SQL text (encrypted columns included, as stored)."""
    with sqlite3.connect(store.engine.url.database) as raw:
        return "\n".join(raw.iterdump())


def test_discovery_userinfo_and_client_credentials(provider: Provider, iam: IamClient) -> None:
    assert iam.endpoint("token_endpoint") == f"{provider.issuer}/token"
    user_token = provider.login("alice", aud=AUDIENCE, groups=["cms", "ams"])
    assert iam.userinfo(user_token)["groups"] == ["cms", "ams"]
    service = iam.client_credentials(scope="openid", audience=AUDIENCE)
    assert iam.validate(service.access_token).subject == provider.client_id
    assert provider.client_secret not in repr(iam) + repr(iam.config) + repr(service)


def test_jwks_rotation_picks_up_the_new_key(provider: Provider, iam: IamClient) -> None:
    assert iam.validate(provider.login("alice", aud=AUDIENCE)).subject == "alice"
    fetched = provider.counters()["jwks"]
    new_kid = provider.rotate_keys(drop_old=True)
    token = provider.login("alice", aud=AUDIENCE)
    assert jws.extract_compact(token.encode()).protected["kid"] == new_kid
    assert iam.validate(token).subject == "alice"  # unknown kid → JWKS fetched again
    assert provider.counters()["jwks"] == fetched + 1
    iam.validate(provider.login("bob", aud=AUDIENCE))  # known kid: served from the cache
    assert provider.counters()["jwks"] == fetched + 1


def test_bad_signature_wrong_audience_and_expired_are_refused_clearly(provider: Provider, iam: IamClient) -> None:
    good = provider.login("alice", aud=AUDIENCE)
    header = jws.extract_compact(good.encode()).protected
    forged = jwt.encode(header, {**json.loads(_payload(good)), "sub": "mallory"}, RSAKey.generate_key(2048))
    cases = {
        "bad signature": forged,
        "wrong audience": provider.login("alice", aud="another-service"),
        "expired": provider.login("alice", aud=AUDIENCE, ttl=-120),
        "not yet valid": provider.login("alice", aud=AUDIENCE, issued_offset=600),
    }
    for reason, token in cases.items():
        with pytest.raises(InvalidToken) as refused:
            iam.validate(token)
        assert refused.value.reason == reason
        assert token not in str(refused.value) and reason in str(refused.value)
    leeway = provider.login("alice", aud=AUDIENCE, ttl=-5)  # within the 30 s allowed clock skew
    assert iam.validate(leeway).subject == "alice"


def test_opaque_tokens_are_introspected(provider: Provider, iam: IamClient) -> None:
    opaque = provider.login("carol", aud=AUDIENCE, format="opaque", groups=["cms"])
    info = iam.validate(opaque)
    assert (info.subject, info.groups("wlcg.groups")) == ("carol", ("cms",))
    with pytest.raises(InvalidToken, match="wrong audience"):
        iam.validate(provider.login("carol", aud="other", format="opaque"))
    with pytest.raises(InvalidToken, match="inactive"):
        iam.validate(provider.login("carol", aud=AUDIENCE, format="opaque", ttl=-1))


def test_delegation_keeps_only_the_encrypted_refresh_token(provider: Provider, iam: IamClient, store: Store) -> None:
    user_token = provider.login("alice", aud=AUDIENCE, groups=["cms", "dodas-admins"])
    deployment_id = new_deployment(store, provider, "alice")
    delegation = delegate(store, deployment_id, user_token, iam)
    record = store.get_deployment(deployment_id)
    assert record.has_refresh_token and record.owner_groups == ["cms", "dodas-admins"]
    assert store.get_refresh_token(deployment_id) == delegation.refresh_token
    assert "offline_access" in delegation.scopes
    dump = store_dump(store)
    assert delegation.refresh_token not in dump and user_token not in dump
    assert delegation.refresh_token not in repr(delegation)
    with pytest.raises(DelegationRefused, match="belongs to 'alice'"):
        delegate(store, deployment_id, provider.login("mallory", aud=AUDIENCE), iam)
    with pytest.raises(InvalidToken, match="wrong audience"):
        delegate(store, deployment_id, provider.login("alice", aud="elsewhere"), iam)


def test_refresh_rotates_and_a_revoked_token_fails_the_deployment(
    provider: Provider, iam: IamClient, store: Store
) -> None:
    deployment_id = new_deployment(store, provider, "dave")
    delegate(store, deployment_id, provider.login("dave", aud=AUDIENCE), iam)
    first = store.get_refresh_token(deployment_id)
    source = TokenSource(store, deployment_id, iam)
    assert iam.validate(source.access_token()).subject == "dave"
    second = store.get_refresh_token(deployment_id)
    assert second != first  # the provider rotates: the new one was stored at once
    with pytest.raises(RefreshTokenRevoked):
        iam.refresh(first)  # the old one is dead at the IdP
    assert source.refresh_now() is True and store.get_refresh_token(deployment_id) not in (first, second)

    provider.revoke(store.get_refresh_token(deployment_id))
    source.invalidate()
    with pytest.raises(RefreshTokenRevoked) as revoked:
        source.access_token()
    reason = mark_token_failure(store, deployment_id, revoked.value)
    record = store.get_deployment(deployment_id)
    assert record.status == DeploymentStatus.CREATE_FAILED and record.status_reason == reason
    assert "revoked or expired at the IdP" in reason and not record.has_refresh_token
    assert any(e.kind == "token" and "owner must renew" in e.message for e in store.list_events(deployment_id))


def test_unreachable_idp_is_reported_as_such(provider: Provider) -> None:
    dead = IamClient(IamConfig(issuer=f"http://127.0.0.1:{free_port()}", client_id="x", client_secret="y" * 8))
    with pytest.raises(IdpUnreachable, match="is the IdP up"):
        dead.metadata()


@pytest.mark.slow
def test_long_running_use_spans_several_token_lifetimes(provider: Provider, iam: IamClient, store: Store) -> None:
    deployment_id = new_deployment(store, provider, "erin")
    delegate(store, deployment_id, provider.login("erin", aud=AUDIENCE), iam)
    source = TokenSource(store, deployment_id, iam)
    refreshes_before = provider.counters().get("refresh", 0)
    seen: set[str] = set()
    end = time.monotonic() + provider.access_ttl + 2  # past one full lifetime
    while time.monotonic() < end:  # a long task using the owner's identity again and again
        token = source.access_token()
        info = iam.validate(token, audience=AUDIENCE)
        assert info.subject == "erin" and info.expires_at - time.time() > 0
        seen.add(token)
        time.sleep(0.5)  # pacing of the simulated work, not a wait for a condition
    assert len(seen) >= 2
    assert provider.counters()["refresh"] - refreshes_before == len(seen)


# -- cloud credentials ---------------------------------------------------------------------------------------------


def test_the_clusters_own_iam_client_is_registered_once_works_and_is_deleted_with_it(
    provider: Provider, iam: IamClient, store: Store
) -> None:
    """RFC 7591/7592 at the real provider: one client per deployment, adopted on retry (also when two tasks race),
    kept encrypted, able to exchange the owner's token as the cluster's proxy cache does, deleted at the end."""
    from concurrent.futures import ThreadPoolExecutor

    from dodas_tasks.iam.cluster_client import ensure_cluster_client, release_cluster_client

    deployment_id = new_deployment(store, provider, "lena")
    client = ensure_cluster_client(store, deployment_id, iam)
    assert ensure_cluster_client(store, deployment_id, iam) == client
    assert provider.registered_clients().count(client.client_id) == 1
    assert client.client_secret not in store_dump(store) and client.registration_token not in store_dump(store)
    assert client.client_secret not in repr(client)

    # what the cluster's proxy cache does with it: trade the owner's access token for tokens of its own
    as_cluster = IamClient(
        IamConfig(issuer=provider.issuer, client_id=client.client_id, client_secret=client.client_secret)
    )
    assert as_cluster.exchange(provider.login("lena", aud=AUDIENCE)).refresh_token

    racing = new_deployment(store, provider, "lena")
    before = set(provider.registered_clients())
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: ensure_cluster_client(store, racing, iam), range(2)))
    assert answers[0] == answers[1]
    assert set(provider.registered_clients()) - before == {answers[0].client_id}  # the loser deleted its own

    assert release_cluster_client(store, deployment_id, iam) == client.client_id
    assert client.client_id not in provider.registered_clients()
    with pytest.raises(IdpError, match="invalid_client"):
        as_cluster.exchange(provider.login("lena", aud=AUDIENCE))
    assert release_cluster_client(store, deployment_id, iam) is None
    assert release_cluster_client(store, racing, iam) == answers[0].client_id
    events = [e.message for e in store.list_events(deployment_id) if e.kind == "token"]
    assert events == [
        f"IAM client {client.client_id} registered for the cluster's services",
        f"IAM client {client.client_id} of the cluster deleted at the IdP",
    ]


@pytest.fixture(scope="module")
def moto_sts() -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/moto-api/", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_sts_web_identity_credentials_renew_before_expiry(
    provider: Provider, iam: IamClient, store: Store, moto_sts: str
) -> None:
    deployment_id = new_deployment(store, provider, "frank")
    delegate(store, deployment_id, provider.login("frank", aud=AUDIENCE), iam)
    identity = AwsWebIdentity(
        role_arn="arn:aws:iam::123456789012:role/dodas",
        endpoint_url=moto_sts,
        session_name="dodas-frank",
        duration_s=900,
    )
    session = web_identity_session(identity, TokenSource(store, deployment_id, iam))
    credentials = session.get_credentials()
    first = credentials.get_frozen_credentials()
    # 900 s credentials are inside botocore's 15-minute advisory window: the next use renews them
    second = credentials.get_frozen_credentials()
    assert first.access_key != second.access_key and second.token
    caller = session.client("sts", endpoint_url=moto_sts).get_caller_identity()
    assert "dodas-frank" in caller["Arn"]


def test_keystone_oidc_access_token_auth(provider: Provider, iam: IamClient, store: Store) -> None:
    from keystoneauth1 import loading
    from keystoneauth1 import session as ks_session

    deployment_id = new_deployment(store, provider, "grace")
    delegate(store, deployment_id, provider.login("grace", aud=AUDIENCE), iam)
    source = TokenSource(store, deployment_id, iam)
    site = KeystoneSite(auth_url=f"{provider.issuer}/v3", identity_provider="dodas-iam", project_name="cms")
    args = keystone_oidc_auth(site, source.access_token())
    assert args["auth_type"] == "v3oidcaccesstoken"
    plugin = loading.get_plugin_loader(args["auth_type"]).load_from_options(**args["auth"])
    scoped = ks_session.Session(auth=plugin)
    assert scoped.get_token() and scoped.get_project_id()

    before = provider.counters().get("keystone_federated_auth", 0)
    fresh = keystone_session(site, source)
    assert fresh.get_token() and fresh.get_project_id() == scoped.get_project_id()
    fresh.invalidate()  # Keystone token expired: re-authenticate with a fresh OIDC access token
    assert fresh.get_token()
    assert provider.counters()["keystone_federated_auth"] - before == 2


# -- maintenance DAG and secret hygiene ----------------------------------------------------------------------------


@pytest.mark.slow
def test_token_refresh_dag_renews_marks_and_leaks_nothing(
    provider: Provider, iam: IamClient, store: Store, airflow_db: None, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    alive, dead = new_deployment(store, provider, "heidi"), new_deployment(store, provider, "ivan")
    user_tokens = [provider.login("heidi", aud=AUDIENCE), provider.login("ivan", aud=AUDIENCE)]
    refresh_tokens = [delegate(store, alive, user_tokens[0], iam).refresh_token]
    refresh_tokens.append(delegate(store, dead, user_tokens[1], iam).refresh_token)
    provider.revoke(refresh_tokens[1])
    store.set_status(alive, DeploymentStatus.CREATE_COMPLETE)
    store.set_status(dead, DeploymentStatus.CREATE_COMPLETE)
    conn = {
        "conn_type": "http",
        "host": provider.issuer,
        "login": provider.client_id,
        "password": provider.client_secret,
        "extra": {"audience": AUDIENCE, "group_claim": "groups"},
    }
    os.environ["AIRFLOW_CONN_DODAS_IAM"] = json.dumps(conn)
    try:
        bag = DagBag(dag_folder=str(REPO / "dags" / "dodas_tokens.py"))
        assert not bag.import_errors, bag.import_errors
        run = bag.get_dag("dodas_token_refresh").test()
    finally:
        os.environ.pop("AIRFLOW_CONN_DODAS_IAM")
    assert run.state == "success"
    report = run.get_task_instances()[0].xcom_pull(task_ids="refresh_tokens")
    assert report["renewed"] >= 1 and report["revoked"] >= 1
    rotated = store.get_refresh_token(alive)
    assert rotated not in refresh_tokens  # the rotated token was stored
    assert store.get_deployment(dead).status == DeploymentStatus.UPDATE_FAILED
    assert "revoked" in (store.get_deployment(dead).status_reason or "")
    assert any("renewed" in e.message for e in store.list_events(alive))

    secrets = [*user_tokens, *refresh_tokens, rotated, provider.client_secret]
    captured = capfd.readouterr()
    logs = "".join(p.read_text(errors="replace") for p in Path(os.environ["AIRFLOW_HOME"], "logs").rglob("*.log"))
    with sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db") as raw:
        airflow_rows = "\n".join(raw.iterdump())  # XCom, rendered fields, run conf, task instances
    events = "\n".join(e.message for d in (alive, dead) for e in store.list_events(d))
    places = {
        "task output": captured.out + captured.err,
        "task logs": logs,
        "airflow db": airflow_rows,
        "events": events,
        "store": store_dump(store),
    }
    leaks = [(where, n) for where, text in places.items() for n, secret in enumerate(secrets) if secret in text]
    assert leaks == []
    assert "refresh token renewed" in airflow_rows + logs + captured.out + captured.err or report["renewed"]


def _payload(token: str) -> str:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


def test_submission_with_a_token_is_delegated_to_its_subject(
    provider: Provider, iam: IamClient, store: Store, airflow_db: None, capfd: pytest.CaptureFixture[str]
) -> None:
    """The user's access token is delegated at the API's door (POST /delegations) and dodas_submit names the
    one-time delegation: owner = token subject, refresh token kept encrypted, and no Airflow table, log or output
    ever holds the access token. A run whose conf carries an access token is refused before it is stored."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import ParamValidationError
    from fastapi.testclient import TestClient

    from dodas_tasks.api.app import create_app

    token = provider.login("judy", aud=AUDIENCE, ttl=900)  # outlives a slow DagBag parse
    template = (REPO / "templates" / "spark_local.yaml").read_text()
    conn = {
        "conn_type": "http",
        "host": provider.issuer,
        "login": provider.client_id,
        "password": provider.client_secret,
        "extra": {"audience": AUDIENCE, "group_claim": "wlcg.groups"},
    }
    with TestClient(create_app(store=store, iam=lambda: iam)) as api:
        answer = api.post("/delegations", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 201, answer.text
        refused = api.post("/delegations", headers={"Authorization": f"Bearer {token[:-4]}AAAA"})
        assert refused.status_code == 401 and token not in refused.text
    handle = answer.json()["delegation"]
    assert answer.json()["createdBy"] == f"judy@{provider.issuer}"
    os.environ["AIRFLOW_CONN_DODAS_IAM"] = json.dumps(conn)
    try:
        dag = DagBag(dag_folder=str(REPO / "dags" / "dodas.py")).get_dag("dodas_submit")
        run = dag.test(run_conf={"template_text": template, "delegation": handle, "inputs": {}})
        bad = dag.test(run_conf={"template_text": template, "delegation": handle, "inputs": {}})  # used already
        with pytest.raises(ParamValidationError, match="access_token"):
            dag.test(run_conf={"template_text": template, "access_token": token, "inputs": {}})
    finally:
        os.environ.pop("AIRFLOW_CONN_DODAS_IAM")
    assert run.state == "success" and bad.state == "failed"
    info = next(ti for ti in run.get_task_instances() if ti.task_id == "register").xcom_pull(task_ids="register")
    dep = store.get_deployment(info["deployment_id"])
    assert (dep.owner_subject, dep.owner_issuer) == ("judy", provider.issuer)
    refresh = store.get_refresh_token(dep.id)
    assert refresh and refresh not in store_dump(store)
    captured = capfd.readouterr()
    assert token not in captured.out + captured.err and refresh not in captured.out + captured.err
    assert all(token not in e.message for e in store.list_events(dep.id))
    # the database dump: every table of Airflow (run conf, XCom, rendered fields, task instances, audit log,
    # serialized DAGs), the task logs and the store
    logs = "".join(p.read_text(errors="replace") for p in Path(os.environ["AIRFLOW_HOME"], "logs").rglob("*.log"))
    with sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db") as raw:
        airflow_rows = "\n".join(raw.iterdump())
    assert "dag_run" in airflow_rows and handle in airflow_rows  # the dump does hold the runs (and the used handle)
    places = {"airflow db": airflow_rows, "task logs": logs, "store": store_dump(store)}
    assert [where for where, text in places.items() if token in text or refresh in text] == []
    store.update_deployment(dep.id, status=DeploymentStatus.DELETE_COMPLETE)  # nothing was provisioned


PLAIN_VM = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
"""


@pytest.mark.slow
def test_deployment_longer_than_a_token_lifetime_refreshes_and_a_revoked_token_fails_it(
    provider: Provider, iam: IamClient, store: Store, airflow_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Access tokens live ACCESS_TTL_S here, the VM boots for 2 s more: the run needs a second token on the way."""
    from airflow.dag_processing.dagbag import DagBag

    from dodas_tasks.clouds.local import LocalCloud
    from dodas_tasks.deploy import service
    from dodas_tasks.naming import deployment_dag_id

    conn = {
        "conn_type": "http",
        "host": provider.issuer,
        "login": provider.client_id,
        "password": provider.client_secret,
        "extra": {"audience": AUDIENCE},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DODAS_IAM", json.dumps(conn))
    monkeypatch.setenv("DODAS_LOCAL_BOOT_DELAY", str(ACCESS_TTL_S + 2))  # the embedded cloud's own setting
    token = provider.login("kim", aud=AUDIENCE, ttl=900)
    deployment_id = service.submit(store, PLAIN_VM, {}, access_token=token, iam=iam)
    dag = DagBag(dag_folder=str(REPO / "dags" / "dodas.py")).get_dag(deployment_dag_id(deployment_id))
    try:
        before = provider.counters().get("refresh", 0)
        run = dag.test()
        assert run.state == "success", store.get_deployment(deployment_id).status_reason
        assert store.get_deployment(deployment_id).status == DeploymentStatus.CREATE_COMPLETE
        assert provider.counters().get("refresh", 0) - before >= 2  # refreshed again after the first expired

        provider.revoke(store.get_refresh_token(deployment_id))
        forget_cached_tokens()  # a new worker process: no token cached
        service.request_scale(store, deployment_id, "vm", 2)
        assert dag.test().state == "failed"
        dep = store.get_deployment(deployment_id)
        assert dep.status == DeploymentStatus.UPDATE_FAILED and "refresh token revoked" in (dep.status_reason or "")
        assert len(store.list_nodes(deployment_id)) == 1  # nothing changed without the owner's identity
    finally:
        LocalCloud().cleanup()
