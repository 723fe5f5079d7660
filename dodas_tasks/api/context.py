"""What every route needs (store, IAM, settings, run starter, the caller), handed out as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from dodas_tasks.api.auth import Authenticator, Caller
from dodas_tasks.api.runs import RunStarter
from dodas_tasks.api.settings import ApiSettings
from dodas_tasks.iam import IamClient
from dodas_tasks.store import Store


class ApiContext:
    """One per app; the store is opened on first use (importing the plugin must stay cheap in every process)."""

    def __init__(
        self,
        store: Store | Callable[[], Store],
        iam: Callable[[], IamClient | None],
        settings: ApiSettings,
        runs: RunStarter | None,
        airflow_tokens: bool,
    ) -> None:
        self._store = store
        self.iam = iam
        self.settings = settings
        self.runs = runs
        self.authenticate = Authenticator(iam, settings.admin_groups, airflow_tokens)

    @cached_property
    def store(self) -> Store:
        return self._store if isinstance(self._store, Store) else self._store()


def context(request: Request) -> ApiContext:
    return request.app.state.dodas


async def caller(request: Request) -> Caller:
    return await context(request).authenticate(request)


def base_url(request: Request) -> str:
    """The API's own URL (with the plugin's prefix when mounted in Airflow: the mount's root_path), for links."""
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}".rstrip("/")


ContextDep = Annotated[ApiContext, Depends(context)]
CallerDep = Annotated[Caller, Depends(caller)]


class BothSlashesRouter(APIRouter):
    """Serves each path with and without a trailing slash (no redirect: not every client follows one on POST)."""

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().add_api_route(path, endpoint, **kwargs)
        if path != "/" and not path.endswith("/"):
            super().add_api_route(f"{path}/", endpoint, **{**kwargs, "include_in_schema": False})
