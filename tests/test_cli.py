"""The `dodas` command line as a user runs it: exit codes, stdout/stderr, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dodas_tasks.store import NodeState, Store
from dodas_tasks.tosca.plan import NodeGroup, Plan

REPO = Path(__file__).resolve().parents[1]
SPARK = REPO / "templates" / "spark_local.yaml"


def dodas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dodas_tasks.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_validate_ok_lists_stages_and_needed_inputs(tmp_path: Path) -> None:
    needs = tmp_path / "needs.yaml"
    needs.write_text(SPARK.read_text().replace('      default: "ubuntu-22.04"\n', ""))
    result = dodas("validate", str(needs))
    assert result.returncode == 0, result.stderr
    assert "deploy: spark_master, spark_worker" in result.stdout
    assert "inputs a submission must give:" in result.stdout and "server_image" in result.stdout


def test_validate_with_inputs_file_and_flags(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("number_of_workers: 5\n")
    result = dodas("validate", str(SPARK), "--inputs-file", str(inputs), "-i", "worker_cpus=2")
    assert result.returncode == 0, result.stderr
    assert "spark-worker-server: count 5" in result.stdout and "2 cpu" in result.stdout


def test_validate_errors_exit_2_on_stderr_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPARK.read_text().replace("tosca.nodes.indigo.dodas.SparkWorker", "tosca.nodes.DODAS.Worker"))
    result = dodas("validate", str(bad), "-i", "number_of_workers=lots")
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{bad}:" in result.stderr and "tosca.nodes.DODAS.Worker" in result.stderr
    assert "'number_of_workers' = 'lots'" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_unreadable_and_malformed_arguments(tmp_path: Path) -> None:
    missing = dodas("validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read template" in missing.stderr
    bad_flag = dodas("validate", str(SPARK), "-i", "novalue")
    assert bad_flag.returncode == 2 and "expected KEY=VALUE" in bad_flag.stderr
    for result in (missing, bad_flag):
        assert "Traceback" not in result.stderr


def test_compile_prints_plan_json() -> None:
    result = dodas("compile", str(SPARK), "-i", "number_of_workers=3")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["version"] == 1
    assert {g["name"]: g["count"] for g in plan["groups"]} == {"spark-master-server": 1, "spark-worker-server": 3}


def test_help_names_every_command() -> None:
    result = dodas("--help")
    assert result.returncode == 0
    for command in ("validate", "compile", "submit", "list", "status", "scale", "undeploy", "demo", "stop"):
        assert command in result.stdout


# -- deployment ids and refusals (the store only: no Airflow needed to refuse an id) ----------------------------

FIRST = "96ef7b8a-0c1d-4e5f-8a9b-0123456789ab"
TWIN = "96ef7b8a-ffff-4e5f-8a9b-0123456789ab"  # the same 8-character short id
OTHER = "12345678-0c1d-4e5f-8a9b-0123456789ab"


@pytest.fixture
def deployments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Three deployments in a store of this test's own (the CLI subprocesses inherit DODAS_HOME)."""
    monkeypatch.setenv("DODAS_HOME", str(tmp_path / "dodas"))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))  # no Airflow runs there
    with Store() as store:
        for deployment_id in (FIRST, TWIN, OTHER):
            store.create_deployment(
                deployment_id=deployment_id,
                template="tosca_definitions_version: tosca_simple_yaml_1_0\n",
                plan=Plan(groups=[NodeGroup("vm")]),
                owner_subject="alice",
                owner_issuer="local",
                ssh_private_key="private",
                ssh_public_key="ssh-ed25519 AAAA",
            )
    return [FIRST, TWIN, OTHER]


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_status_takes_the_short_id_of_dag_names(deployments: list[str]) -> None:
    result = dodas("status", "12345678", "--events", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"deployment {OTHER}: CREATE_IN_PROGRESS")
    assert dodas("status", "96ef7b8a-0c1d").returncode == 0


