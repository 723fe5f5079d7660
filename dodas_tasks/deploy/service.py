"""What users ask for (submit, scale, undeploy), recorded as desired state in the store.

Nothing here touches a cloud: the deployment DAG's next run does the difference between desired and actual state.
A request made while a run is active is still recorded; the run after it picks it up (never refused).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dodas_tasks.clouds.base import known_clouds
from dodas_tasks.configure import generate_keypair
from dodas_tasks.deploy.backfill import check_max_boot_failures
from dodas_tasks.deploy.cloud_access import clouds_needing_an_owner
from dodas_tasks.deploy.placement import place
from dodas_tasks.deploy.ssh_access import check_jump_group
from dodas_tasks.frameworks.registry import check_options
from dodas_tasks.naming import short_id
from dodas_tasks.store import AmbiguousDeploymentId, DeploymentNotFoundError, DeploymentRecord, Store
from dodas_tasks.store.vocabulary import DeploymentStatus
from dodas_tasks.tosca.compiler import compile as compile_template
from dodas_tasks.tosca.errors import DodasTemplateError, TemplateProblem
from dodas_tasks.tosca.plan import Plan

if TYPE_CHECKING:
    from dodas_tasks.iam import IamClient

LIVE_STATUSES = {
    DeploymentStatus.CREATE_IN_PROGRESS,
    DeploymentStatus.CREATE_COMPLETE,
    DeploymentStatus.CREATE_FAILED,
    DeploymentStatus.UPDATE_IN_PROGRESS,
    DeploymentStatus.UPDATE_COMPLETE,
    DeploymentStatus.UPDATE_FAILED,
    DeploymentStatus.DELETE_IN_PROGRESS,
    DeploymentStatus.DELETE_FAILED,
    DeploymentStatus.UNKNOWN,
}


AIRFLOW_ISSUER = "airflow"  # issuer recorded for owners known only as Airflow users (no IAM token)


@dataclass(frozen=True)
class Owner:
    """Who a deployment belongs to: the (issuer, subject) of their identity token, and their groups."""

    subject: str = "local-user"
    issuer: str = "local"
    groups: tuple[str, ...] = ()


class RequestRefused(ValueError):
    """A request that cannot be recorded (unknown deployment, deleted one, bad count); the message says why."""


class RequestConflict(RequestRefused):
    """Refused because of the deployment's current state (e.g. being deleted), not because the request is wrong."""


def submit(
    store: Store,
    template_text: str,
    inputs: dict[str, Any] | None,
    *,
    cloud: str = "local",
    owner: Owner | None = None,
    options: dict[str, Any] | None = None,
    source: str = "template",
    access_token: str | None = None,
    iam: IamClient | None = None,
    failover_clouds: list[str] | None = None,
    user_group: str | None = None,
    callback: str | None = None,
    delegation: str | None = None,
) -> str:
    """Compile, then register a new deployment; raises DodasTemplateError before anything is created.

    With the submitter's `access_token` (and the service's IAM client), the token is validated and exchanged for
    a refresh token the service keeps (encrypted); the owner is then the token's (issuer, subject). An invalid
    token raises an IamError, and nothing is created. `delegation`: instead of a token, the handle of a delegation
    made ahead (iam.delegate_ahead), taken by this submission. `user_group` shares the deployment with that group's
    members; `callback` is a URL told of each final state the deployment reaches.
    """
    if access_token is not None and delegation is not None:
        raise ValueError("give an access token or a delegation, not both")
    clouds = [cloud, *(c for c in failover_clouds or [] if c != cloud)]
    unknown = [c for c in clouds if c not in known_clouds()]
    if unknown:
        raise DodasTemplateError(
            [
                TemplateProblem("input", f"cloud {c!r} is not configured", hint=f"use one of: {known_clouds()}")
                for c in unknown
            ],
            source,
        )
    if access_token is None and delegation is None:
        _refuse_sites_acting_as_owners(clouds, source)
    options = dict(options or {})
    if options.get("on_partial", "backfill") not in ("backfill", "keep", "rollback"):
        raise DodasTemplateError(
            [TemplateProblem("input", f"on_partial={options['on_partial']!r}", hint="use backfill, keep or rollback")],
            source,
        )
    if "max_boot_failures" in options and (problem := check_max_boot_failures(options["max_boot_failures"])):
        raise DodasTemplateError(
            [TemplateProblem("input", problem, hint="see the README's Reliability section")], source
        )
    framework_problems = check_options(options)
    if framework_problems:
        raise DodasTemplateError(
            [TemplateProblem("input", p, hint="see the README's Mesos clusters section") for p in framework_problems],
            source,
        )
    plan = compile_template(template_text, inputs or {}, source=source)
    jump_problems = check_jump_group(options, [g.name for g in plan.groups])
    if jump_problems:
        raise DodasTemplateError([TemplateProblem("input", p) for p in jump_problems], source)
    clouds = place(plan, clouds, source)
    refresh_token = None
    if access_token is not None:
        if iam is None:
            raise ValueError("an access token was given but no IAM client is configured (connection dodas_iam)")
        from dodas_tasks.iam import delegate_token

        delegated = delegate_token(iam, access_token)
        owner = Owner(subject=delegated.subject, issuer=delegated.issuer, groups=tuple(delegated.groups))
        refresh_token = delegated.refresh_token
    elif delegation is not None:
        from dodas_tasks.iam import take_delegation

        delegated = take_delegation(store, delegation)
        owner = Owner(subject=delegated.subject, issuer=delegated.issuer, groups=tuple(delegated.groups))
        refresh_token = delegated.refresh_token
    owner = owner or Owner()
    keys = generate_keypair(comment="dodas-deployment")
    deployment_id = str(uuid.uuid4())
    while _short_id_taken(store, deployment_id):  # DAG ids use the short id: keep it unique
        deployment_id = str(uuid.uuid4())
    inputs_to_store, secret_names = stored_inputs(plan)
    return store.create_deployment(
        deployment_id=deployment_id,
        template=template_text,
        plan=plan,
        owner_subject=owner.subject,
        owner_issuer=owner.issuer,
        owner_groups=list(owner.groups),
        inputs=inputs_to_store,
        secret_inputs=secret_names,
        ssh_private_key=keys.private_openssh,
        ssh_public_key=keys.public_openssh,
        cloud=clouds[0],
        clouds=clouds,
        options=options,
        desired_counts={g.name: g.count for g in plan.groups},
        refresh_token=refresh_token,
        user_group=user_group,
        callback=callback,
    )


