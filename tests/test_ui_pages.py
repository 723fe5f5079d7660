"""The Deployments pages over real HTTP (uvicorn on 127.0.0.1) with users of the test OpenID provider: who sees
which deployment (list, page, DAG tab, actions), the status filter, what a page shows (live state from the store,
inputs REDACTED, secrets blanked out of the template, only http(s) outputs clickable, everything escaped), and the
actions' CSRF guard. tests/test_ui_browser.py drives the same pages in Chromium inside a real Airflow."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from _api_fixtures import client, serving
from oidc_provider.fixture import Provider, running_provider

from dodas_tasks.api.settings import ApiSettings
from dodas_tasks.deploy import service
from dodas_tasks.iam import IamClient, IamConfig
from dodas_tasks.naming import deployment_dag_id, short_id
from dodas_tasks.store import REDACTED, DeploymentStatus, NodeState, Store
from dodas_tasks.ui.app import create_ui_app

AUDIENCE = "dodas"
ADMINS = "dodas-admins"
SECRET = "s3cr3t-Pa55word"
TEMPLATE = f"""
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
description: "A <script>alert('desc')</script> cluster"
topology_template:
  inputs:
    workers: {{type: integer, default: 2}}
    admin_password: {{type: string, default: "{SECRET}"}}
  node_templates:
    front:
      type: tosca.nodes.indigo.Compute
    worker:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {{properties: {{count: {{get_input: workers}}}}}}
