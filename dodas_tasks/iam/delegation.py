"""Delegation: the submitter's access token is validated and exchanged for a refresh token the service keeps.

Only the refresh token is stored (encrypted by the Store); the submitter's access token is dropped at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dodas_tasks.iam.client import IamClient
from dodas_tasks.iam.errors import IamError, InvalidToken, RefreshTokenRevoked
from dodas_tasks.store import Store
from dodas_tasks.store.vocabulary import DeploymentStatus


class DelegationRefused(IamError):
    """The token is valid but may not be attached to this deployment (another owner)."""


@dataclass(frozen=True)
class Delegation:
    """Who delegated (issuer, subject, groups) and the refresh token obtained; repr hides the token."""

    issuer: str
    subject: str
    groups: tuple[str, ...]
    refresh_token: str = field(repr=False)
    scopes: tuple[str, ...] = ()


def delegate_token(iam: IamClient, subject_access_token: str, audience: str | None = None) -> Delegation:
    """Validate the user's access token, then exchange it (RFC 8693) for a refresh token of this service."""
    info = iam.validate(subject_access_token)
    if not info.subject:
        raise InvalidToken("no subject", "the token names no user (sub claim)")
    tokens = iam.exchange(subject_access_token, audience=audience)
    assert tokens.refresh_token is not None  # exchange() refuses answers without one
    return Delegation(
        issuer=info.issuer,
        subject=info.subject,
        groups=info.groups(iam.config.group_claim),
        refresh_token=tokens.refresh_token,
        scopes=tuple(tokens.scope.split()),
    )


def delegate(store: Store, deployment_id: str, subject_access_token: str, iam: IamClient) -> Delegation:
    """Attach a fresh delegation to an existing deployment (renewal after revocation, or right after creation).

    The token's (issuer, subject) must be the deployment's owner: nobody can take over another's deployment.
    """
    delegation = delegate_token(iam, subject_access_token)
    current = store.get_deployment(deployment_id)
    if (current.owner_issuer, current.owner_subject) != (delegation.issuer, delegation.subject):
        raise DelegationRefused(
            f"deployment {deployment_id} belongs to {current.owner_subject!r} of {current.owner_issuer!r}; a token "
            f"of {delegation.subject!r} of {delegation.issuer!r} cannot be delegated to it"
        )
    store.update_deployment(deployment_id, refresh_token=delegation.refresh_token, owner_groups=list(delegation.groups))
    who = f"{delegation.subject} ({delegation.issuer})"
    store.add_event(deployment_id, "token", f"refresh token delegated by {who} through token exchange")
    return delegation


FAILED_STATUS = {
    DeploymentStatus.CREATE_IN_PROGRESS: DeploymentStatus.CREATE_FAILED,
    DeploymentStatus.DELETE_IN_PROGRESS: DeploymentStatus.DELETE_FAILED,
    DeploymentStatus.CREATE_FAILED: DeploymentStatus.CREATE_FAILED,
    DeploymentStatus.DELETE_FAILED: DeploymentStatus.DELETE_FAILED,
}
REVOKED_REASON = (
    "refresh token revoked or expired at the IdP: the owner must renew the delegation "
    "(submit a fresh access token for this deployment) before it can be changed, scaled or healed"
)


def mark_token_failure(store: Store, deployment_id: str, exc: Exception) -> str:
    """Record why the owner's identity cannot be used any more; returns the status reason written.

    A revoked/expired refresh token fails the deployment (CREATE_/DELETE_/UPDATE_FAILED) and is dropped (useless,
    and the maintenance DAG then stops retrying it). Anything else (IdP unreachable) is only an event: transient.
    """
    if not isinstance(exc, RefreshTokenRevoked):
        message = f"could not get an access token: {exc}"
        store.add_event(deployment_id, "token", message)
        return message
    current = store.get_deployment(deployment_id).status
    status = FAILED_STATUS.get(DeploymentStatus(current), DeploymentStatus.UPDATE_FAILED)
    store.update_deployment(deployment_id, status=status, status_reason=REVOKED_REASON, refresh_token=None)
    store.add_event(deployment_id, "token", REVOKED_REASON)
    return REVOKED_REASON
