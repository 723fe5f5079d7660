"""IAM: OpenID Connect validation, delegation by token exchange (also ahead of a submission), fresh tokens.

The clouds get the owner's tokens as a plain callable (deploy/cloud_access.py); turning them into cloud credentials
(Keystone OIDC, STS web identity) is each driver's job."""

from dodas_tasks.iam.client import IamClient, TokenInfo, TokenSet, shared_client
from dodas_tasks.iam.config import IamConfig
from dodas_tasks.iam.delegation import (
    Delegation,
    DelegationRefused,
    PendingHandle,
    delegate,
    delegate_ahead,
    delegate_token,
    mark_token_failure,
    take_delegation,
)
from dodas_tasks.iam.errors import IamError, IdpError, IdpUnreachable, InvalidToken, RefreshTokenRevoked
from dodas_tasks.iam.token_source import TokenSource

__all__ = [
    "Delegation",
    "DelegationRefused",
    "IamClient",
    "IamConfig",
    "IamError",
    "IdpError",
    "IdpUnreachable",
    "InvalidToken",
    "PendingHandle",
    "RefreshTokenRevoked",
    "TokenInfo",
    "TokenSet",
    "TokenSource",
    "delegate",
    "delegate_ahead",
    "delegate_token",
    "mark_token_failure",
    "shared_client",
    "take_delegation",
]
