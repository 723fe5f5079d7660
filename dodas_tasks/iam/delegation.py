"""Delegation: the submitter's access token is validated and exchanged for a refresh token the service keeps.

Only the refresh token is stored (encrypted by the Store); the submitter's access token is dropped at once.
A delegation may also be made ahead of its deployment (`delegate_ahead`, at the API's door) and named by a
one-time handle in a later submission (`take_delegation`), so no access token ever travels in a DAG run's conf.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

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


PENDING_TTL = timedelta(minutes=15)  # how long a delegation made ahead waits for its submission
HANDLE_PREFIX = "dodas-delegation-"


@dataclass(frozen=True)
class PendingHandle:
    """What the owner gets for a delegation made ahead: the one-time handle (secret until used), whose, until when."""

    handle: str = field(repr=False)
    issuer: str
    subject: str
    expires_at: datetime


def _digest(handle: str) -> str:
    return hashlib.sha256(handle.encode()).hexdigest()


def delegate_ahead(store: Store, iam: IamClient, subject_access_token: str) -> PendingHandle:
    """Validate and exchange the token now; its refresh token waits (encrypted) for the submission naming the
    handle, at most PENDING_TTL. Only the handle's digest is stored."""
    delegation = delegate_token(iam, subject_access_token)
    handle = HANDLE_PREFIX + secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + PENDING_TTL
    store.add_pending_delegation(
        _digest(handle), delegation.issuer, delegation.subject, delegation.groups, delegation.refresh_token, expires_at
    )
    return PendingHandle(handle, delegation.issuer, delegation.subject, expires_at)


def take_delegation(store: Store, handle: str) -> Delegation:
    """The delegation a handle names, taken (it cannot be used twice); DelegationRefused when unknown, used or
    expired."""
    found = store.take_pending_delegation(_digest(handle.strip()))
    if found is None:
        minutes = int(PENDING_TTL.total_seconds() // 60)
        raise DelegationRefused(
            f"the delegation named is unknown, already used or expired (a delegation waits {minutes} minutes for "
            "its submission): delegate your IAM token again"
        )
    return Delegation(found.owner_issuer, found.owner_subject, found.owner_groups, found.refresh_token)


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
