"""One live Airflow with the DODAS plugin for every test that goes through its doors (REST API, orchestrator API,
Deployments pages in a browser): starting and stopping one costs ~40 s of a 2-core machine, so they share it.

tests/conftest.py registers these session fixtures and keeps the files that use them on one xdist worker
(SHARED_STACK_FILES), so one stack is started per test session, not one per file. The stack has its own store
(DODAS_HOME), the test OpenID provider as its `dodas_iam` connection, Airflow users alice and bob (role `user`)
besides the admin, and no periodic re-parse: only dodas_submit's explicit re-parse request shows a new DAG.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from oidc_provider.fixture import Provider, running_provider

if TYPE_CHECKING:
    from dodas_tasks.devstack.local_airflow import AirflowStack

REPO = Path(__file__).resolve().parents[1]
AUDIENCE = "dodas"  # of the tokens the stack's IAM connection accepts
ADMIN_GROUP = "dodas-admins"
AIRFLOW_USERS = {"alice": "user", "bob": "user"}  # besides the stack's admin
SHARED_STACK_FILES = ("test_orchestrator_api_airflow.py", "test_rest_flow.py", "test_ui_browser.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def plugin_stack_provider() -> Iterator[Provider]:
    """The OpenID provider the plugin stack trusts (tokens live 900 s: the flows through it take minutes)."""
    with running_provider(900) as running:
        yield running


@pytest.fixture(scope="session")
def plugin_stack(tmp_path_factory: pytest.TempPathFactory, plugin_stack_provider: Provider) -> Iterator[AirflowStack]:
    from dodas_tasks.clouds.local import LocalCloud
    from dodas_tasks.devstack.local_airflow import AirflowStack

    root = tmp_path_factory.mktemp("plugin-stack")
    dodas_home = root / "dodas"
    iam = {
        "conn_type": "http",
        "host": plugin_stack_provider.issuer,
        "login": plugin_stack_provider.client_id,
        "password": plugin_stack_provider.client_secret,
        "extra": {"audience": AUDIENCE, "group_claim": "groups"},
    }
    users = ",".join(["admin:admin", *(f"{name}:{role}" for name, role in AIRFLOW_USERS.items())])
    stack = AirflowStack(
        root / "home",
        REPO / "dags",
        REPO / "plugins",
        port=_free_port(),
        parallelism=4,
        extra_env={
            "DODAS_HOME": str(dodas_home),
            "AIRFLOW_CONN_DODAS_IAM": json.dumps(iam),
            "DODAS_API_ADMIN_GROUPS": ADMIN_GROUP,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
            # no periodic re-parse: only dodas_submit's explicit re-parse can show a new DAG
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
            # a deleted deployment's DAG goes at the next parse (by default it stays 10 min for its last tasks), and
            # Airflow marks a DAG gone from its file stale within seconds (defaults: 50 s after it last saw it,
            # checked every 60 s)
            "DODAS_DAG_RETIRE_S": "0",
            "AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD": "2",
            "AIRFLOW__SCHEDULER__PARSING_CLEANUP_INTERVAL": "2",
        },
    )
    stack.admin_credentials()  # writes the admin's password file; the users' passwords are ours, never printed
    passwords = json.loads(stack.passwords_file.read_text())
    passwords.update({name: secrets.token_urlsafe(12) for name in AIRFLOW_USERS})
    stack.passwords_file.write_text(json.dumps(passwords))
    stack.start()
    try:
        yield stack
    finally:
        try:
            stack.stop()
        finally:  # VMs a failed test left behind: each sandbox and what it started, stopped by its PID
            cloud = LocalCloud(home=dodas_home)
            for server in cloud.list_all():
                cloud.delete_server(server.id)


@pytest.fixture
def plugin_store_env(plugin_stack: AirflowStack, monkeypatch: pytest.MonkeyPatch) -> AirflowStack:
    """This test process reads the plugin stack's store as its tasks do (same DODAS_HOME and Fernet key)."""
    env = plugin_stack.env()
    for name in ("DODAS_HOME", "AIRFLOW__CORE__FERNET_KEY"):
        monkeypatch.setenv(name, env[name])
    return plugin_stack
