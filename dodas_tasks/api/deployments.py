"""/deployments: list, create, read, update (scale), delete and reset, through the same request path as every other
door (deploy/service.py records the request in the store; the deployment DAG does the work)."""

from __future__ import annotations

from typing import Annotated

from fastapi import BackgroundTasks, Query, Request, Response
from fastapi.responses import JSONResponse

from dodas_tasks.api.access import check_may_share_with, deployment_for, listing_filter
from dodas_tasks.api.context import BothSlashesRouter, CallerDep, ContextDep, base_url
from dodas_tasks.api.errors import ApiError
from dodas_tasks.api.models import DeploymentPageBody, DeploymentRequest, StatusPatch
from dodas_tasks.api.paging import page_info, page_links, page_size, store_sort
from dodas_tasks.deploy import service
from dodas_tasks.deploy.framework_secrets import owner_outputs
from dodas_tasks.deploy.leaks import configured_clouds
from dodas_tasks.deploy.orchestrator_view import DeploymentResource, deployment_resource
from dodas_tasks.iam import IamError, IdpUnreachable, InvalidToken
from dodas_tasks.store import DeploymentStatus
from dodas_tasks.tosca.errors import DodasTemplateError

router = BothSlashesRouter(tags=["deployments"])
SKIP_NONE = {"response_model_exclude_none": True}


@router.get("/deployments", response_model=DeploymentPageBody, **SKIP_NONE)
def list_deployments(
    request: Request,
    ctx: ContextDep,
    caller: CallerDep,
    createdBy: str | None = None,
    userGroup: str | None = None,
    page: Annotated[int, Query(ge=0)] = 0,
    size: int | None = None,
    sort: Annotated[list[str] | None, Query()] = None,
) -> DeploymentPageBody:
    """The deployments the caller may see (own, shared with their groups; all for administrators), newest first."""
    where = listing_filter(caller, createdBy, userGroup)
    size = page_size(size, ctx.settings.default_page_size, ctx.settings.max_page_size)
    found = ctx.store.page_deployments(where, store_sort(sort), page, size)
    info = page_info(found.total, page, size)
    base = base_url(request)
    return DeploymentPageBody(
        content=[deployment_resource(d, base) for d in found.items], links=page_links(request, info), page=info
    )


@router.post("/deployments", status_code=201, response_model=DeploymentResource, **SKIP_NONE)
def create_deployment(
    body: DeploymentRequest, request: Request, background: BackgroundTasks, ctx: ContextDep, caller: CallerDep
) -> JSONResponse:
    """Compile and record a deployment owned by the caller (an IAM token is delegated, as dodas_submit does); its
    DAG appears at once and its first run starts by itself."""
    check_may_share_with(caller, body.userGroup)
    clouds = configured_clouds()
    options: dict[str, object] = {"keep_last_attempt": body.keepLastAttempt}
    for name, value in (
        ("max_providers_retry", body.maxProvidersRetry),
        ("timeout_mins", body.timeoutMins),
        ("provider_timeout_mins", body.providerTimeoutMins),
    ):
        if value is not None:
            options[name] = value
    try:
        deployment_id = service.submit(
            ctx.store,
            body.template,
            body.parameters,
            cloud=clouds[0],
            failover_clouds=clouds[1:],
            owner=service.Owner(subject=caller.subject, issuer=caller.issuer, groups=caller.groups),
            options=options,
            access_token=caller.access_token,
            iam=ctx.iam() if caller.access_token else None,
            user_group=body.userGroup,
            callback=str(body.callback) if body.callback else None,
        )
    except DodasTemplateError as exc:
        raise ApiError(400, exc.report()) from None
    except InvalidToken as exc:
        raise ApiError(401, str(exc)) from None
    except IdpUnreachable as exc:
        raise ApiError(503, f"the IAM service cannot delegate your token now: {exc}") from None
    except IamError as exc:
        raise ApiError(403, f"the IAM service did not delegate your token: {exc}") from None
    if ctx.runs is not None:
        background.add_task(ctx.runs.publish, deployment_id)
    view = deployment_resource(ctx.store.get_deployment(deployment_id), base_url(request))
    body = view.model_dump(mode="json", exclude_none=True)
    return JSONResponse(body, status_code=201, headers={"Location": view.links[0].href})


@router.get("/deployments/{deployment_id}", response_model=DeploymentResource, **SKIP_NONE)
def get_deployment(deployment_id: str, request: Request, ctx: ContextDep, caller: CallerDep) -> DeploymentResource:
    """The deployment; its owner also sees the secrets its frameworks' clients need (e.g. spark_standalone_secret),
    which no other view shows (listings, group members, administrators, callbacks, Airflow)."""
    dep = deployment_for(ctx.store, caller, deployment_id)
    view = deployment_resource(dep, base_url(request))
    if (caller.issuer, caller.subject) == (dep.owner_issuer, dep.owner_subject):
        view.outputs.update(owner_outputs(dep))
    return view


@router.put("/deployments/{deployment_id}", status_code=202, response_model=DeploymentResource, **SKIP_NONE)
def update_deployment(
    deployment_id: str,
    body: DeploymentRequest,
    request: Request,
    background: BackgroundTasks,
    ctx: ContextDep,
    caller: CallerDep,
) -> DeploymentResource:
    """A template update: changed scalable counts and removal lists scale, parameters merge into the old inputs.
    While a run is active the update is queued (202 as always) instead of refused."""
    from dodas_tasks.deploy.update import request_update

    dep = deployment_for(ctx.store, caller, deployment_id)
    try:
        outcome = request_update(ctx.store, dep.id, body.template, body.parameters, who=str(caller))
    except DodasTemplateError as exc:
        raise ApiError(400, exc.report()) from None
    except service.RequestConflict as exc:
        raise ApiError(409, str(exc)) from None
    except service.RequestRefused as exc:
        raise ApiError(400, str(exc)) from None
    if ctx.runs is not None:
        background.add_task(ctx.runs.start, dep.id, f"update via the orchestrator API: {outcome.describe()}")
    return deployment_resource(ctx.store.get_deployment(dep.id), base_url(request))


@router.delete("/deployments/{deployment_id}", status_code=204)
def delete_deployment(deployment_id: str, background: BackgroundTasks, ctx: ContextDep, caller: CallerDep) -> Response:
    dep = deployment_for(ctx.store, caller, deployment_id)
    if dep.status == DeploymentStatus.DELETE_IN_PROGRESS:
        raise ApiError(
            409,
            f"deployment {dep.id} is already being deleted; if it is stuck, PATCH it with "
            '{"status": "DELETE_FAILED"} and delete it again',
        )
    try:
        service.request_undeploy(ctx.store, dep.id, reason=f"requested by {caller}")
    except service.RequestConflict as exc:
        raise ApiError(409, str(exc)) from None
    if ctx.runs is not None:
        background.add_task(ctx.runs.start, dep.id, "undeploy via the orchestrator API")
    return Response(status_code=204)


@router.patch("/deployments/{deployment_id}", status_code=204)
def reset_deployment(deployment_id: str, body: StatusPatch, ctx: ContextDep, caller: CallerDep) -> Response:
    """Reset a deletion stuck in DELETE_IN_PROGRESS to DELETE_FAILED, so that it can be asked again."""
    dep = deployment_for(ctx.store, caller, deployment_id)
    try:
        service.reset_deletion(ctx.store, dep.id, who=str(caller))
    except service.RequestConflict as exc:
        raise ApiError(409, str(exc)) from None
    return Response(status_code=204)
