"""The one place that talks to the OpenID provider: discovery, JWKS, validation, userinfo and the token grants.

Token endpoint calls go through authlib's httpx OAuth2Client (client_secret_basic); JWTs are checked with joserfc
(authlib's JOSE library). Every error is an IamError whose message never contains a token or the client secret.
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.integrations.base_client.errors import OAuthError
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from dodas_tasks.iam.config import IamConfig
from dodas_tasks.iam.errors import IdpError, IdpUnreachable, InvalidToken, RefreshTokenRevoked, scrub

with warnings.catch_warnings():  # authlib 1.9 nudges towards the httpx2 fork; httpx is our one HTTP library
    warnings.filterwarnings("ignore", "The httpx module is deprecated", DeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
SIGNING_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
# what a failed exchange with the IdP raises: transport trouble, a 5xx the token call raised for, a malformed URL
HTTP_ERRORS = (httpx.HTTPError, httpx.InvalidURL)


@dataclass(frozen=True)
class TokenInfo:
    """Who a validated access token speaks for (its claims; the token itself is not kept)."""

    issuer: str
    subject: str
    audience: tuple[str, ...]
    scopes: tuple[str, ...]
    expires_at: float | None
    claims: dict[str, Any] = field(repr=False)

    def groups(self, claim: str) -> tuple[str, ...]:
        """Group names from `claim` (a list or a space/comma separated string); WLCG's '/x' becomes 'x'."""
        value = self.claims.get(claim, [])
        items = value.replace(",", " ").split() if isinstance(value, str) else list(value or [])
        return tuple(str(item).lstrip("/") for item in items if str(item).strip("/"))


@dataclass(frozen=True)
class TokenSet:
    """A token endpoint answer; repr shows no token."""

    access_token: str = field(repr=False)
    expires_at: float
    refresh_token: str | None = field(default=None, repr=False)
    scope: str = ""


