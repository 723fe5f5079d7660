"""Bring a database to the newest schema with alembic; idempotent and safe when processes race to do it."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"  # alembic's default
# Arbitrary constant identifying "DODAS store migration" among PostgreSQL advisory locks.
POSTGRES_ADVISORY_LOCK_KEY = 0x444F444153  # "DODAS"


def alembic_config() -> Config:
    """Alembic configuration pointing at the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config  # alembic loads only when a migration check needs it (DAG parse speed)

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


# The newest migration, known without importing alembic (every DAG parse opens the store: it must stay cheap).
# tests/test_store.py checks that it equals alembic's own head.
HEAD_REVISION = "0004"


def head_revisions() -> frozenset[str]:
    """The revision(s) the code expects the database to be at."""
    return frozenset({HEAD_REVISION})


def alembic_heads() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(connection: Connection) -> set[str]:
    """The revision(s) the database is at; empty for a fresh database (read directly: no alembic log lines)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return set()
    return set(connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def is_up_to_date(engine: Engine) -> bool:
    """Cheap check (one small query) done before taking any lock."""
    with engine.connect() as connection:
        return current_revisions(connection) == head_revisions()


def upgrade_to_head(engine: Engine) -> None:
    """Upgrade under a cross-process lock; a process that waited finds the work done and does nothing."""
    if is_up_to_date(engine):
        return
    with _migration_lock(engine), engine.connect() as connection:
        if current_revisions(connection) == head_revisions():
            return
        config = alembic_config()
        config.attributes["connection"] = connection
        from alembic import command

        command.upgrade(config, "head")
        connection.commit()


def create_database_if_missing(url: str) -> bool:
    """On PostgreSQL, create the URL's database when the server has none of that name; True when it did.

    A site's first `dodas db migrate` (the compose file's airflow-init) then needs no manual CREATE DATABASE:
    the store sits beside Airflow's database on the same server. SQLite files are created on first connection.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        return False
    server = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as connection:
            found = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
            ).first()
            if found:
                return False
            quoted = connection.dialect.identifier_preparer.quote(parsed.database)
            connection.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    finally:
        server.dispose()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    backend = engine.url.get_backend_name()
    database = engine.url.database or ""
    if backend == "sqlite" and database not in ("", ":memory:"):
        with _file_lock(Path(database).with_name(Path(database).name + ".migrate.lock")):
            yield
    elif backend == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": POSTGRES_ADVISORY_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": POSTGRES_ADVISORY_LOCK_KEY})
                connection.commit()
    else:  # in-memory SQLite is private to this process; other backends rely on transactional DDL
        yield


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
