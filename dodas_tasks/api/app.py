"""The orchestrator-compatible REST API as a FastAPI app: built by the Airflow plugin (mounted under
/dodas/orchestrator in the api-server, Airflow tokens accepted too) or on its own (tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from dodas_tasks.api import delegations, deployments, details, service_info
from dodas_tasks.api.context import ApiContext
from dodas_tasks.api.errors import install_error_handlers
from dodas_tasks.api.runs import RunStarter
from dodas_tasks.api.settings import ApiSettings
from dodas_tasks.iam import IamClient
from dodas_tasks.store import Store

DESCRIPTION = """\
The INDIGO PaaS orchestrator's REST API over DODAS on Airflow: orchent, CLUES and other orchestrator clients work
unchanged. Authenticate with `Authorization: Bearer <IAM access token>` (or an Airflow token). Each caller sees and
acts on their own deployments and those shared with one of their groups (`userGroup`); members of the configured
admin groups see all.
"""


def create_app(
    *,
    store: Store | Callable[[], Store] = Store,
    iam: Callable[[], IamClient | None] = lambda: None,
    settings: ApiSettings | None = None,
    runs: RunStarter | None = None,
    airflow_tokens: bool = False,
) -> FastAPI:
    """`store`: a Store or how to open one (on first use); `iam`: the service's IAM client, asked per request
    (None: IAM tokens are refused); `runs`: starts deployment DAG runs (None: requests are only recorded);
    `airflow_tokens`: accept Airflow's own tokens (only inside Airflow's api-server)."""
    app = FastAPI(title="DODAS orchestrator API", description=DESCRIPTION, version="1", redirect_slashes=False)
    app.state.dodas = ApiContext(store, iam, settings or ApiSettings.from_env(), runs, airflow_tokens)
    install_error_handlers(app)
    for module in (service_info, deployments, details, delegations):
        app.include_router(module.router)
    return app
