"""A deployment's details as the orchestrator serves them: its template, resources (node instances), log and
per-VM information."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import PlainTextResponse

from dodas_tasks.api.access import deployment_for
from dodas_tasks.api.context import BothSlashesRouter, CallerDep, ContextDep, base_url
from dodas_tasks.api.errors import ApiError
from dodas_tasks.api.models import ResourcePageBody
from dodas_tasks.api.paging import page_info, page_links, page_size
from dodas_tasks.deploy.orchestrator_resources import ResourceBody, deployment_resources, vm_info
from dodas_tasks.deploy.orchestrator_view import log_text

router = BothSlashesRouter(tags=["deployment details"])
LOG_EVENTS = 10_000


@router.get("/deployments/{deployment_id}/template", response_class=PlainTextResponse)
def get_template(deployment_id: str, ctx: ContextDep, caller: CallerDep) -> PlainTextResponse:
    """The TOSCA template as submitted (or as last updated)."""
    return PlainTextResponse(deployment_for(ctx.store, caller, deployment_id).template)


@router.get("/deployments/{deployment_id}/resources", response_model=ResourcePageBody, response_model_exclude_none=True)
def list_resources(
    deployment_id: str,
    request: Request,
    ctx: ContextDep,
    caller: CallerDep,
    type: str | None = None,
    page: Annotated[int, Query(ge=0)] = 0,
    size: int | None = None,
) -> ResourcePageBody:
    """One resource per node instance (VMs, then the components on them); `type` filters by TOSCA node type."""
    dep = deployment_for(ctx.store, caller, deployment_id)
    found = deployment_resources(dep, ctx.store.list_nodes(dep.id), base_url(request))
    if type:
        found = [r for r in found if r.toscaNodeType == type]
    size = page_size(size, ctx.settings.max_page_size, ctx.settings.max_page_size)
    info = page_info(len(found), page, size)
    return ResourcePageBody(content=found[page * size : (page + 1) * size], links=page_links(request, info), page=info)


@router.get(
    "/deployments/{deployment_id}/resources/{resource_id}",
    response_model=ResourceBody,
    response_model_exclude_none=True,
)
def get_resource(
    deployment_id: str, resource_id: str, request: Request, ctx: ContextDep, caller: CallerDep
) -> ResourceBody:
    dep = deployment_for(ctx.store, caller, deployment_id)
    for resource in deployment_resources(dep, ctx.store.list_nodes(dep.id), base_url(request)):
        if resource.uuid == resource_id.strip().lower():
            return resource
    raise ApiError(404, f"deployment {dep.id} has no resource {resource_id!r}")


@router.get("/deployments/{deployment_id}/log", response_class=PlainTextResponse)
def get_log(deployment_id: str, ctx: ContextDep, caller: CallerDep) -> PlainTextResponse:
    """The deployment's history (status changes, nodes, failures naming task and VM), oldest first."""
    dep = deployment_for(ctx.store, caller, deployment_id)
    return PlainTextResponse(log_text(ctx.store.list_events(dep.id, limit=LOG_EVENTS)))


@router.get("/deployments/{deployment_id}/extrainfo")
def get_extra_info(deployment_id: str, ctx: ContextDep, caller: CallerDep) -> list[dict]:
    """Per-VM information (name, cloud id, group, state, addresses)."""
    dep = deployment_for(ctx.store, caller, deployment_id)
    return [vm_info(node) for node in ctx.store.list_nodes(dep.id)]
