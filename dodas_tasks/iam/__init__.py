"""IAM: OpenID Connect validation, delegation by token exchange, fresh tokens, cloud credentials from tokens."""

from dodas_tasks.iam.client import IamClient, TokenInfo, TokenSet, shared_client
from dodas_tasks.iam.config import IamConfig
from dodas_tasks.iam.delegation import Delegation, DelegationRefused, delegate, delegate_token, mark_token_failure
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
    "RefreshTokenRevoked",
    "TokenInfo",
    "TokenSet",
    "TokenSource",
    "delegate",
    "delegate_token",
    "mark_token_failure",
    "shared_client",
]
