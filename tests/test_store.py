"""The deployment store against real SQLite files (and PostgreSQL when DODAS_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.resource_tracker
import os
import pickle
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.fernet import Fernet

from dodas_tasks import crypto
from dodas_tasks.store import (
    REDACTED,
    AmbiguousDeploymentId,
    DeploymentIdError,
    DeploymentNotFoundError,
    DeploymentStatus,
    MalformedDeploymentId,
    NodeState,
    Store,
)
from dodas_tasks.store.migrate import current_revisions, head_revisions
from dodas_tasks.store.models import Base, Deployment
from dodas_tasks.tosca.plan import NodeGroup, Plan

PASSWORD = "hunter2-very-secret"
REFRESH_TOKEN = "refresh-token-abcdef-0123456789"
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nprivate-key-material-xyz\n-----END OPENSSH PRIVATE KEY-----\n"
WORKERS = 4
ITERATIONS = 100
SLOTS = 10
PROCESS_DEADLINE_S = 300


@pytest.fixture
def fernet_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fresh Airflow-style key in the environment (inherited by spawned workers) and a private DODAS_HOME."""
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", key)
    monkeypatch.setenv("DODAS_HOME", str(tmp_path / "home"))
    return key


@pytest.fixture
def db_file(tmp_path: Path, fernet_key: str) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(db_file: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{db_file}") as opened:
        yield opened


@pytest.fixture
def spawn_processes() -> Iterator[Callable[..., list[multiprocessing.process.BaseProcess]]]:
    """Start worker processes (spawn); every one still alive at the end is killed by its PID and reaped."""
    started: list[multiprocessing.process.BaseProcess] = []
    context = multiprocessing.get_context("spawn")

    def start(target: Callable[..., None], args_per_process: list[tuple]) -> list[multiprocessing.process.BaseProcess]:
        for args in args_per_process:
            process = context.Process(target=target, args=args)
            process.start()
            started.append(process)
        return started

    yield start
    for process in started:
        if process.is_alive():
            process.kill()
        process.join()
    # spawn also started multiprocessing's resource-tracker helper; stop it too (it restarts on demand).
    tracker = getattr(multiprocessing.resource_tracker, "_resource_tracker", None)
    if tracker is not None and hasattr(tracker, "_stop"):
        tracker._stop()


def join_all(processes: list[multiprocessing.process.BaseProcess]) -> list[int | None]:
    for process in processes:
        process.join(timeout=PROCESS_DEADLINE_S)
    return [process.exitcode for process in processes]


def new_deployment(store: Store, **overrides: object) -> str:
    values: dict = dict(
        template="tosca_definitions_version: tosca_simple_yaml_1_0\n",
        plan=Plan(groups=[NodeGroup("wn", count=2)]),
        owner_subject="alice",
        owner_issuer="https://iam.example.org/",
        owner_groups=["cms"],
        inputs={"admin_password": PASSWORD, "wn_num": 2, "limits": {"cpu": 4}},
        secret_inputs=["admin_password"],
        clouds=["local", "openstack-a"],
        options={"keep_last_attempt": True},
        desired_counts={"wn": 2},
        refresh_token=REFRESH_TOKEN,
        ssh_private_key=PRIVATE_KEY,
        ssh_public_key="ssh-ed25519 AAAA alice",
    )
    values.update(overrides)
    return store.create_deployment(**values)


# -- round trip and secrets -----------------------------------------------------------------------------------


def test_create_and_read_round_trip(store: Store) -> None:
    deployment_id = new_deployment(store)
    record = store.get_deployment(deployment_id)

    assert record.id == deployment_id
    assert (record.owner_subject, record.owner_issuer, record.owner_groups) == (
        "alice",
        "https://iam.example.org/",
        ["cms"],
    )
    assert record.plan == Plan(groups=[NodeGroup("wn", count=2)])
    assert record.inputs == {"admin_password": REDACTED, "wn_num": 2, "limits": {"cpu": 4}}
    assert record.secret_inputs == ["admin_password"]
    assert record.status == DeploymentStatus.CREATE_IN_PROGRESS
    assert record.desired_counts == {"wn": 2}
    assert (record.cloud, record.clouds) == ("local", ["local", "openstack-a"])
    assert record.options == {"keep_last_attempt": True}
    assert record.has_refresh_token
    assert record.created_at.tzinfo is not None
    assert record.version == 1
    assert json.loads(json.dumps(record.to_dict()))["id"] == deployment_id

    assert store.get_inputs(deployment_id) == {"admin_password": PASSWORD, "wn_num": 2, "limits": {"cpu": 4}}
    assert store.deployment_secret_inputs(deployment_id) == {"admin_password": PASSWORD}
    assert store.get_refresh_token(deployment_id) == REFRESH_TOKEN
    assert store.get_ssh_private_key(deployment_id) == PRIVATE_KEY
    for text in (repr(record), json.dumps(record.to_dict())):
        assert PASSWORD not in text and REFRESH_TOKEN not in text and "private-key-material" not in text

    updated = store.update_deployment(
        deployment_id,
        outputs={"master_ip": "127.0.5.1"},
        known_hosts={"127.0.5.1": "ssh-ed25519 AAAAhost"},
        removal_list=["node-1"],
        refresh_token="rotated-token",
    )
    assert updated.outputs == {"master_ip": "127.0.5.1"} and updated.version == 2
    assert store.get_refresh_token(deployment_id) == "rotated-token"
    assert store.get_deployment(deployment_id) == updated


def test_the_plan_is_typed_decoded_once_and_travels_as_json(store: Store) -> None:
    plan = Plan(groups=[NodeGroup("wn", count=2)], description="two workers")
    deployment_id = new_deployment(store, plan=plan)
    record = store.get_deployment(deployment_id)

    assert record.plan == plan and record.plan is record.plan  # decoded on first use, then kept
    assert json.loads(json.dumps(record.to_dict()))["plan"] == plan.to_dict()
    travelled = pickle.loads(pickle.dumps(record))  # e.g. to another process
    assert travelled == record and travelled.plan == plan
    with pytest.raises(ValueError, match="plan must be a tosca Plan"):
        new_deployment(store, plan=plan.to_dict())

    with store.engine.begin() as connection:  # a plan this version cannot read (e.g. written by a newer one)
        connection.execute(sa.update(Deployment).values(plan={"version": 99}))
    (listed,) = store.list_deployments()  # listing does not decode plans: one unreadable plan hides nothing
    with pytest.raises(ValueError, match="plan version 99 is not supported"):
        _ = listed.plan


def test_secrets_are_encrypted_at_rest(store: Store, db_file: Path) -> None:
    deployment_id = new_deployment(store)
    store.update_deployment(deployment_id, inputs={"admin_password": PASSWORD, "token": "tok-987654"},
                            secret_inputs=["admin_password", "token"])  # fmt: skip

    with sqlite3.connect(db_file) as raw:
        rows = raw.execute("SELECT * FROM deployments").fetchall()
    raw_text = json.dumps(rows)
    for clear in (PASSWORD, REFRESH_TOKEN, "private-key-material", "tok-987654"):
        assert clear not in raw_text
    assert store.deployment_secret_inputs(deployment_id) == {"admin_password": PASSWORD, "token": "tok-987654"}


def test_modify_sees_nested_changes_and_rejects_non_json(store: Store) -> None:
    deployment_id = new_deployment(store, options={"limits": {"cpu": 1}})

    def bump_cpu(current):
        current.options["limits"]["cpu"] += 1  # mutating the snapshot in place must still be written
        return {"options": current.options}

    store.modify_deployment(deployment_id, bump_cpu)
    assert store.get_deployment(deployment_id).options == {"limits": {"cpu": 2}}
    with pytest.raises(ValueError, match="options must be JSON-serialisable"):
        store.update_deployment(deployment_id, options={"when": object()})


def test_unknown_ids_and_fields_are_refused_clearly(store: Store) -> None:
    with pytest.raises(DeploymentNotFoundError, match="no deployment with id 'nope'"):
        store.get_deployment("nope")
    deployment_id = new_deployment(store)
    with pytest.raises(ValueError, match="unknown deployment field"):
        store.update_deployment(deployment_id, colour="blue")
    with pytest.raises(ValueError, match="unknown deployment status 'DONE'"):
        store.set_status(deployment_id, "DONE")
    with pytest.raises(ValueError, match="desired_counts"):
        store.update_deployment(deployment_id, desired_counts={"wn": -1})


def test_bad_database_urls_are_explained_without_the_password() -> None:
    with pytest.raises(ValueError, match="cannot be parsed") as bad:
        Store("not a url with pw-s3cret")
    assert "s3cret" not in str(bad.value)
    with pytest.raises(ValueError, match="no database driver") as no_driver:
        Store("nosuchdb+nodriver://user:pw-s3cret@127.0.0.1/db")
    assert "s3cret" not in str(no_driver.value)


def test_list_deployments_filters(store: Store) -> None:
    alive = new_deployment(store)
    gone = new_deployment(store, owner_subject="bob")
    store.set_status(gone, DeploymentStatus.DELETE_COMPLETE)

    assert [d.id for d in store.list_deployments()] == [alive, gone]
    assert [d.id for d in store.list_deployments(live_only=True)] == [alive]
    assert [d.id for d in store.list_deployments(owner_subject="bob")] == [gone]


def test_ids_resolve_from_prefixes_of_8_or_more_characters(store: Store) -> None:
    first = new_deployment(store, deployment_id="96ef7b8a-0c1d-4e5f-8a9b-0123456789ab")
    twin = new_deployment(store, deployment_id="96ef7b8a-ffff-4e5f-8a9b-0123456789ab")  # same short id
    other = new_deployment(store, deployment_id="12345678-0c1d-4e5f-8a9b-0123456789ab")
    store.set_status(other, DeploymentStatus.DELETE_COMPLETE)

    assert store.resolve_id(first) == first
    assert store.resolve_id("96EF7B8A-0C1D") == first  # case and dashes ignored
    assert store.resolve_id("96ef7b8a0c1d") == first
    assert store.resolve_id("12345678") == other  # deleted ones too: `dodas status` shows them
    with pytest.raises(AmbiguousDeploymentId, match="'96ef7b8a' is ambiguous") as ambiguous:
        store.resolve_id("96ef7b8a")
    assert ambiguous.value.candidates == [first, twin]
    assert first in str(ambiguous.value) and twin in str(ambiguous.value)
    with pytest.raises(DeploymentNotFoundError, match="no deployment with id 'abcdef01'"):
        store.resolve_id("abcdef01")
    with pytest.raises(MalformedDeploymentId, match="too short: give at least 8"):
        store.resolve_id("96ef7b")
    with pytest.raises(MalformedDeploymentId, match="is not a deployment id"):
        store.resolve_id("dodas_deployment_96ef7b8a")
    for refusal in ("96ef7b8a", "abcdef01", "96ef7b", "x" * 40, ""):  # one kind to catch, one line to print
        with pytest.raises(DeploymentIdError) as refused:
            store.resolve_id(refusal)
        assert "\n" not in str(refused.value)


# -- events ---------------------------------------------------------------------------------------------------


def test_status_and_state_changes_create_events(store: Store) -> None:
    deployment_id = new_deployment(store)
    store.set_status(deployment_id, DeploymentStatus.CREATE_FAILED, reason="quota exceeded")
    assert store.get_deployment(deployment_id).status_reason == "quota exceeded"
    store.set_status(deployment_id, DeploymentStatus.UPDATE_IN_PROGRESS)
    assert store.get_deployment(deployment_id).status_reason is None
    node = store.upsert_node(deployment_id, "wn", 0)
    store.update_node(node.id, state=NodeState.ERROR, state_reason="boot timeout")
    store.add_event(deployment_id, "note", "hello", node_id=node.id)

    events = store.list_events(deployment_id)
    assert [(e.kind, e.message) for e in events] == [
        ("status", "(new) → CREATE_IN_PROGRESS"),
        ("status", "CREATE_IN_PROGRESS → CREATE_FAILED: quota exceeded"),
        ("status", "CREATE_FAILED → UPDATE_IN_PROGRESS"),
        ("node_state", f"{node.name} (wn[0]): (new) → INITIAL"),
        ("node_state", f"{node.name} (wn[0]): INITIAL → ERROR: boot timeout"),
        ("note", "hello"),
    ]
    assert events[-1].node_id == node.id
    assert [e.message for e in store.list_events(deployment_id, limit=2)] == [events[-2].message, "hello"]
    assert store.list_events(deployment_id, after_id=events[-2].id) == [events[-1]]


# -- nodes ----------------------------------------------------------------------------------------------------


def test_node_upsert_adopts_the_existing_row(store: Store, db_file: Path) -> None:
    deployment_id = new_deployment(store)
    first = store.upsert_node(deployment_id, "wn", 0, cloud="local")
    again = store.upsert_node(deployment_id, "wn", 0, cloud_id="vm-17", private_ip="127.0.9.1")

    assert again.id == first.id
    assert first.name == f"dodas-{deployment_id[:8]}-wn-0"
    assert (again.cloud, again.cloud_id, again.private_ip) == ("local", "vm-17", "127.0.9.1")
    assert [n.id for n in store.list_nodes(deployment_id)] == [first.id]
    with sqlite3.connect(db_file) as raw:
        assert raw.execute("SELECT count(*) FROM nodes").fetchone() == (1,)


def test_a_deleted_slot_can_be_filled_again_but_never_twice_live(store: Store, db_file: Path) -> None:
    deployment_id = new_deployment(store)
    old = store.upsert_node(deployment_id, "wn", 3)
    store.update_node(old.id, state=NodeState.DELETED)
    new = store.upsert_node(deployment_id, "wn", 3)

    assert new.id != old.id
    assert [n.id for n in store.list_nodes(deployment_id)] == [new.id]
    assert {n.id for n in store.list_nodes(deployment_id, include_deleted=True)} == {old.id, new.id}
    # The database itself (not only the store's code) refuses a second live node in the slot.
    with sqlite3.connect(db_file) as raw, pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        raw.execute(
            'INSERT INTO nodes (id, deployment_id, "group", "index", name, state, created_at, updated_at, version)'
            " SELECT 'dup', deployment_id, \"group\", \"index\", name, 'CREATING', created_at, updated_at, 1"
            " FROM nodes WHERE id = ?",
            (new.id,),
        )


# -- concurrency ----------------------------------------------------------------------------------------------


def _hammer(url: str, deployment_id: str, worker: int) -> None:
    """One worker process: read-modify-write a counter, add events, upsert shared node slots."""
    with Store(url) as store:
        for i in range(ITERATIONS):
            store.modify_deployment(
                deployment_id, lambda d: {"options": {**d.options, "counter": d.options.get("counter", 0) + 1}}
            )
            store.add_event(deployment_id, "tick", f"worker {worker} step {i}")
            node = store.upsert_node(deployment_id, "wn", i % SLOTS, cloud="local")
            store.update_node(node.id, private_ip=f"127.0.{worker + 10}.{i % SLOTS + 1}")


def test_concurrent_writers_lose_nothing(store: Store, db_file: Path, spawn_processes) -> None:
    deployment_id = new_deployment(store)
    url = f"sqlite:///{db_file}"
    workers = spawn_processes(_hammer, [(url, deployment_id, worker) for worker in range(WORKERS)])

    assert join_all(workers) == [0] * WORKERS
    assert store.get_deployment(deployment_id).options["counter"] == WORKERS * ITERATIONS
    assert len(store.list_events(deployment_id, limit=10_000)) >= WORKERS * ITERATIONS
    with sqlite3.connect(db_file) as raw:
        assert raw.execute("SELECT count(*) FROM events WHERE kind = 'tick'").fetchone() == (WORKERS * ITERATIONS,)
        assert raw.execute("SELECT count(*) FROM nodes").fetchone() == (SLOTS,)
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert sorted(n.index for n in store.list_nodes(deployment_id)) == list(range(SLOTS))


# -- migrations -----------------------------------------------------------------------------------------------


def _migrate(url: str) -> None:
    Store(url).migrate()


def test_migration_is_idempotent_and_safe_in_parallel(db_file: Path, spawn_processes) -> None:
    url = f"sqlite:///{db_file}"
    workers = spawn_processes(_migrate, [(url,)] * WORKERS)
    assert join_all(workers) == [0] * WORKERS

    with Store(url) as store:
        store.migrate()
        store.migrate()
        with store.engine.connect() as connection:
            assert current_revisions(connection) == head_revisions()
        assert store.list_deployments() == []


def assert_models_match_migrations(store: Store) -> None:
    store.migrate()
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_models_match_migrations(store: Store) -> None:
    assert_models_match_migrations(store)


# -- encryption keys ------------------------------------------------------------------------------------------


def test_key_rotation_keeps_old_secrets_readable(store: Store, monkeypatch: pytest.MonkeyPatch, fernet_key: str):
    deployment_id = new_deployment(store)
    newer = Fernet.generate_key().decode()
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", f"{newer},{fernet_key}")
    assert store.get_refresh_token(deployment_id) == REFRESH_TOKEN
    store.update_deployment(deployment_id, refresh_token="made-with-newer")

    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", newer)
    assert store.get_refresh_token(deployment_id) == "made-with-newer"
    with pytest.raises(crypto.SecretDecryptionError) as refused:
        store.get_ssh_private_key(deployment_id)  # still encrypted with the retired key only
    assert "private-key-material" not in str(refused.value)


def test_generated_key_file_is_private_and_reused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DODAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "")  # no Airflow key: airflow's conf reads the same variable
    monkeypatch.setenv("AIRFLOW_CONFIG", str(tmp_path / "no-airflow.cfg"))
    token = crypto.encrypt("s3cret")

    key_file = crypto.key_file_path()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert crypto.decrypt(token) == "s3cret"
    assert crypto.decrypt(crypto.encrypt("again")) == "again"
    assert key_file.read_text().strip() != ""
    assert os.listdir(key_file.parent) == [key_file.name]


