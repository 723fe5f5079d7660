"""The Deployments pages as a FastAPI app: built by the Airflow plugin (mounted at /dodas/ui, shown in Airflow's
navigation and as a tab of each DAG's page) or on its own (tests). Same context, authentication and access rules
as the orchestrator API: an Airflow user's `_token` cookie (or any bearer token the API accepts) says who calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from dodas_tasks.api.context import ApiContext
from dodas_tasks.api.errors import ApiError
from dodas_tasks.api.runs import RunStarter
from dodas_tasks.api.settings import ApiSettings
from dodas_tasks.iam import IamClient
from dodas_tasks.store import Store
from dodas_tasks.ui import actions, pages
from dodas_tasks.ui.rendering import HERE, error

log = logging.getLogger(__name__)


def create_ui_app(
    *,
    store: Store | Callable[[], Store] = Store,
    iam: Callable[[], IamClient | None] = lambda: None,
    settings: ApiSettings | None = None,
    runs: RunStarter | None = None,
    airflow_tokens: bool = False,
) -> FastAPI:
    """The arguments are the orchestrator API's (dodas_tasks.api.app.create_app)."""
    app = FastAPI(title="DODAS deployments pages", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.dodas = ApiContext(store, iam, settings or ApiSettings.from_env(), runs, airflow_tokens)
    _install_error_pages(app)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router)
    app.include_router(actions.router)
    return app


def _install_error_pages(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error(request, exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}" for e in exc.errors()]
        return error(request, 400, "; ".join(parts) or "invalid request")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error(request, exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error(request, 500, f"the page failed ({type(exc).__name__}); see the api-server's log")
