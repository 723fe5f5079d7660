"""The INDIGO PaaS orchestrator REST API on a real HTTP server (uvicorn on 127.0.0.1) with users of the test OpenID
provider process: who may do what, 401s with their reason, the orchestrator's errors, paging, ids by prefix,
updates that scale, deletion and its reset; no token in any answer, log line or stored row.

Nothing runs the deployment DAGs here (the API only records requests); tests/test_orchestrator_api_airflow.py
goes through a real Airflow with the plugin mounted.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _api_fixtures import AUDIENCE, client, orchestrator_app, serving
from oidc_provider.fixture import Provider, running_provider

from dodas_tasks.store import DeploymentStatus, NodeState, Store
from dodas_tasks.tosca.plan import Plan

REPO = Path(__file__).resolve().parents[1]
ADMINS = "dodas-admins"
VM = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  inputs:
    workers: {type: integer, default: 1}
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: {get_input: workers}}}
"""


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider(600) as running:
        yield running


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path_factory.mktemp('api') / 'dodas.db'}") as s:
        yield s


@pytest.fixture(scope="module")
def seen() -> list[str]:
    """Every answer the API gave in this module (headers and body)."""
    return []


class Lines(logging.Handler):
    """Every log record of the process while the module runs (the server's access log included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


SERVER_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error")


@pytest.fixture(scope="module")
def log_lines() -> Iterator[Lines]:
    """Root's records, the server's included: a logging setup run earlier in this process (Airflow's, when another
    test module ran first) may have disabled the server's loggers or stopped them propagating."""
    handler, root = Lines(), logging.getLogger()
    server_loggers = [logging.getLogger(name) for name in SERVER_LOGGERS]
    saved = [(logger, logger.disabled, logger.propagate, logger.level) for logger in [root, *server_loggers]]
    for logger in server_loggers:
        logger.disabled, logger.propagate, logger.level = False, True, logging.NOTSET
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for logger, disabled, propagate, level in saved:
            logger.disabled, logger.propagate = disabled, propagate
            logger.setLevel(level)


@pytest.fixture(scope="module")
def base(provider: Provider, store: Store, log_lines: Lines) -> Iterator[str]:
    app = orchestrator_app(provider, store, admin_groups=frozenset({ADMINS}))
    with serving(app, log_level="debug") as url:
        yield url


@pytest.fixture(scope="module")
def tokens(provider: Provider) -> dict[str, str]:
    return {
        "alice": provider.login("alice", aud=AUDIENCE, groups=["cms"]),
        "bob": provider.login("bob", aud=AUDIENCE, groups=["ams"]),
        "carol": provider.login("carol", aud=AUDIENCE, groups=["cms"]),
        "root": provider.login("root", aud=AUDIENCE, groups=[ADMINS]),
    }


@pytest.fixture(scope="module")
def users(base: str, tokens: dict[str, str], seen: list[str]) -> dict[str, httpx.Client]:
    return {name: client(base, token, seen) for name, token in tokens.items()}


def submit(user: httpx.Client, **body: object) -> dict:
    return submit_text(user, VM, **body)


