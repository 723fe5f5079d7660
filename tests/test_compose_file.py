"""docker-compose.yml and its Dockerfile: valid Compose (the specification's schema; no Docker engine runs here),
the service's shape (Airflow's official compose file with the DODAS store), secrets only from a generated .env, and
how its services map onto processes here (dodas_tasks/devstack/compose.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from dodas_tasks.devstack import compose
from dodas_tasks.devstack.compose import LOCALCLOUD_SERVICE, ComposeError, Host, Placement, interpolate
from dodas_tasks.devstack.local_airflow import TASK_HEARTBEAT

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "tests" / "data" / "compose-spec" / "compose-spec.json"
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .env made the documented way: `dodas service env > .env`."""
    made = subprocess.run(
        [sys.executable, "-m", "dodas_tasks.cli", "service", "env"], capture_output=True, text=True, timeout=120
    )
    assert made.returncode == 0, made.stderr
    path = tmp_path_factory.mktemp("compose") / ".env"
    path.write_text(made.stdout)
    return path


@pytest.fixture(scope="module")
def config(env_file: Path) -> dict:
    return compose.load(compose.COMPOSE_FILE, env_file)


def test_the_file_is_valid_against_the_compose_specification(config: dict) -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(config)]
    assert problems == []


def test_it_has_the_official_shape_with_two_celery_workers_and_health_checks(config: dict) -> None:
    services = config["services"]
    workers = {name: s for name, s in services.items() if s.get("command") == "celery worker --skip-serve-logs"}
    assert {"postgres", "redis", "airflow-init"} | AIRFLOW_SERVICES <= set(services)
    assert len(workers) == 2 and len({s["hostname"] for s in workers.values()}) == 2
    for name in {"postgres", "redis"} | AIRFLOW_SERVICES | set(workers):
        assert services[name]["healthcheck"]["test"], name
    for name in AIRFLOW_SERVICES | set(workers):
        assert services[name]["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
        assert services[name]["depends_on"][LOCALCLOUD_SERVICE] == {"condition": "service_healthy"}
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert services[name]["environment"]["DODAS_LOCALCLOUD_URL"] == f"http://{LOCALCLOUD_SERVICE}:8780"
    init = "\n".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in init and "dodas db migrate" in init and "dodas service create-admin" in init
    common = services["airflow-apiserver"]["environment"]
    assert common["DODAS_DATABASE_URL"].startswith("postgresql+psycopg://")
    same_server = common["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rsplit("/", 1)[0]
    assert common["DODAS_DATABASE_URL"].rsplit("/", 1)[0] == same_server


def test_a_killed_task_is_retried_as_soon_as_in_the_dev_stack(config: dict) -> None:
    """Issue 16: the service's heartbeat thresholds are the dev stack's (README "Reliability")."""
    for name, service in config["services"].items():
        if name.startswith("airflow-"):
            assert {k: service["environment"].get(k) for k in TASK_HEARTBEAT} == TASK_HEARTBEAT, name


def test_the_local_cloud_is_a_service_of_its_own_that_workers_share(config: dict) -> None:
    cloud = config["services"][LOCALCLOUD_SERVICE]
    assert cloud["image"] == config["x-airflow-common"]["image"]
    assert [cloud["entrypoint"], *cloud["command"].split()[:2]] == ["dodas", "localcloud", "serve"]
    assert "--listen 0.0.0.0:8780" in cloud["command"] and "--gateway 0.0.0.0:2200" in cloud["command"]
    assert cloud["environment"]["DODAS_LOCALCLOUD_TOKEN"] and cloud["healthcheck"]["test"]
    assert [str(port) for port in cloud["expose"]] == ["8780", "2200"]


def test_secrets_come_only_from_the_env_file(env_file: Path, tmp_path: Path) -> None:
    text = compose.COMPOSE_FILE.read_text()
    for variable in (
        "AIRFLOW_FERNET_KEY",
        "AIRFLOW_JWT_SECRET",
        "AIRFLOW_API_SECRET_KEY",
        "POSTGRES_PASSWORD",
        "DODAS_LOCALCLOUD_TOKEN",
    ):
        assert f"${{{variable}:?" in text
    values = compose.read_dotenv(env_file)
    assert len(values["AIRFLOW_JWT_SECRET"]) >= 64 and len(values["_AIRFLOW_WWW_USER_PASSWORD"]) >= 16
    assert len(values["DODAS_LOCALCLOUD_TOKEN"]) >= 32
    assert ".env" in (REPO / ".gitignore").read_text().split() and ".env" in (REPO / ".dockerignore").read_text()
    empty = tmp_path / ".env"
    empty.write_text("")
    with pytest.raises(ComposeError, match="dodas service env"):
        compose.load(compose.COMPOSE_FILE, empty)


def test_the_image_is_the_official_airflow_of_the_pinned_version() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11$", dockerfile, re.MULTILINE)
    assert '"apache-airflow==3.3.2"' in (REPO / "pyproject.toml").read_text()
    assert '-e "/opt/dodas-airflow[spark,postgres]"' in dockerfile


def test_container_only_values_are_mapped_onto_this_machine(config: dict, env_file: Path, tmp_path: Path) -> None:
    placement = Placement(
        addresses={
            "postgres:5432": "127.0.0.1:5432",
            "redis:6379": "127.0.0.1:16379",
            f"{LOCALCLOUD_SERVICE}:8780": "10.250.0.2:8780",
        },
        paths={"/opt/airflow": tmp_path / "home", "/opt/dodas-airflow": REPO},
        env_file=env_file,
        hosts={
            LOCALCLOUD_SERVICE: Host("ns-cloud", {}),
            "airflow-worker-2": Host("ns-worker", {"redis:6379": "10.250.0.5:16379"}),
        },
    )
    init, services = compose.project_services(config, placement)
    assert init.command[:2] == ("/bin/bash", "-c") and f"mkdir -p {tmp_path}/home/logs" in init.command[2]
    assert {s.name for s in services} >= AIRFLOW_SERVICES | {LOCALCLOUD_SERVICE}
    workers = {s.name: s for s in services if s.celery_node}
    assert sorted(s.celery_node for s in workers.values()) == ["celery@airflow-worker-1", "celery@airflow-worker-2"]
    assert workers["airflow-worker-2"].netns == "ns-worker" and workers["airflow-worker-1"].netns is None
    assert workers["airflow-worker-2"].env["AIRFLOW__CELERY__BROKER_URL"] == "redis://10.250.0.5:16379/0"
    (cloud,) = [s for s in services if s.name == LOCALCLOUD_SERVICE]
    assert (cloud.netns, cloud.tcp_host, cloud.tcp_port) == ("ns-cloud", "10.250.0.2", 8780)
    assert cloud.command[:3] == ("dodas", "localcloud", "serve")
    for service in [init, *services]:
        env = service.env
        assert env["DODAS_HOME"] == str(tmp_path / "home" / "dodas")
        assert not [v for v in env.values() if "/opt/" in v or "postgres:5432" in v]
        if service.name == LOCALCLOUD_SERVICE:
            continue
        assert service.name == "airflow-worker-2" or env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:16379/0"
        assert "@127.0.0.1:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO / "dags")
        assert env["DODAS_LOCALCLOUD_URL"] == "http://10.250.0.2:8780"


def test_interpolation_follows_compose() -> None:
    values = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET}-${UNSET}-$SET-$$SET", values) == "x--x-$SET"
    assert interpolate("${EMPTY:-d} ${EMPTY-d} ${UNSET-d} ${SET:-d}", values) == "d  d x"
    assert interpolate("${SET:+alt}${EMPTY:+alt}${EMPTY+set}", values) == "altset"
    assert interpolate("${UNSET:-${SET}}", values) == "x"
    with pytest.raises(ComposeError, match="EMPTY is missing a value: say why"):
        interpolate("${EMPTY:?say why}", values)
