"""IAM errors: what failed and what to do, never the token itself."""

from __future__ import annotations


class IamError(Exception):
    """Base of every IAM failure; messages never contain a token, secret or key."""


class InvalidToken(IamError):
    """A presented access token was refused; ``reason`` is a short word group such as 'bad signature'."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"access token refused: {reason}" + (f" ({detail})" if detail else ""))


class RefreshTokenRevoked(IamError):
    """The stored refresh token was revoked or has expired at the IdP: only its owner can give a new one."""


class IdpUnreachable(IamError):
    """The IdP did not answer (network, timeout, 5xx): transient, worth a retry."""


class IdpError(IamError):
    """The IdP answered with an error that is neither a revoked token nor an outage (misconfiguration)."""


def scrub(text: str, *secrets: str | None) -> str:
    """Replace every occurrence of the given secrets in text (defence in depth for IdP/library messages)."""
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    return text
