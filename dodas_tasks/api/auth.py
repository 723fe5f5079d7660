"""Who is calling: a bearer IAM access token (validated by the IAM layer) or Airflow's own token (the UI's cookie
or a JWT from Airflow's POST /auth/token). Anything else is a 401 that says why; the token itself is never logged.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from dodas_tasks.api.errors import ApiError, unauthorized
from dodas_tasks.deploy.service import AIRFLOW_ISSUER
from dodas_tasks.iam import IamClient, IamError, IdpUnreachable, InvalidToken
from dodas_tasks.store import Visibility

AIRFLOW_COOKIE = "_token"  # where Airflow's UI keeps its JWT


@dataclass(frozen=True)
class Caller:
    """An authenticated caller; `access_token` is kept (never shown) only to delegate a submission to the service."""

    issuer: str
    subject: str
    groups: tuple[str, ...] = ()
    admin: bool = False
    access_token: str | None = field(default=None, repr=False)

    def visibility(self) -> Visibility:
        return Visibility(self.issuer, self.subject, self.groups, everyone=self.admin)

    def __str__(self) -> str:
        return f"{self.subject}@{self.issuer}"


class Authenticator:
    """Turns a request's credentials into a Caller.

    `iam` gives the service's IAM client (None when no dodas_iam connection exists); `airflow_tokens` is on when the
    API runs inside Airflow's api-server, whose auth manager then checks its own tokens.
    """

    def __init__(
        self, iam: Callable[[], IamClient | None], admin_groups: Iterable[str], airflow_tokens: bool = False
    ) -> None:
        self._iam = iam
        self._admin_groups = frozenset(admin_groups)
        self._airflow_tokens = airflow_tokens

    async def __call__(self, request: Request) -> Caller:
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise unauthorized("the Authorization header must be 'Bearer <access token>'")
            return await self._bearer(token.strip())
        cookie = request.cookies.get(AIRFLOW_COOKIE) if self._airflow_tokens else None
        if cookie:
            return await self._airflow(cookie)
        raise unauthorized("no access token: send 'Authorization: Bearer <IAM access token>'")

    async def _bearer(self, token: str) -> Caller:
        iam = self._iam()
        if self._airflow_tokens and not _from_issuer(token, iam.config.issuer if iam else None):
            return await self._airflow(token)
        if iam is None:
            raise unauthorized("this service has no IAM connection (dodas_iam): IAM access tokens cannot be checked")
        try:
            info = await run_in_threadpool(iam.validate, token)
        except InvalidToken as exc:
            raise unauthorized(str(exc)) from None
        except IdpUnreachable as exc:
            raise ApiError(503, f"the IAM service cannot check tokens now: {exc}") from None
        except IamError as exc:
            raise ApiError(502, f"the IAM service: {exc}") from None
        groups = info.groups(iam.config.group_claim)
        admin = bool(self._admin_groups & set(groups))
        return Caller(info.issuer, info.subject, groups, admin=admin, access_token=token)

    async def _airflow(self, token: str) -> Caller:
        """Airflow's own token; its users with the right to edit connections (they hold every credential already)
        are administrators here."""
        from airflow.api_fastapi.app import get_auth_manager
        from jwt import ExpiredSignatureError

        manager = get_auth_manager()
        try:
            user = await manager.get_user_from_token(token)
        except ExpiredSignatureError:
            raise unauthorized("Airflow token expired: log in again") from None
        except Exception:
            iam = self._iam()
            also = f" nor an access token of {iam.config.issuer}" if iam is not None else ""
            raise unauthorized(f"not a valid Airflow token{also}") from None
        admin = manager.is_authorized_connection(method="PUT", user=user)
        return Caller(AIRFLOW_ISSUER, user.get_name(), admin=admin)


def _from_issuer(token: str, issuer: str | None) -> bool:
    """Whether a token is for the IAM layer: opaque (introspection), or a JWT naming `issuer` (signature checked
    later). Unreadable JWTs go to the IAM layer too, which says what is wrong with them."""
    if token.count(".") != 2:
        return True
    try:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, TypeError):
        return True
    if not isinstance(claims, dict):
        return True
    return issuer is not None and str(claims.get("iss", "")).rstrip("/") == issuer