class IamClient:
    """Client of one issuer, safe to share between threads; discovery and JWKS are cached for the process."""

    def __init__(self, config: IamConfig) -> None:
        self.config = config
        self._http = httpx.Client(follow_redirects=True)
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._jwks: KeySet | None = None
        self._jwks_fetched_at = 0.0

    def __repr__(self) -> str:
        return f"IamClient(issuer={self.config.issuer!r}, client_id={self.config.client_id!r})"

    # -- discovery and keys ------------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The issuer's OpenID configuration (fetched once, checked to name the same issuer)."""
        with self._lock:
            if self._metadata is None:
                url = f"{self.config.issuer}/.well-known/openid-configuration"
                document = self._get_json(url, "OpenID discovery")
                if str(document.get("issuer", "")).rstrip("/") != self.config.issuer:
                    raise IdpError(
                        f"discovery at {url} names issuer {document.get('issuer')!r}, not {self.config.issuer!r}: "
                        "fix the IAM connection's host (it must be the exact issuer URL)"
                    )
                self._metadata = document
            return self._metadata

    def endpoint(self, name: str) -> str:
        """A discovered endpoint URL, e.g. 'token_endpoint'; IdpError if the provider has none."""
        url = self.metadata().get(name)
        if not url:
            raise IdpError(f"the IdP {self.config.issuer} advertises no {name} in its discovery document")
        return str(url)

    def jwks(self, refresh: bool = False) -> KeySet:
        """The issuer's public keys; `refresh` re-fetches (rate-limited), as done when a token names an unknown kid."""
        with self._lock:
            stale = refresh and time.monotonic() - self._jwks_fetched_at >= self.config.jwks_min_refetch_s
            cached = self._jwks
        if cached is not None and not stale:
            return cached
        document = self._get_json(self.endpoint("jwks_uri"), "JWKS")
        try:
            signing = [key for key in document.get("keys", []) if key.get("use", "sig") == "sig"]
            keys = KeySet.import_key_set({"keys": signing})
        except (JoseError, ValueError, TypeError) as exc:
            raise IdpError(f"the JWKS of {self.config.issuer} cannot be read: {exc}") from None
        with self._lock:
            self._jwks, self._jwks_fetched_at = keys, time.monotonic()
        return keys

    # -- validation --------------------------------------------------------------------------------------------

    def validate(self, access_token: str, audience: str | None = None) -> TokenInfo:
        """Check a presented access token: JWTs by signature, iss, aud, exp/nbf (with leeway); others by introspection.

        `audience` defaults to the configured one; with neither, aud is not checked.
        """
        if not isinstance(access_token, str) or not access_token.strip():
            raise InvalidToken("empty", "no access token was given")
        expected_aud = audience or self.config.audience
        if access_token.count(".") != 2:
            return self._introspected(access_token, expected_aud)
        token = self._decode(access_token)
        claims = dict(token.claims)
        checks: dict[str, Any] = {
            "iss": {"essential": True, "value": self.config.issuer},
            "sub": {"essential": True},
            "exp": {"essential": True},
        }
        if expected_aud:
            checks["aud"] = {"essential": True, "value": expected_aud}
        try:
            jwt.JWTClaimsRegistry(leeway=self.config.leeway_s, **checks).validate(claims)
        except ExpiredTokenError:
            raise InvalidToken("expired", f"exp {claims.get('exp')} is in the past beyond the allowed skew") from None
        except (InvalidClaimError, MissingClaimError) as exc:
            claim = getattr(exc, "claim", "")
            if claim in ("nbf", "iat") and isinstance(exc, InvalidClaimError):
                raise InvalidToken("not yet valid", f"{claim} {claims.get(claim)} is in the future") from None
            if claim == "aud":
                raise InvalidToken("wrong audience", f"expected {expected_aud!r}, got {claims.get('aud')!r}") from None
            if claim == "iss":
                detail = f"expected {self.config.issuer!r}, got {claims.get('iss')!r}"
                raise InvalidToken("wrong issuer", detail) from None
            raise InvalidToken(f"bad claim {claim or '?'}", type(exc).__name__) from None
        return _token_info(claims)

    def _decode(self, access_token: str) -> Any:
        """Verify the signature, re-fetching the JWKS once when the token names a key id we do not know."""
        try:
            header = jws.extract_compact(access_token.encode("ascii")).protected
        except (JoseError, ValueError, UnicodeError):
            raise InvalidToken("malformed", "not a compact JWT") from None
        kid = header.get("kid")
        keys = self.jwks()
        if kid is not None and not _has_kid(keys, kid):
            keys = self.jwks(refresh=True)
            if not _has_kid(keys, kid):
                raise InvalidToken("unknown signing key", f"kid {kid!r} is not in the issuer's JWKS")
        try:
            return jwt.decode(access_token, keys, algorithms=SIGNING_ALGORITHMS)
        except BadSignatureError:
            raise InvalidToken("bad signature", "the signature does not verify with the issuer's keys") from None
        except (JoseError, ValueError) as exc:
            raise InvalidToken("malformed", type(exc).__name__) from None

    def _introspected(self, access_token: str, expected_aud: str | None) -> TokenInfo:
        """RFC 7662 introspection of an opaque token, with the same checks as for a JWT."""
        answer = self._post_json(self.endpoint("introspection_endpoint"), {"token": access_token}, "introspection")
        if not answer.get("active"):
            raise InvalidToken("inactive", "the IdP's introspection says the token is revoked, expired or unknown")
        issuer = str(answer.get("iss") or self.config.issuer).rstrip("/")
        if issuer != self.config.issuer:
            raise InvalidToken("wrong issuer", f"expected {self.config.issuer!r}, got {issuer!r}")
        info = _token_info({**answer, "iss": issuer})
        if expected_aud and expected_aud not in info.audience:
            raise InvalidToken("wrong audience", f"expected {expected_aud!r}, got {answer.get('aud')!r}")
        return info

    def userinfo(self, access_token: str) -> dict[str, Any]:
        """Claims from the userinfo endpoint for this access token."""
        try:
            response = self._http.get(
                self.endpoint("userinfo_endpoint"),
                headers={"Authorization": f"Bearer {access_token}"},
                timeout=self.config.timeout_s,
            )
        except HTTP_ERRORS as exc:
            raise IdpUnreachable(f"userinfo at {self.config.issuer}: {type(exc).__name__}") from None
        if response.status_code == 401:
            raise InvalidToken("refused by userinfo", "the IdP does not accept this access token")
        return self._json_of(response, "userinfo")

    # -- grants ------------------------------------------------------------------------------------------------

    def client_credentials(self, scope: str | None = None, audience: str | None = None) -> TokenSet:
        """An access token for this service itself (no user involved)."""
        extra = {"audience": audience} if audience else {}
        return self._grant("client_credentials", "client credentials grant", scope=scope, **extra)

    def exchange(
        self, subject_token: str, scopes: tuple[str, ...] | None = None, audience: str | None = None
    ) -> TokenSet:
        """RFC 8693: trade a user's access token for our own tokens; with offline_access a refresh token comes back."""
        audience = audience or self.config.audience
        extra = {"audience": audience} if audience else {}
        tokens = self._grant(
            TOKEN_EXCHANGE_GRANT,
            "token exchange",
            secrets=(subject_token,),
            subject_token=subject_token,
            subject_token_type=ACCESS_TOKEN_TYPE,
            scope=" ".join(scopes or self.config.scopes),
            **extra,
        )
        if not tokens.refresh_token:
            raise IdpError(
                f"the token exchange at {self.config.issuer} returned no refresh token: the client "
                f"{self.config.client_id!r} needs the offline_access scope and the token-exchange grant at the IdP"
            )
        return tokens

    def refresh(self, refresh_token: str) -> TokenSet:
        """refresh_token grant; the answer may carry a rotated refresh token. Revoked/expired → RefreshTokenRevoked."""
        try:
            return self._grant("refresh_token", "refresh", secrets=(refresh_token,), refresh_token=refresh_token)
        except _GrantRefused as exc:
            if exc.error == "invalid_grant":
                raise RefreshTokenRevoked(
                    f"the IdP {self.config.issuer} refused the refresh token (invalid_grant: revoked or expired)"
                ) from None
            raise IdpError(str(exc)) from None

    def revoke(self, token: str, hint: str = "refresh_token") -> None:
        """RFC 7009 revocation (e.g. when a deployment is deleted)."""
        self._post_json(self.endpoint("revocation_endpoint"), {"token": token, "token_type_hint": hint}, "revocation")

    # -- dynamic client registration -------------------------------------------------------------------------

    def register_client(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """RFC 7591: a new confidential client with `metadata` (client_name, grant_types, scope); the answer
        carries its secret and the RFC 7592 registration_client_uri/registration_access_token that delete it."""
        url = self.endpoint("registration_endpoint")
        try:
            response = self._http.post(url, json=metadata, timeout=self.config.timeout_s)
        except HTTP_ERRORS as exc:
            raise IdpUnreachable(f"client registration at {url}: {type(exc).__name__}") from None
        if response.status_code == 400:
            raise IdpError(f"client registration at {url} refused: {response.text[:200]}")
        document = self._json_of(response, f"client registration at {url}")
        missing = [k for k in ("client_id", "client_secret", "registration_client_uri", "registration_access_token")
                   if not document.get(k)]  # fmt: skip
        if missing:
            raise IdpError(f"client registration at {url}: the answer lacks {', '.join(missing)}")
        return document

    def delete_client(self, registration_uri: str, registration_token: str) -> bool:
        """RFC 7592 delete; False when the IdP no longer knows the client (deleted before: nothing to do)."""
        try:
            response = self._http.delete(
                registration_uri,
                headers={"Authorization": f"Bearer {registration_token}"},
                timeout=self.config.timeout_s,
            )
        except HTTP_ERRORS as exc:
            raise IdpUnreachable(f"client deletion at {registration_uri}: {type(exc).__name__}") from None
        if response.status_code in (200, 204):
            return True
        if response.status_code in (401, 404):  # RFC 7592: an unknown client's token is invalid
            return False
        if response.status_code >= 500:
            raise IdpUnreachable(f"client deletion at {registration_uri}: HTTP {response.status_code}")
        raise IdpError(f"client deletion at {registration_uri}: HTTP {response.status_code}")

    # -- HTTP --------------------------------------------------------------------------------------------------

    def _grant(self, grant_type: str, what: str, secrets: tuple[str, ...] = (), **params: Any) -> TokenSet:
        url = self.endpoint("token_endpoint")
        session = OAuth2Client(  # one per grant: the client keeps the token it fetched as its own state
            self.config.client_id,
            self.config.client_secret,
            token_endpoint_auth_method="client_secret_basic",
            follow_redirects=True,
        )
        hidden = (*secrets, self.config.client_secret)
        try:
            with session:
                answer = session.fetch_token(url, grant_type=grant_type, timeout=self.config.timeout_s, **params)
        except OAuthError as exc:
            message = scrub(f"{what} at {self.config.issuer} refused: {exc.error} {exc.description or ''}", *hidden)
            if grant_type == "refresh_token":
                raise _GrantRefused(exc.error, message.strip()) from None
            if exc.error in ("invalid_client", "unauthorized_client"):
                message += f" — check the client id/secret of the IAM connection ({self.config.client_id!r})"
            raise IdpError(message.strip()) from None
        except HTTP_ERRORS as exc:
            raise IdpUnreachable(f"{what} at {self.config.issuer}: {type(exc).__name__}") from None
        except ValueError:  # not JSON: a proxy's error page, a 5xx
            raise IdpUnreachable(f"{what} at {self.config.issuer}: the answer was not JSON (IdP down?)") from None
        if "access_token" not in answer:
            raise IdpError(f"{what} at {self.config.issuer}: the answer has no access_token")
        expires_at = float(answer.get("expires_at") or time.time() + float(answer.get("expires_in") or 300))
        return TokenSet(answer["access_token"], expires_at, answer.get("refresh_token"), answer.get("scope", ""))

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, timeout=self.config.timeout_s)
        except HTTP_ERRORS as exc:
            hint = "is the IdP up and the issuer URL right?"
            raise IdpUnreachable(f"{what} at {url}: {type(exc).__name__} — {hint}") from None
        return self._json_of(response, f"{what} at {url}")

    def _post_json(self, url: str, data: dict[str, str], what: str) -> dict[str, Any]:
        try:
            response = self._http.post(
                url, data=data, auth=(self.config.client_id, self.config.client_secret), timeout=self.config.timeout_s
            )
        except HTTP_ERRORS as exc:
            raise IdpUnreachable(f"{what} at {url}: {type(exc).__name__}") from None
        return self._json_of(response, f"{what} at {url}")

    def _json_of(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if response.status_code >= 500:
            raise IdpUnreachable(f"{what}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise IdpError(f"{what}: HTTP {response.status_code} (check the client id/secret and the issuer URL)")
        try:
            document = response.json()
        except ValueError:
            raise IdpError(f"{what}: the answer is not JSON") from None
        if not isinstance(document, dict):
            raise IdpError(f"{what}: the answer is not a JSON object")
        return document


class _GrantRefused(Exception):
    def __init__(self, error: str, message: str) -> None:
        self.error = error
        super().__init__(message)


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def _token_info(claims: dict[str, Any]) -> TokenInfo:
    aud = claims.get("aud") or ()
    audience = (aud,) if isinstance(aud, str) else tuple(aud)
    scope = claims.get("scope") or ""
    scopes = tuple(scope.split()) if isinstance(scope, str) else tuple(scope)
    exp = claims.get("exp")
    return TokenInfo(
        issuer=str(claims.get("iss", "")).rstrip("/"),
        subject=str(claims.get("sub", "")),
        audience=audience,
        scopes=scopes,
        expires_at=float(exp) if exp is not None else None,
        claims=claims,
    )


_SHARED: dict[IamConfig, IamClient] = {}
_SHARED_LOCK = threading.Lock()


def shared_client(config: IamConfig) -> IamClient:
    """One client per configuration per process, so discovery and the JWKS are fetched once, not per task."""
    with _SHARED_LOCK:
        client = _SHARED.get(config)
        if client is None:
            client = _SHARED[config] = IamClient(config)
        return client
