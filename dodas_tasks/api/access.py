"""Who may do what: a caller sees and acts on their own deployments, those shared with one of their groups
(userGroup), or all of them as an administrator. Others get the orchestrator's answers: 403 for a deployment that
is not theirs, 404 for one that does not exist (or was deleted); an id prefix only ever finds the caller's own.
"""

from __future__ import annotations

from dodas_tasks.api.auth import Caller
from dodas_tasks.api.errors import ApiError
from dodas_tasks.store import (
    AmbiguousDeploymentId,
    DeploymentFilter,
    DeploymentNotFoundError,
    DeploymentRecord,
    DeploymentStatus,
    MalformedDeploymentId,
    Store,
)
from dodas_tasks.store.ids import id_prefix

FULL_ID_DIGITS = 32


def deployment_for(store: Store, caller: Caller, reference: str, deleted_ok: bool = False) -> DeploymentRecord:
    """The deployment `reference` names (a full id or an 8+ character prefix), if the caller may act on it;
    `deleted_ok`: a deleted one too (the Deployments page shows how it ended), else 404 as on the orchestrator."""
    try:
        full = len(id_prefix(reference)) == FULL_ID_DIGITS
        visible = None if full else DeploymentFilter(visibility=caller.visibility(), include_deleted=True)
        deployment_id = store.resolve_id(reference, visible)
    except MalformedDeploymentId as exc:
        raise ApiError(400, str(exc)) from None
    except AmbiguousDeploymentId as exc:
        raise ApiError(400, str(exc)) from None
    except DeploymentNotFoundError:
        raise ApiError(404, f"no deployment {reference!r}") from None
    dep = store.get_deployment(deployment_id)
    if not caller.visibility().admits(dep.owner_issuer, dep.owner_subject, dep.user_group):
        raise ApiError(403, f"deployment {dep.id} is not yours and not shared with a group of yours")
    if dep.status == DeploymentStatus.DELETE_COMPLETE and not deleted_ok:
        raise ApiError(404, f"deployment {dep.id} was deleted ({dep.status_reason or 'DELETE_COMPLETE'})")
    return dep


def listing_filter(caller: Caller, created_by: str | None, user_group: str | None) -> DeploymentFilter:
    """The orchestrator's createdBy=me | subject@issuer (administrators only) and userGroup (members only)."""
    owner = None
    if created_by == "me":
        owner = (caller.issuer, caller.subject)
    elif created_by:
        subject, at, issuer = created_by.rpartition("@")  # issuers are URLs (no '@'); subjects may hold one
        if not at or not subject or not issuer:
            raise ApiError(400, f"createdBy must be 'me' or 'subject@issuer', got {created_by!r}")
        if (issuer, subject) != (caller.issuer, caller.subject) and not caller.admin:
            raise ApiError(403, "only administrators may list the deployments of another user")
        owner = (issuer, subject)
    if user_group and user_group not in caller.groups and not caller.admin:
        raise ApiError(403, f"you are not a member of group {user_group!r}")
    return DeploymentFilter(visibility=caller.visibility(), owner=owner, user_group=user_group or None)


def check_may_share_with(caller: Caller, user_group: str | None) -> None:
    """A deployment may only be shared with a group its submitter belongs to."""
    if user_group and user_group not in caller.groups and not caller.admin:
        raise ApiError(403, f"you are not a member of group {user_group!r}: you cannot share a deployment with it")