def test_key_from_airflow_cfg_in_a_fresh_process(tmp_path: Path) -> None:
    """A process that has not imported airflow still uses the key of airflow.cfg (same key as the workers)."""
    key = Fernet.generate_key().decode()
    config = tmp_path / "airflow.cfg"
    config.write_text(f"[core]\nfernet_key = {key}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__CORE__FERNET_KEY")}
    env.update(AIRFLOW_CONFIG=str(config), DODAS_HOME=str(tmp_path / "home"))
    code = "import sys; from dodas_tasks import crypto; print(crypto.encrypt('x')); print('airflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    token, airflow_loaded = done.stdout.split()
    assert Fernet(key.encode()).decrypt(token.encode()) == b"x"
    assert airflow_loaded == "False"
    assert not (tmp_path / "home" / crypto.KEY_FILE_NAME).exists()


# -- PostgreSQL -----------------------------------------------------------------------------------------------


def test_postgresql_round_trip(fernet_key: str, postgres_url: str) -> None:
    with Store(postgres_url) as store:
        assert_models_match_migrations(store)
        deployment_id = new_deployment(store)
        first = store.upsert_node(deployment_id, "wn", 0)
        assert store.upsert_node(deployment_id, "wn", 0).id == first.id
        store.set_status(deployment_id, DeploymentStatus.CREATE_COMPLETE)
        assert store.get_inputs(deployment_id)["admin_password"] == PASSWORD
        assert [e.kind for e in store.list_events(deployment_id)][-1] == "status"
        with store.engine.begin() as connection:  # leave the shared database as we found it
            connection.execute(sa.text("DELETE FROM deployments WHERE id = :id"), {"id": deployment_id})


def test_head_revision_constant_matches_alembic() -> None:
    from dodas_tasks.store.migrate import alembic_heads, head_revisions

    assert head_revisions() == alembic_heads()
