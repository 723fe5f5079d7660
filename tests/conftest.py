"""Test isolation: every test session gets its own AIRFLOW_HOME and DODAS_HOME, set before anything imports airflow."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "indigo"

_HOME = Path(tempfile.mkdtemp(prefix="dodas-test-"))
os.environ.update(
    AIRFLOW_HOME=str(_HOME / "airflow"),
    DODAS_HOME=str(_HOME / "dodas"),
    AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
)
os.environ.pop("DODAS_DATABASE_URL", None)

# fixtures shared by several files, imported once the environment above is set
from _plugin_stack import SHARED_STACK_FILES, plugin_stack, plugin_stack_provider, plugin_store_env  # noqa: E402, F401


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture
def corpus() -> Path:
    """The real INDIGO/DODAS templates, read in place; tests using it skip when the folder is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"corpus folder {CORPUS} is absent")
    return CORPUS


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The session's Airflow metadata DB (SQLite in its AIRFLOW_HOME), migrated once for every dag.test()."""
    from airflow.utils import db

    db.initdb()


POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"  # every dev and CI machine runs it (trust auth)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test session's own on the machine's PostgreSQL, dropped at the end (or
    DODAS_TEST_POSTGRES_URL, used as given). The shared server itself is never stopped or emptied."""
    given = os.environ.get("DODAS_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    import sqlalchemy as sa

    name = f"dodas_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 (role postgres, trust) is not reachable: {exc.orig}")
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# Tests run on two worker processes (pytest-xdist, `--dist loadfile --no-loadscope-reorder`): each file stays on
# one worker, so its module fixtures (Airflow stacks, cloud doubles) start once; the files sharing the session's
# plugin stack stay together on one worker too (SharedStackScheduling). The longest units go first, so the other
# worker fills in around them.
FIRST_FILES = ("test_elastic_e2e.py", "test_celery_e2e.py", *SHARED_STACK_FILES)
SHARED_STACK_UNIT = "plugin-stack"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    order = {name: rank for rank, name in enumerate(FIRST_FILES)}
    items.sort(key=lambda item: order.get(item.path.name, len(FIRST_FILES)))


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Files, as `--dist loadfile` schedules them, except that SHARED_STACK_FILES are one unit."""
    from xdist.scheduler import LoadFileScheduling

    class SharedStackScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return SHARED_STACK_UNIT if Path(path).name in SHARED_STACK_FILES else path

    return SharedStackScheduling(config, log)
