"""Listing and naming deployments in the store: who sees which, pages sorted and cut in SQL, ids by 8+ character
prefix (ambiguous and malformed ones refused with the reason), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dodas_tasks.store import (
    AmbiguousDeploymentId,
    DeploymentFilter,
    DeploymentNotFoundError,
    DeploymentStatus,
    MalformedDeploymentId,
    Store,
    Visibility,
)
from dodas_tasks.tosca.plan import Plan

ISSUER = "https://iam.example.org"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    sqlite = request.param == "sqlite"
    url = f"sqlite:///{tmp_path / 'listing.db'}" if sqlite else request.getfixturevalue("postgres_url")
    with Store(url) as s:
        yield s
        if not sqlite:  # the session's database is shared by the tests of this file
            import sqlalchemy as sa

            with s.engine.begin() as connection:
                connection.execute(sa.text("DELETE FROM deployments"))


def new(store: Store, subject: str, deployment_id: str, group: str | None = None) -> str:
    return store.create_deployment(
        deployment_id=deployment_id,
        template="tosca_definitions_version: tosca_simple_yaml_1_0\n",
        plan=Plan(),
        owner_subject=subject,
        owner_issuer=ISSUER,
        ssh_private_key="k",
        ssh_public_key="p",
        user_group=group,
        callback="http://127.0.0.1:9/hook" if group else None,
    )


def test_visibility_own_shared_and_everyone(store: Store) -> None:
    mine = new(store, "alice", "aaaaaaaa-0000-4000-8000-000000000001")
    shared = new(store, "bob", "bbbbbbbb-0000-4000-8000-000000000002", group="cms")
    private = new(store, "bob", "cccccccc-0000-4000-8000-000000000003")
    gone = new(store, "alice", "dddddddd-0000-4000-8000-000000000004")
    store.set_status(gone, DeploymentStatus.DELETE_COMPLETE)

    def ids(visibility: Visibility, **more: object) -> set[str]:
        page = store.page_deployments(DeploymentFilter(visibility=visibility, **more), size=100)  # type: ignore[arg-type]
        assert page.total == len(page.items)
        return {d.id for d in page.items}

    alice = Visibility(ISSUER, "alice", groups=("cms",))
    assert ids(alice) == {mine, shared}
    assert ids(Visibility(ISSUER, "alice")) == {mine}
    assert ids(Visibility("https://other.example.org", "alice", groups=("ams",))) == set()  # same sub, other issuer
    assert ids(Visibility(ISSUER, "root", everyone=True)) == {mine, shared, private}
    assert ids(alice, include_deleted=True) == {mine, shared, gone}
    assert ids(alice, owner=(ISSUER, "alice")) == {mine}
    assert ids(alice, user_group="cms") == {shared}
    summary = store.page_deployments(DeploymentFilter(visibility=alice, user_group="cms")).items[0]
    assert (summary.user_group, summary.callback, summary.owner_subject) == ("cms", "http://127.0.0.1:9/hook", "bob")
    assert alice.admits(ISSUER, "bob", "cms") and not alice.admits(ISSUER, "bob", None)


def test_pages_are_sorted_and_cut_in_sql(store: Store) -> None:
    made = [new(store, "alice", f"{i:08x}-0000-4000-8000-{i:012x}") for i in range(1, 26)]
    first = store.page_deployments(sort=[("created_at", True)], number=0, size=10)
    last = store.page_deployments(sort=[("created_at", True)], number=2, size=10)
    assert first.total == 25 and len(first.items) == 10 and len(last.items) == 5
    assert [d.id for d in first.items] == made[::-1][:10]  # newest first
    every = [d.id for n in range(3) for d in store.page_deployments(sort=[("id", False)], number=n, size=10).items]
    assert every == sorted(made)  # pages never overlap or skip
    with pytest.raises(ValueError, match="cannot sort by template"):
        store.page_deployments(sort=[("template", False)])


def test_ids_by_prefix(store: Store) -> None:
    one = new(store, "alice", "96ef7b8a-1111-4000-8000-000000000001")
    twin_a = new(store, "alice", "12345678-aaaa-4000-8000-000000000001")
    twin_b = new(store, "bob", "12345678-bbbb-4000-8000-000000000002")
    assert store.resolve_id("96ef7b8a") == one
    assert store.resolve_id("96EF7B8A-11") == one
    assert store.resolve_id("96ef7b8a11") == one  # dashes are optional
    assert store.resolve_id(one) == one
    with pytest.raises(AmbiguousDeploymentId) as ambiguous:
        store.resolve_id("12345678")
    assert ambiguous.value.candidates == [twin_a, twin_b] and twin_a in str(ambiguous.value)
    only_alice = DeploymentFilter(visibility=Visibility(ISSUER, "alice"))
    assert store.resolve_id("12345678", only_alice) == twin_a  # a prefix only finds what the caller may see
    with pytest.raises(DeploymentNotFoundError):
        store.resolve_id("ffffffff")
    for bad, reason in [("96ef7b", "too short"), ("not-an-id!", "not a deployment id"), ("", "not a deployment id")]:
        with pytest.raises(MalformedDeploymentId, match=reason):
            store.resolve_id(bad)


def test_status_filter_and_shapes_for_the_deployments_page(store: Store) -> None:
    done = new(store, "alice", "eeeeeeee-0000-4000-8000-000000000005")
    busy = new(store, "alice", "ffffffff-0000-4000-8000-000000000006")
    store.set_status(done, DeploymentStatus.CREATE_COMPLETE)
    store.update_deployment(done, plan=Plan(description="two workers"), desired_counts={"worker": 2, "front": 1})
    store.upsert_node(done, "worker", 0, state="STARTED")
    store.upsert_node(done, "worker", 1, state="DELETED")

    complete = store.page_deployments(DeploymentFilter(statuses=frozenset({DeploymentStatus.CREATE_COMPLETE})))
    assert [d.id for d in complete.items] == [done]
    shapes = store.deployment_shapes([done, busy])
    assert (shapes[done].description, shapes[done].vms, shapes[done].desired) == (
        "two workers",
        {"worker": 1},  # the deleted VM is not counted
        {"worker": 2, "front": 1},
    )
    assert (shapes[busy].description, shapes[busy].vms) == ("", {})
