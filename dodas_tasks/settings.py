"""Where DODAS keeps its state; one home so every process (CLI, workers, tests) agrees."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_TAG = "dodas"  # value of the "dodas:project" tag on every cloud resource we create


def dodas_home() -> Path:
    """DODAS_HOME, else <AIRFLOW_HOME>/dodas, else ~/airflow/dodas; created on first use."""
    explicit = os.environ.get("DODAS_HOME")
    if explicit:
        home = Path(explicit)
    else:
        airflow_home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
        home = Path(airflow_home) / "dodas"
    home.mkdir(parents=True, exist_ok=True)
    return home


def database_url() -> str:
    """DODAS_DATABASE_URL (PostgreSQL in production), else a SQLite file under dodas_home()."""
    return os.environ.get("DODAS_DATABASE_URL") or f"sqlite:///{dodas_home() / 'dodas.db'}"