def _refuse_sites_acting_as_owners(clouds: list[str], source: str) -> None:
    """A deployment nobody delegated has no owner to act as: refused where the site would need one."""
    needing = clouds_needing_an_owner(clouds)
    if needing:
        raise DodasTemplateError(
            [
                TemplateProblem(
                    "input",
                    f"cloud {cloud!r} acts as each deployment's owner ({how}) and this submission delegates no "
                    "owner identity",
                    hint="submit with your IAM access token (or a delegation) so the cloud can act as you",
                )
                for cloud, how in needing.items()
            ],
            source,
        )


def stored_inputs(plan: Plan) -> tuple[dict[str, Any], list[str]]:
    """The inputs a deployment keeps (given values and secrets, the latter encrypted by the store) and the secret
    names: what the next compilation of its template needs."""
    public = {i.name: i.value for i in plan.inputs if not i.secret and i.value is not None}
    return {**public, **plan.secrets}, list(plan.secrets)


def _short_id_taken(store: Store, deployment_id: str) -> bool:
    try:
        store.resolve_id(short_id(deployment_id))
    except DeploymentNotFoundError:
        return False
    except AmbiguousDeploymentId:
        pass
    return True


def request_scale(
    store: Store, deployment_id: str, group: str, count: int, removal_list: list[str] | None = None, reason: str = ""
) -> str:
    """Ask for `count` nodes in `group` (removing the listed node ids first); the next DAG run applies it.

    The checks and the change are one transaction on the deployment's row (Store.modify_deployment): a scale that
    races an undeploy is refused once the deletion is recorded, never written over it. `deployment_id` may be a
    prefix (Store.resolve_id); returns the full id."""
    deployment_id = store.resolve_id(deployment_id)
    if count < 0:
        raise RequestRefused(f"count must be 0 or more, got {count}")

    def change(dep: DeploymentRecord) -> dict[str, Any]:
        if dep.status in (DeploymentStatus.DELETE_IN_PROGRESS, DeploymentStatus.DELETE_COMPLETE):
            raise RequestConflict(f"deployment {deployment_id} is being deleted; it cannot be scaled")
        groups = [g.name for g in dep.plan.groups]
        if group not in groups:
            raise RequestRefused(f"deployment {deployment_id} has no compute group {group!r}; groups: {groups}")
        return {
            "desired_counts": {**dep.desired_counts, group: count},
            "removal_list": sorted(set(dep.removal_list) | set(removal_list or [])),
        }

    store.modify_deployment(
        deployment_id, change, event=("scale", f"{group}: desired {count}{' — ' + reason if reason else ''}")
    )
    return deployment_id


def request_undeploy(store: Store, deployment_id: str, reason: str = "requested") -> str:
    """Mark for deletion; the deployment DAG's next run deletes every resource and retires the DAG.

    Zero counts and DELETE_IN_PROGRESS are written in one transaction (Store.modify_deployment), so a scale
    racing it either lands before it or is refused. `deployment_id` may be a prefix (Store.resolve_id); returns
    the full id."""
    deployment_id = store.resolve_id(deployment_id)

    def change(dep: DeploymentRecord) -> dict[str, Any]:
        if dep.status == DeploymentStatus.DELETE_COMPLETE:
            raise RequestConflict(f"deployment {deployment_id} is already deleted")
        return {
            "desired_counts": {g: 0 for g in dep.desired_counts},
            "status": DeploymentStatus.DELETE_IN_PROGRESS,
            "status_reason": f"undeploy {reason}",
        }

    store.modify_deployment(deployment_id, change)
    return deployment_id


def reset_deletion(store: Store, deployment_id: str, who: str) -> None:
    """Mark a deletion that is stuck in progress as failed, so it can be asked again (the orchestrator's PATCH)."""
    dep = store.get_deployment(deployment_id)
    if dep.status != DeploymentStatus.DELETE_IN_PROGRESS:
        raise RequestConflict(
            f"deployment {deployment_id} is {dep.status}: only a deletion in progress can be reset to DELETE_FAILED"
        )
    store.set_status(deployment_id, DeploymentStatus.DELETE_FAILED, f"deletion reset by {who}")
