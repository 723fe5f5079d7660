"""The pages: the Deployments list (filterable by status), one deployment's page, and the tab of a DAG's page that
leads to its deployment. `?part=live` gives only what changes (the page's script refreshes it every few seconds).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from dodas_tasks.api.access import deployment_for
from dodas_tasks.api.context import CallerDep, ContextDep
from dodas_tasks.api.errors import ApiError
from dodas_tasks.crypto import SecretDecryptionError
from dodas_tasks.naming import short_id_of_dag
from dodas_tasks.store import DeploymentFilter, DeploymentStatus
from dodas_tasks.ui.rendering import base_path, render
from dodas_tasks.ui.views import deployment_view, list_rows, owner_label

router = APIRouter()
PAGE_SIZE = 50
EVENTS_SHOWN = 200
LIVE = "live"


@router.get("/")
def home(request: Request) -> Response:
    return RedirectResponse(f"{base_path(request)}/deployments", status_code=303)


@router.get("/deployments")
def deployments_page(
    request: Request,
    ctx: ContextDep,
    caller: CallerDep,
    status: str = "",
    page: Annotated[int, Query(ge=0)] = 0,
    part: str = "",
) -> Response:
    """The deployments the caller may see, newest first; `status` one status (DELETE_COMPLETE shows the deleted),
    empty for all but the deleted."""
    if status and status not in DeploymentStatus.__members__:
        raise ApiError(400, f"unknown status {status!r}; use one of {', '.join(DeploymentStatus)}")
    where = DeploymentFilter(
        visibility=caller.visibility(),
        statuses=frozenset({status}) if status else None,
        include_deleted=status == DeploymentStatus.DELETE_COMPLETE,
    )
    found = ctx.store.page_deployments(where, number=page, size=PAGE_SIZE)
    shapes = ctx.store.deployment_shapes([d.id for d in found.items])
    context = {
        "rows": list_rows(found.items, shapes),
        "total": found.total,
        "page": page,
        "pages": max(1, -(-found.total // PAGE_SIZE)),
        "status": status,
        "statuses": list(DeploymentStatus),
        "caller": owner_label(caller.issuer, caller.subject),
        "admin": caller.admin,
    }
    return render(request, "_list_table.html" if part == LIVE else "list.html", **context)


@router.get("/deployments/{reference}")
def deployment_page(request: Request, reference: str, ctx: ContextDep, caller: CallerDep, part: str = "") -> Response:
    dep = deployment_for(ctx.store, caller, reference, deleted_ok=True)
    try:
        secrets = ctx.store.deployment_secret_inputs(dep.id).values()
        hidden = False
    except SecretDecryptionError:
        secrets, hidden = [], True
    view = deployment_view(dep, ctx.store.list_nodes(dep.id), ctx.store.list_events(dep.id, EVENTS_SHOWN), secrets)
    template = "_deployment_live.html" if part == LIVE else "deployment.html"
    return render(request, template, d=view, template_hidden=hidden)


@router.get("/dags/{dag_id}")
def dag_tab(request: Request, dag_id: str, ctx: ContextDep, caller: CallerDep) -> Response:
    """A DAG page's "Deployment" tab: the page of the deployment the DAG runs, or a word on other DAGs."""
    short = short_id_of_dag(dag_id)
    if short is None:
        return render(request, "not_a_deployment.html", dag_id=dag_id)
    dep = deployment_for(ctx.store, caller, short, deleted_ok=True)
    return RedirectResponse(f"{base_path(request)}/deployments/{dep.id}", status_code=303)