"""
ACTION = {"X-DODAS-UI": "1"}


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider(600) as running:
        yield running


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path_factory.mktemp('ui') / 'dodas.db'}") as s:
        yield s


@pytest.fixture(scope="module")
def base(provider: Provider, store: Store) -> Iterator[str]:
    iam = IamClient(IamConfig(provider.issuer, provider.client_id, provider.client_secret, audience=AUDIENCE))
    app = create_ui_app(store=store, iam=lambda: iam, settings=ApiSettings(admin_groups=frozenset({ADMINS})))
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def users(base: str, provider: Provider) -> dict[str, httpx.Client]:
    groups = {"alice": ["cms"], "bob": ["ams"], "carol": ["cms"], "root": [ADMINS]}
    return {name: client(base, provider.login(name, aud=AUDIENCE, groups=g)) for name, g in groups.items()}


def submit(store: Store, provider: Provider, subject: str, user_group: str | None = None) -> str:
    """A deployment of `subject`, as the orchestrator API or dodas_submit records it, with two running VMs."""
    owner = service.Owner(subject=subject, issuer=provider.issuer)
    deployment_id = service.submit(store, TEMPLATE, {}, cloud="local", owner=owner, user_group=user_group)
    store.upsert_node(deployment_id, "front", 0, state=NodeState.STARTED, private_ip="127.77.9.1")
    store.upsert_node(deployment_id, "worker", 0, state=NodeState.CONFIGURING, private_ip="127.77.9.2")
    return deployment_id


def listed(user: httpx.Client, **params: str) -> str:
    answer = user.get("/deployments", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    return answer.text


def test_a_user_sees_only_their_own_and_their_groups_deployments(
    store: Store, provider: Provider, users: dict[str, httpx.Client]
) -> None:
    alice, bob, carol, root = users["alice"], users["bob"], users["carol"], users["root"]
    mine = submit(store, provider, "alice")
    shared = submit(store, provider, "alice", user_group="cms")

    assert mine in listed(alice) and shared in listed(alice)
    assert mine not in listed(bob) and shared not in listed(bob)
    assert mine not in listed(carol) and shared in listed(carol)  # the group shares
    assert mine in listed(root) and "administrator" in listed(root)

    for answer in (
        bob.get(f"/deployments/{mine}"),
        bob.post(f"/deployments/{mine}/scale", json={"group": "worker", "count": 5}, headers=ACTION),
        bob.post(f"/deployments/{mine}/undeploy", headers=ACTION),
    ):
        assert answer.status_code == 403, answer.text
        assert "not yours" in answer.text and "alice" not in answer.text.replace("not yours", "")
    assert bob.get(f"/deployments/{mine[:8]}").status_code == 404  # a prefix only finds one's own
    assert bob.get(f"/dags/{deployment_dag_id(mine)}").status_code == 404  # nor does the DAG tab
    assert store.get_deployment(mine).desired_counts["worker"] == 2  # nothing recorded

    assert carol.get(f"/deployments/{shared}").status_code == 200
    assert root.get(f"/deployments/{mine}").status_code == 200
    tab = alice.get(f"/dags/{deployment_dag_id(mine)}", follow_redirects=False)
    assert tab.status_code == 303 and tab.headers["location"] == f"/deployments/{mine}"
    assert "is not a deployment" in alice.get("/dags/dodas_submit").text

    nobody = client(alice.base_url.__str__(), None)
    refused = nobody.get("/deployments")
    assert refused.status_code == 401 and "Log in to Airflow again" in refused.text


def test_the_list_filters_by_status_and_shows_vms_per_group(
    store: Store, provider: Provider, users: dict[str, httpx.Client]
) -> None:
    dave = users["root"]  # sees all
    done = submit(store, provider, "dave")
    store.set_status(done, DeploymentStatus.CREATE_COMPLETE, "SparkPi ran")
    gone = submit(store, provider, "dave")
    store.set_status(gone, DeploymentStatus.DELETE_COMPLETE, "all resources deleted")

    complete = listed(dave, status="CREATE_COMPLETE")
    assert done in complete and gone not in complete and "SparkPi ran" in complete
    assert f"<code>{short_id(done)}</code>" in complete
    assert "front 1" in complete and "worker 1/2" in complete  # one of two workers so far
    assert gone not in listed(dave) and gone in listed(dave, status="DELETE_COMPLETE")
    assert dave.get("/deployments", params={"status": "NOPE"}).status_code == 400
    live = dave.get("/deployments", params={"status": "CREATE_COMPLETE", "part": "live"}).text
    assert done in live and "<html" not in live  # the part the page refreshes


def test_a_deployments_page_shows_live_state_hides_secrets_and_escapes_everything(
    store: Store, provider: Provider, users: dict[str, httpx.Client]
) -> None:
    alice = users["alice"]
    deployment_id = submit(store, provider, "alice")
    outputs = {
        "ui": "http://127.77.9.1:8080",
        "bad": "javascript:alert('out')",
        "endpoints": ["https://example.org/a", "spark://127.77.9.1:7077"],
    }
    store.update_deployment(deployment_id, outputs=outputs)
    store.add_event(deployment_id, "status", "<img src=x onerror=alert('event')>")

    page = alice.get(f"/deployments/{deployment_id}")
    assert page.status_code == 200
    text = page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for shown in ("127.77.9.1", "127.77.9.2", "STARTED", "CONFIGURING", deployment_dag_id(deployment_id)):
        assert shown in text
    assert '<a href="http://127.77.9.1:8080"' in text and '<a href="https://example.org/a"' in text
    assert 'href="javascript:' not in text and "spark://127.77.9.1:7077</code>" in text
    assert "<script>alert" not in text and "<img src=x" not in text  # escaped, never markup
    assert "A &lt;script&gt;alert(" in text and "&lt;img src=x onerror" in text
    assert SECRET not in text and REDACTED in text  # the input and its default in the template
    assert text.count(REDACTED) >= 2


def test_actions_need_the_pages_header_and_go_through_the_request_path(
    store: Store, provider: Provider, users: dict[str, httpx.Client]
) -> None:
    alice = users["alice"]
    deployment_id = submit(store, provider, "alice")
    scale = f"/deployments/{deployment_id}/scale"
    forged = alice.post(scale, json={"group": "worker", "count": 4})  # a form or script of another site
    assert forged.status_code == 403 and "X-DODAS-UI" in forged.json()["message"]
    foreign = alice.post(
        scale, json={"group": "worker", "count": 4}, headers={**ACTION, "Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    front = store.list_nodes(deployment_id, group="front")[0].id
    wrong = alice.post(scale, json={"group": "worker", "count": 1, "removal_list": [front]}, headers=ACTION)
    assert wrong.status_code == 400 and "not VMs of group 'worker'" in wrong.json()["message"]
    unknown = alice.post(scale, json={"group": "nope", "count": 1}, headers=ACTION)
    assert unknown.status_code == 400 and "no compute group 'nope'" in unknown.json()["message"]

    worker = store.list_nodes(deployment_id, group="worker")[0].id
    done = alice.post(scale, json={"group": "worker", "count": 3, "removal_list": [worker]}, headers=ACTION)
    assert done.status_code == 202 and "worker → 3" in done.json()["message"]
    dep = store.get_deployment(deployment_id)
    assert dep.desired_counts["worker"] == 3 and dep.removal_list == [worker]

    assert alice.post(f"/deployments/{deployment_id}/undeploy").status_code == 403
    gone = alice.post(f"/deployments/{deployment_id}/undeploy", headers=ACTION)
    assert gone.status_code == 202
    assert store.get_deployment(deployment_id).status == DeploymentStatus.DELETE_IN_PROGRESS
    again = alice.post(f"/deployments/{deployment_id}/undeploy", headers=ACTION)
    assert again.status_code == 409 and "already being deleted" in again.json()["message"]
    store.set_status(deployment_id, DeploymentStatus.DELETE_COMPLETE, "all resources deleted")
    page = alice.get(f"/deployments/{deployment_id}").text  # a deleted deployment's page says how it ended
    assert "DELETE_COMPLETE" in page and 'id="actions"' not in page
