"""Scale and undeploy requests racing on the same deployments, through the store on PostgreSQL (issue 14).

Twenty requests start together from threads, each with a Store of its own (its own connections, as the REST API,
the orchestrator API, the request DAGs and the elasticity trigger each have), through the functions all of them
call (deploy/service.py). "Last" is the store's commit order: a request's change and its event commit in one
transaction that holds the deployment's row lock from its UPDATE on, so event ids follow the commits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from dodas_tasks.deploy import service
from dodas_tasks.store import DeploymentStatus, Store

TWO_GROUPS = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  node_templates:
    wn:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: 1}}
        host: {properties: {num_cpus: 1, mem_size: 512 MB}}
    gpu:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: 1}}
        host: {properties: {num_cpus: 1, mem_size: 512 MB}}
"""


@pytest.fixture
def store(postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Store]:
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("DODAS_HOME", str(tmp_path / "home"))
    with Store(postgres_url) as opened:
        before = {d.id for d in opened.list_deployments()}
        yield opened
        made = [d.id for d in opened.list_deployments() if d.id not in before]
        with opened.engine.begin() as connection:  # leave the session's shared database as we found it
            connection.execute(sa.text("DELETE FROM deployments WHERE id = ANY(:ids)"), {"ids": made})


def race(url: str, requests: list[Callable[[Store], object]]) -> list[object]:
    """Run each request in a thread of its own, all released at once; each returns its result or its exception."""
    stores = [Store(url) for _ in requests]
    for opened in stores:
        opened.migrate()
    start = threading.Barrier(len(requests))

    def run(index: int) -> object:
        start.wait()
        try:
            return requests[index](stores[index])
        except Exception as exc:  # a refusal is an outcome to check, not a test error
            return exc

    try:
        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            return list(pool.map(run, range(len(requests))))
    finally:
        for opened in stores:
            opened.close()


def scale(deployment_id: str, group: str, count: int) -> Callable[[Store], object]:
    return lambda store: service.request_scale(store, deployment_id, group, count, reason=f"request {group}={count}")


def undeploy(deployment_id: str, who: str) -> Callable[[Store], object]:
    return lambda store: service.request_undeploy(store, deployment_id, reason=who)


def test_twenty_scale_and_undeploy_requests_race_without_a_lost_update(store: Store) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    scaled = service.submit(store, TWO_GROUPS, {})  # only scaled: each group ends at its last request's count
    deleted = service.submit(store, TWO_GROUPS, {})  # scaled and undeployed: the deletion is the last word
    requests = [scale(scaled, "wn", n) for n in range(2, 7)] + [scale(scaled, "gpu", n) for n in range(12, 17)]
    requests += [scale(deleted, ("wn", "gpu")[n % 2], n) for n in range(20, 28)]
    requests += [undeploy(deleted, "undeploy-a"), undeploy(deleted, "undeploy-b")]
    assert len(requests) == 20

    outcomes = race(url, requests)

    # Deployment only scaled: every request recorded once, and each group holds its last committed request's count.
    assert outcomes[:10] == [scaled] * 10
    events = [e for e in store.list_events(scaled, limit=1000) if e.kind == "scale"]
    assert sorted(e.message for e in events) == sorted(
        [f"wn: desired {n} — request wn={n}" for n in range(2, 7)]
        + [f"gpu: desired {n} — request gpu={n}" for n in range(12, 17)]
    )
    last = {group: next(e for e in reversed(events) if e.message.startswith(f"{group}:")) for group in ("wn", "gpu")}
    dep = store.get_deployment(scaled)
    assert dep.desired_counts == {g: int(e.message.split()[2]) for g, e in last.items()}
    assert dep.version == 1 + 10  # created, then one committed write per request: none lost, none doubled

    # Deployment scaled and undeployed: once a deletion is recorded no scale lands after it (each is refused),
    # and the deletion's zero counts are what stays.
    outcomes = outcomes[10:]
    accepted = [o for o in outcomes[:8] if o == deleted]
    refused = [o for o in outcomes[:8] if isinstance(o, service.RequestConflict)]
    assert len(accepted) + len(refused) == 8, outcomes
    assert outcomes[8:] == [deleted, deleted], outcomes
    dep = store.get_deployment(deleted)
    assert dep.status == DeploymentStatus.DELETE_IN_PROGRESS
    assert dep.desired_counts == {"wn": 0, "gpu": 0}
    history = store.list_events(deleted, limit=1000)
    deletion = next(e.id for e in history if e.kind == "status" and "→ DELETE_IN_PROGRESS" in e.message)
    scales = [e for e in history if e.kind == "scale"]
    assert len(scales) == len(accepted)  # every accepted scale recorded, no refused one
    assert all(e.id < deletion for e in scales), [(e.id, e.message) for e in history]
