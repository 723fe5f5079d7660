"""Engines tuned for many short transactions from several processes (Airflow workers, API, CLI)."""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for the lock before "database is locked"


def make_engine(url: str) -> Engine:
    """Create an engine for url; SQLite gets WAL, a busy timeout and enforced foreign keys on every connection."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(
            "the store's database URL (DODAS_DATABASE_URL) cannot be parsed; expected e.g. "
            "sqlite:////absolute/path/dodas.db or postgresql+psycopg://user:password@host/dbname"
        ) from None
    in_memory = parsed.database in (None, "", ":memory:")
    if parsed.get_backend_name() == "sqlite" and not in_memory:
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(url, in_memory=in_memory)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError) as error:
        raise ValueError(
            f"no database driver for {parsed.drivername!r} URLs ({error}); for PostgreSQL install psycopg "
            "(`pip install 'psycopg[binary]'`) and use a postgresql+psycopg:// URL"
        ) from None
    _dispose_pool_in_forked_children(engine)
    return engine


def _sqlite_engine(url: str, *, in_memory: bool) -> Engine:
    options: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}
    if in_memory:  # one shared connection, or every checkout would see a fresh empty database
        options.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    engine = create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")  # before WAL: switching may wait
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL, never corrupt
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    return engine


def _dispose_pool_in_forked_children(engine: Engine) -> None:
    """A forked child must not reuse the parent's connections (SQLAlchemy's documented fork recipe)."""
    _ENGINES.add(engine)


def _after_fork_in_child() -> None:
    for engine in list(_ENGINES):
        engine.dispose(close=False)


_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
os.register_at_fork(after_in_child=_after_fork_in_child)
