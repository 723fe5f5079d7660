"""The page's actions, scale and undeploy: the same authorisation (api/access.py) and request path (deploy/service.py
records the request, the deployment's DAG applies it) as the orchestrator API's PUT and DELETE.

The browser authenticates with Airflow's cookie, so an action must prove it comes from our own page's script (CSRF):
a JSON POST carrying the header ACTION_HEADER, which another site's form cannot send and its script cannot add
without a CORS preflight that nothing here answers; an Origin other than ours is refused too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from dodas_tasks.api.access import deployment_for
from dodas_tasks.api.context import CallerDep, ContextDep
from dodas_tasks.api.errors import ApiError
from dodas_tasks.deploy import service
from dodas_tasks.store import DeploymentStatus

ACTION_HEADER = "X-DODAS-UI"  # set by static/dodas.js on every action


def from_our_page(request: Request) -> None:
    if request.headers.get(ACTION_HEADER) != "1":
        raise ApiError(403, f"actions are sent by the Deployments page (header {ACTION_HEADER} missing)")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise ApiError(403, f"an action from another site ({origin}) is refused")


router = APIRouter(dependencies=[Depends(from_our_page)])


class ScaleRequest(BaseModel):
    group: str = Field(min_length=1)
    count: Annotated[int, Field(ge=0)]
    removal_list: list[str] = Field(default_factory=list)


class Done(BaseModel):
    message: str


@router.post("/deployments/{reference}/scale", status_code=202)
def scale(
    reference: str, body: ScaleRequest, background: BackgroundTasks, ctx: ContextDep, caller: CallerDep
) -> JSONResponse:
    """Ask for `count` VMs in `group`, the listed VMs (of that group) removed first."""
    dep = deployment_for(ctx.store, caller, reference)
    group_nodes = {n.id for n in ctx.store.list_nodes(dep.id, group=body.group)}
    strangers = sorted(set(body.removal_list) - group_nodes)
    if strangers:
        raise ApiError(400, f"not VMs of group {body.group!r}: {', '.join(strangers)}")
    try:
        service.request_scale(
            ctx.store, dep.id, body.group, body.count, body.removal_list, reason=f"requested by {caller} (page)"
        )
    except service.RequestConflict as exc:
        raise ApiError(409, str(exc)) from None
    except service.RequestRefused as exc:
        raise ApiError(400, str(exc)) from None
    removing = f", removing {len(body.removal_list)} VM(s) first" if body.removal_list else ""
    what = f"{body.group} → {body.count}{removing}"
    if ctx.runs is not None:
        background.add_task(ctx.runs.start, dep.id, f"scale from the Deployments page: {what}")
    return _done(f"Scaling requested ({what}); the deployment's DAG applies it.")


@router.post("/deployments/{reference}/undeploy", status_code=202)
def undeploy(reference: str, background: BackgroundTasks, ctx: ContextDep, caller: CallerDep) -> JSONResponse:
    dep = deployment_for(ctx.store, caller, reference)
    if dep.status == DeploymentStatus.DELETE_IN_PROGRESS:
        raise ApiError(409, f"deployment {dep.id} is already being deleted")
    try:
        service.request_undeploy(ctx.store, dep.id, reason=f"requested by {caller} (page)")
    except service.RequestConflict as exc:
        raise ApiError(409, str(exc)) from None
    if ctx.runs is not None:
        background.add_task(ctx.runs.start, dep.id, "undeploy from the Deployments page")
    return _done("Undeploy requested; the deployment's DAG deletes every VM.")


def _done(message: str) -> JSONResponse:
    return JSONResponse(Done(message=message).model_dump(), status_code=202)
