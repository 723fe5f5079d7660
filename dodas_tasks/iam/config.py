"""How to reach the IdP: issuer, this service's client, scopes, audience and the claim that carries groups."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_DELEGATION_SCOPES = ("openid", "profile", "offline_access")


@dataclass(frozen=True)
class IamConfig:
    """Settings of the IAM client; ``client_secret`` is left out of repr."""

    issuer: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    scopes: tuple[str, ...] = DEFAULT_DELEGATION_SCOPES
    audience: str | None = None  # required `aud` of presented tokens, and asked for in exchanges
    group_claim: str = "groups"  # e.g. "groups" (INDIGO IAM) or "wlcg.groups" (WLCG profile)
    leeway_s: int = 30  # clock skew allowed on exp/nbf/iat
    timeout_s: float = 10.0
    jwks_min_refetch_s: float = 10.0  # an unknown kid re-fetches the JWKS at most this often

    def __post_init__(self) -> None:
        if not self.issuer.startswith(("https://", "http://")):
            raise ValueError(f"IAM issuer must be an http(s) URL, got {self.issuer!r}")
        if not self.client_id:
            raise ValueError("IAM client id is empty: set the login of the IAM connection to the client id")
        object.__setattr__(self, "issuer", self.issuer.rstrip("/"))