def submit_text(user: httpx.Client, template: str, parameters: dict | None = None, **body: object) -> dict:
    answer = user.post("/deployments", json={"template": template, "parameters": parameters or {}, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()


def ids_listed(user: httpx.Client, **params: object) -> set[str]:
    answer = user.get("/deployments", params={"size": 1000, **params})
    assert answer.status_code == 200, answer.text
    return {d["uuid"] for d in answer.json()["content"]}


def test_service_endpoints_and_the_openapi_document(base: str, provider: Provider, seen: list[str]) -> None:
    anyone = client(base, None, seen)
    assert anyone.get("/").status_code == 200 and "DODAS" in anyone.get("/").text
    assert anyone.get("/info").json()["app"]["name"]
    assert anyone.get("/configuration/").json()["iamUrl"] == provider.issuer  # trailing slash too
    paths = anyone.get("/openapi.json").json()["paths"]
    for path in ("/deployments", "/deployments/{deployment_id}", "/deployments/{deployment_id}/resources"):
        assert path in paths


def test_missing_expired_and_wrong_audience_tokens_get_401_with_the_reason(
    base: str, provider: Provider, seen: list[str]
) -> None:
    cases = {
        "no access token": client(base, None, seen),
        "expired": client(base, provider.login("alice", aud=AUDIENCE, ttl=5, issued_offset=-120), seen),
        "wrong audience": client(base, provider.login("alice", aud="someone-else"), seen),
        "malformed": client(base, "not-a-jwt.at-all.really", seen),
    }
    for reason, user in cases.items():
        for answer in (user.get("/deployments"), user.post("/deployments", json={"template": VM})):
            assert answer.status_code == 401, (reason, answer.text)
            body = answer.json()
            assert (body["code"], body["title"]) == (401, "Unauthorized") and reason in body["message"]
            assert reason in answer.headers["www-authenticate"]
    basic = httpx.get(f"{base}/deployments", headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert basic.status_code == 401 and "Bearer" in basic.json()["message"]


def test_a_user_cannot_list_read_scale_or_delete_another_users_deployment(users: dict[str, httpx.Client]) -> None:
    alice, bob, root = users["alice"], users["bob"], users["root"]
    mine = submit(alice)
    assert mine["status"] == DeploymentStatus.CREATE_IN_PROGRESS and mine["task"] == "DEPLOYER"
    assert mine["createdBy"]["subject"] == "alice" and mine["physicalId"].startswith("dodas_deployment_")
    assert {link["rel"] for link in mine["links"]} == {"self", "resources", "template"}
    uuid = mine["uuid"]

    assert uuid in ids_listed(alice) and uuid not in ids_listed(bob)
    for answer in (
        bob.get(f"/deployments/{uuid}"),
        bob.get(f"/deployments/{uuid}/template"),
        bob.get(f"/deployments/{uuid}/resources"),
        bob.put(f"/deployments/{uuid}", json={"template": VM, "parameters": {"workers": 3}}),
        bob.delete(f"/deployments/{uuid}"),
        bob.patch(f"/deployments/{uuid}", json={"status": "DELETE_FAILED"}),
    ):
        assert answer.status_code == 403, answer.text
        assert answer.json()["title"] == "Forbidden" and "not yours" in answer.json()["message"]
    assert bob.get(f"/deployments/{uuid[:8]}").status_code == 404  # a prefix only finds the caller's own

    assert alice.get(f"/deployments/{uuid[:8]}").json()["uuid"] == uuid  # the short id of the DAG name
    assert root.get(f"/deployments/{uuid}").status_code == 200  # administrators see all
    assert uuid in ids_listed(root) and uuid in ids_listed(root, createdBy=f"alice@{mine['createdBy']['issuer']}")
    assert bob.get("/deployments", params={"createdBy": f"alice@{mine['createdBy']['issuer']}"}).status_code == 403


def test_a_user_group_shares_a_deployment_with_its_members_only(users: dict[str, httpx.Client]) -> None:
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    shared = submit(alice, userGroup="cms")
    assert shared["userGroup"] == "cms"
    uuid = shared["uuid"]
    assert uuid in ids_listed(carol) and uuid in ids_listed(carol, userGroup="cms")
    assert carol.get(f"/deployments/{uuid}").status_code == 200
    assert uuid not in ids_listed(carol, createdBy="me")
    assert bob.get(f"/deployments/{uuid}").status_code == 403 and uuid not in ids_listed(bob)
    assert bob.get("/deployments", params={"userGroup": "cms"}).status_code == 403
    refused = alice.post("/deployments", json={"template": VM, "userGroup": "ams"})
    assert refused.status_code == 403 and "not a member of group 'ams'" in refused.json()["message"]


def test_listing_is_paged_and_sorted_as_spring_data_does(users: dict[str, httpx.Client]) -> None:
    carol = users["carol"]
    made = [submit(carol, parameters={"workers": 1})["uuid"] for _ in range(3)]
    first = carol.get("/deployments", params={"createdBy": "me", "size": 2, "sort": "createdAt,asc"}).json()
    assert first["page"] == {"size": 2, "totalElements": 3, "totalPages": 2, "number": 0}
    assert [d["uuid"] for d in first["content"]] == made[:2]
    links = {link["rel"]: link["href"] for link in first["links"]}
    assert set(links) == {"self", "first", "next", "last"} and "createdBy=me" in links["next"]
    second = carol.get(links["next"]).json()
    assert [d["uuid"] for d in second["content"]] == made[2:] and second["page"]["number"] == 1
    newest = carol.get("/deployments/", params={"createdBy": "me"}).json()["content"]  # default: createdAt,desc
    assert [d["uuid"] for d in newest] == made[::-1]
    for params, reason in [({"sort": "template,asc"}, "cannot sort by 'template'"), ({"size": 0}, "size")]:
        answer = carol.get("/deployments", params=params)
        assert answer.status_code == 400 and reason in answer.json()["message"]


def test_bad_requests_get_400_with_a_clear_reason(users: dict[str, httpx.Client]) -> None:
    alice = users["alice"]
    broken = VM.replace("tosca.nodes.indigo.Compute", "tosca.nodes.indigo.NoSuchThing")
    answer = alice.post("/deployments", json={"template": broken})
    assert answer.status_code == 400
    message = answer.json()["message"]
    assert "template:10:7:" in message and "node 'vm'" in message and "NoSuchThing" in message  # file:line:col
    assert "Traceback" not in message
    for body, reason in [
        ({"template": VM, "timeoutMins": 5, "providerTimeoutMins": 10}, "must not exceed timeoutMins"),
        ({"template": VM, "callback": "ftp://example.org/x"}, "callback"),
        ({"template": VM, "maxProvidersRetry": 0}, "maxProvidersRetry"),
        ({"parameters": {}}, "template"),
        ({"template": VM, "parameters": {"workers": "many"}}, "workers"),
    ]:
        answer = alice.post("/deployments", json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert reason in answer.json()["message"] and answer.json()["code"] == 400


def test_ids_malformed_short_and_ambiguous(users: dict[str, httpx.Client], store: Store, provider: Provider) -> None:
    alice = users["alice"]
    for reference, reason in [("xyz!", "not a deployment id"), ("96ef7b", "too short")]:
        answer = alice.get(f"/deployments/{reference}")
        assert answer.status_code == 400 and reason in answer.json()["message"]
        assert "\n" not in answer.json()["message"]
    twins = [f"abcdef12-{n}000-4000-8000-000000000000" for n in (1, 2)]
    for twin in twins:  # two deployments whose ids share 8 characters (the API never makes such ids)
        store.create_deployment(
            deployment_id=twin, template=VM, plan=Plan(), owner_subject="alice", owner_issuer=provider.issuer,
            ssh_private_key="k", ssh_public_key="p",
        )  # fmt: skip
    answer = alice.get("/deployments/abcdef12")
    assert answer.status_code == 400 and all(t in answer.json()["message"] for t in twins)
    assert alice.get("/deployments/abcdef12-1").json()["uuid"] == twins[0]
    assert alice.get("/deployments/0000000000000000000000000000abcd").status_code == 404


def test_an_update_scales_merges_parameters_and_refuses_other_changes(
    users: dict[str, httpx.Client], store: Store
) -> None:
    alice = users["alice"]
    uuid = submit(alice, parameters={"workers": 2})["uuid"]
    answer = alice.put(f"/deployments/{uuid}/", json={"template": VM, "parameters": {"workers": 3}})
    assert answer.status_code == 202, answer.text  # queued while the first run has not even started
    dep = store.get_deployment(uuid)
    assert dep.desired_counts == {"vm": 3} and dep.inputs["workers"] == 3
    assert any("vm: 2 → 3" in e.message for e in store.list_events(uuid))

    removal = VM.replace("{count: {get_input: workers}}", "{count: 2, removal_list: [node-to-go]}")
    assert alice.put(f"/deployments/{uuid}", json={"template": removal}).status_code == 202
    dep = store.get_deployment(uuid)
    assert dep.desired_counts == {"vm": 2} and dep.removal_list == ["node-to-go"]
    assert alice.get(f"/deployments/{uuid}/template").text == removal  # CLUES reads back what it wrote

    other = removal + "        os: {properties: {image: other-image}}\n"
    refused = alice.put(f"/deployments/{uuid}", json={"template": other})
    assert refused.status_code == 400 and "groups vm" in refused.json()["message"]


def test_delete_twice_conflicts_and_a_stuck_deletion_is_reset(users: dict[str, httpx.Client], store: Store) -> None:
    alice = users["alice"]
    uuid = submit(alice)["uuid"]
    assert alice.patch(f"/deployments/{uuid}", json={"status": "DELETE_FAILED"}).status_code == 409
    assert alice.delete(f"/deployments/{uuid}").status_code == 204
    assert store.get_deployment(uuid).status == DeploymentStatus.DELETE_IN_PROGRESS
    again = alice.delete(f"/deployments/{uuid}")
    assert again.status_code == 409 and "DELETE_FAILED" in again.json()["message"]
    scale = alice.put(f"/deployments/{uuid}", json={"template": VM, "parameters": {"workers": 2}})
    assert scale.status_code == 409 and "cannot be updated" in scale.json()["message"]
    assert alice.patch(f"/deployments/{uuid}", json={"status": "CREATE_COMPLETE"}).status_code == 400
    assert alice.patch(f"/deployments/{uuid}/", json={"status": "DELETE_FAILED"}).status_code == 204
    assert store.get_deployment(uuid).status == DeploymentStatus.DELETE_FAILED
    assert alice.delete(f"/deployments/{uuid}").status_code == 204  # asked again
    store.set_status(uuid, DeploymentStatus.DELETE_COMPLETE, "all resources deleted")  # as the DAG would end it
    gone = alice.get(f"/deployments/{uuid}")
    assert gone.status_code == 404 and "was deleted" in gone.json()["message"]
    assert uuid not in ids_listed(alice)


def test_details_template_resources_log_and_extra_info(users: dict[str, httpx.Client]) -> None:
    alice = users["alice"]
    uuid = submit(alice)["uuid"]
    template = alice.get(f"/deployments/{uuid}/template")
    assert template.headers["content-type"].startswith("text/plain") and template.text == VM
    resources = alice.get(f"/deployments/{uuid}/resources").json()
    assert resources["content"] == [] and resources["page"]["totalElements"] == 0  # no VM recorded yet
    assert "(new) → CREATE_IN_PROGRESS" in alice.get(f"/deployments/{uuid}/log").text
    assert alice.get(f"/deployments/{uuid}/extrainfo").json() == []
    assert alice.get(f"/deployments/{uuid}/resources/{uuid}").status_code == 404


def test_resources_are_node_instances_with_orchestrator_states(users: dict[str, httpx.Client], store: Store) -> None:
    """Each VM is a resource (its id the node's: what removal_list takes), each component one per VM it runs on."""
    alice = users["alice"]
    spark = (REPO / "templates" / "spark_local.yaml").read_text()
    uuid = submit_text(alice, spark, {"number_of_workers": 2})["uuid"]
    master = store.upsert_node(uuid, "spark-master-server", 0, state=NodeState.STARTED, private_ip="127.77.0.2")
    store.update_node(master.id, applied={"spark_master": "digest"})  # as the deploy step records it
    workers = [store.upsert_node(uuid, "spark-worker-server", i, state=NodeState.CREATING) for i in range(2)]
    found = alice.get(f"/deployments/{uuid}/resources").json()["content"]
    by_id = {r["uuid"]: r for r in found}
    assert len(found) == 6  # 3 VMs, the master component on one, the worker component on two
    assert by_id[master.id]["state"] == "STARTED" and by_id[master.id]["toscaNodeName"] == "spark-master-server"
    assert by_id[master.id]["metadata"]["privateIp"] == "127.77.0.2"
    (on_master,) = by_id[master.id]["requiredBy"]
    assert by_id[on_master]["toscaNodeName"] == "spark_master" and by_id[on_master]["state"] == "STARTED"
    for worker in workers:
        (on_worker,) = by_id[worker.id]["requiredBy"]
        assert by_id[worker.id]["state"] == "CREATING" and by_id[on_worker]["state"] == "INITIAL"
    typed = alice.get(f"/deployments/{uuid}/resources", params={"type": "tosca.nodes.indigo.dodas.SparkWorker"})
    assert {r["toscaNodeName"] for r in typed.json()["content"]} == {"spark_worker"}
    one = alice.get(f"/deployments/{uuid}/resources/{on_master}").json()
    assert one["links"][0]["href"].endswith(f"/deployments/{uuid}/resources/{on_master}")
    assert [vm["vmName"] for vm in alice.get(f"/deployments/{uuid}/extrainfo").json()] == [
        master.name,
        *(w.name for w in workers),
    ]


def test_no_token_in_any_answer_log_line_or_stored_row(
    tokens: dict[str, str], seen: list[str], store: Store, log_lines: Lines
) -> None:
    assert len(seen) > 50  # the tests above ran in this module
    with sqlite3.connect(Path(store.engine.url.database)) as raw:
        rows = "\n".join(raw.iterdump())
    records = "\n".join(log_lines.lines)
    assert '"GET /deployments' in records  # the access log was on
    leaks = [
        (name, where)
        for name, token in tokens.items()
        for where, text in (("answers", "\n".join(seen)), ("store", rows), ("log", records))
        if token in text
    ]
    assert leaks == []
