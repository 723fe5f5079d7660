"""The API inside Airflow's api-server: the IAM client from the `dodas_iam` connection, runs started through
Airflow's REST API, Airflow's own tokens accepted, and the app built at its first request.

Every Airflow process imports the plugins (each task too), and only the api-server serves them: building the app
lazily keeps FastAPI routes, the IAM client and the compiler out of the others.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from typing import Any

from cachetools.func import ttl_cache

IAM_CONNECTION_TTL_S = 60  # a changed dodas_iam connection is picked up within a minute


@ttl_cache(maxsize=1, ttl=IAM_CONNECTION_TTL_S)
def iam_client() -> Any:
    """The IAM client of the dodas_iam connection, or None when there is none (IAM tokens are then refused)."""
    from dodas_tasks.airflow.hooks.iam import IamHook

    try:
        return IamHook().client
    except Exception:
        return None


def airflow_app() -> Any:
    from dodas_tasks.airflow.hooks.store import shared_store
    from dodas_tasks.api.app import create_app
    from dodas_tasks.api.runs import AirflowRuns

    return create_app(store=shared_store, iam=iam_client, runs=AirflowRuns(), airflow_tokens=True)


class OnFirstRequest:
    """An ASGI app that builds its app (default: the orchestrator API) when the first request reaches it.

    It then moves what the api-server holds so far (about a million long-lived objects: Airflow's modules, app and
    caches) out of the garbage collector's sight (gc.freeze). A submission allocates heavily (tosca-parser), and
    each full collection it triggered walked them all: 0.5 s pauses, the p95 of POST /deployments at 0.6-0.8 s
    instead of 60 ms (bench/api.py). Frozen objects are never collected, so garbage among them at that moment stays.
    """

    def __init__(self, build: Callable[[], Any] = airflow_app) -> None:
        self._build = build
        self._app: Any = None
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._build()
                    gc.collect()
                    gc.freeze()
        await self._app(scope, receive, send)
