"""The DODAS store as one long-lived Airflow process (triggerer, worker) shares it."""

from __future__ import annotations

import functools

from dodas_tasks.store import Store


@functools.cache
def shared_store() -> Store:
    """One store (engine, pool) per process: the triggerer polls hundreds of deployments every few seconds."""
    return Store()