def test_ambiguous_malformed_and_unknown_ids_are_refused_in_one_line(deployments: list[str]) -> None:
    for command in (["status"], ["undeploy"], ["scale"]):
        extra = ["vm", "1"] if command == ["scale"] else []
        assert_one_line_refusal(dodas(*command, "96ef7b8a", *extra), "ambiguous", FIRST, TWIN)
        assert_one_line_refusal(dodas(*command, "96ef", *extra), "too short")
        assert_one_line_refusal(dodas(*command, "dodas_deployment_96ef7b8a", *extra), "is not a deployment id")
        assert_one_line_refusal(dodas(*command, "abcdef0123", *extra), "no deployment with id 'abcdef0123'")


def test_stop_without_a_running_stack_says_so(deployments: list[str]) -> None:
    result = dodas("stop")
    assert result.returncode == 0, result.stderr
    assert "Airflow is not running" in result.stdout


def test_template_resources_and_list_read_the_local_store(deployments: list[str]) -> None:
    with Store() as store:
        vm = store.upsert_node(OTHER, "vm", 0, state=NodeState.CREATING, private_ip="127.77.0.9")
    template = dodas("template", "12345678")
    assert template.returncode == 0, template.stderr
    assert template.stdout == "tosca_definitions_version: tosca_simple_yaml_1_0\n"
    resources = dodas("resources", "12345678")
    assert resources.returncode == 0, resources.stderr
    (line,) = resources.stdout.splitlines()  # the VM (the plan has no component)
    assert line.startswith(f"{vm.id}  CREATING    vm ") and "tosca.nodes.indigo.Compute" in line
    assert line.endswith(f"{vm.name} 127.77.0.9")
    assert dodas("resources", "12345678", "--type", "tosca.nodes.indigo.dodas.SparkWorker").stdout == ""
    listed = dodas("list")
    assert listed.returncode == 0, listed.stderr
    assert [row.split()[:3] for row in listed.stdout.splitlines()] == [
        [deployment_id, "CREATE_IN_PROGRESS", "local"] for deployment_id in deployments
    ]
    assert all(row.endswith("  alice") for row in listed.stdout.splitlines())
    for command in ("template", "resources"):
        assert_one_line_refusal(dodas(command, "96ef7b8a"), "ambiguous", FIRST, TWIN)
        assert_one_line_refusal(dodas(command, "96ef"), "too short")


def test_help_names_the_commands_that_read_a_deployment() -> None:
    result = dodas("--help")
    assert result.returncode == 0
    for command in ("template", "resources"):
        assert command in result.stdout


def test_db_migrate_creates_the_store_database_on_postgresql_once() -> None:
    import uuid

    import sqlalchemy as sa

    server = "postgresql+psycopg://postgres@127.0.0.1:5432"
    name = f"dodas_test_cli_{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "DODAS_DATABASE_URL": f"{server}/{name}"}
    try:
        first = subprocess.run([sys.executable, "-m", "dodas_tasks.cli", "db", "migrate"], **_run(env))
        again = subprocess.run([sys.executable, "-m", "dodas_tasks.cli", "db", "migrate"], **_run(env))
    finally:
        admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    assert first.returncode == 0, first.stderr
    assert f"/{name} (database created): at revision " in first.stdout
    assert again.returncode == 0 and "(database created)" not in again.stdout and "at revision" in again.stdout


def test_db_migrate_refuses_an_unreachable_database_in_one_line() -> None:
    env = {**os.environ, "DODAS_DATABASE_URL": "postgresql+psycopg://nobody:secret-pw@127.0.0.1:1/x"}
    result = subprocess.run([sys.executable, "-m", "dodas_tasks.cli", "db", "migrate"], **_run(env))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "cannot migrate the DODAS store" in result.stderr and "secret-pw" not in result.stderr


def test_service_create_admin_writes_the_password_file(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "passwords.json"
    env = {
        **os.environ,
        "_AIRFLOW_WWW_USER_PASSWORD": "pw-from-env",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(path),
    }
    result = subprocess.run([sys.executable, "-m", "dodas_tasks.cli", "service", "create-admin"], **_run(env))
    assert result.returncode == 0, result.stderr
    assert json.loads(path.read_text()) == {"admin": "pw-from-env"} and path.stat().st_mode & 0o777 == 0o600
    assert "pw-from-env" not in result.stdout


def _run(env: dict[str, str]) -> dict:
    return {"capture_output": True, "text": True, "cwd": REPO, "timeout": 120, "env": env}
