"""Keystone v3: version document, password / application credential / token auth, OIDC access-token federation
(`/v3/OS-FEDERATION/identity_providers/{idp}/protocols/{protocol}/auth`), and a catalog pointing at the double.

Federation with a real OpenID provider (`Credentials.oidc_issuer`): the bearer must be a JWT access token that
provider signed (checked against its JWKS: signature, issuer, expiry, audience when set); the mapping gives each
user the project named by `federated_project` (formatted with the token's claims), created at first login as
Keystone's auto-provisioning does. Tokens last `token_ttl_s`; every service call is recorded with the user and
project of its token (`service_calls`)."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .http import HttpError, Request, Response, Router
from .state import DOMAIN_ID, PROJECT_ID, USER_ID

PROJECT_NAME = "dodas"
REGION = "RegionOne"


@dataclass
class Credentials:
    """Who may log in to the double."""

    username: str = "demo"
    password: str = "secret-password"
    app_cred_id: str = "4a1b2c3d4e5f40718293a4b5c6d7e8f9"
    app_cred_secret: str = "app-cred-secret"
    identity_provider: str = "iam"
    protocol: str = "openid"
    access_tokens: set[str] = field(default_factory=lambda: {"valid-oidc-access-token"})
    oidc_issuer: str | None = None  # a real OpenID provider: OIDC access tokens are its signed JWTs
    oidc_audience: str | None = None
    federated_project: str = "{sub}"  # the mapping: a federated user's project, from the token's claims
    token_ttl_s: float = 3600.0


@dataclass(frozen=True)
class ServiceCall:
    """One call to a service (not Keystone), as the token it carried says: who, in which project."""

    op: str
    user: str
    project: str  # the project's name


UNAUTHORIZED = {
    "error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}
}


class Identity:
    """Issues tokens; every service call is checked against them (401 otherwise)."""

    def __init__(
        self,
        base_url: Callable[[], str],
        credentials: Credentials,
        on_new_project: Callable[[str], None] = lambda _project_id: None,
    ) -> None:
        self.base_url, self.credentials, self.on_new_project = base_url, credentials, on_new_project
        self.tokens: dict[str, dict[str, Any]] = {}
        self.methods: Counter[str] = Counter()  # successful authentications by method
        self.projects: dict[str, str] = {PROJECT_ID: PROJECT_NAME}  # id -> name
        self.user_projects: dict[str, set[str]] = {}  # federated user -> project ids the mapping gives
        self.service_calls: list[ServiceCall] = []
        self.oidc_logins: list[tuple[str, str, float]] = []  # (subject, jti, exp) of each accepted access token
        self.lock = threading.Lock()
        self._jwks: KeySet | None = None

    def check(self, request: Request, op: str = "") -> str:
        """The project id of the request's valid, project-scoped token (401 otherwise); the call is recorded."""
        token = request.headers.get("X-Auth-Token") or request.headers.get("x-auth-token")
        known = self.tokens.get(token or "")
        if not known or not known.get("project") or known["expires"] < time.time():
            raise HttpError(401, UNAUTHORIZED)
        with self.lock:
            self.service_calls.append(ServiceCall(op, known["user"], self.projects[known["project"]]))
        return known["project"]

    def catalog(self, project_id: str = PROJECT_ID) -> list[dict[str, Any]]:
        base = self.base_url()

        def entry(kind: str, name: str, url: str) -> dict[str, Any]:
            return {
                "type": kind,
                "name": name,
                "id": secrets.token_hex(8),
                "endpoints": [
                    {"id": secrets.token_hex(8), "interface": i, "region": REGION, "region_id": REGION, "url": url}
                    for i in ("public", "internal", "admin")
                ],
            }

        return [
            entry("identity", "keystone", f"{base}/identity"),
            entry("compute", "nova", f"{base}/compute/v2.1"),
            entry("image", "glance", f"{base}/image"),
            entry("network", "neutron", f"{base}/network"),
            entry("block-storage", "cinder", f"{base}/volume/v3/{project_id}"),
        ]

    def _issue(self, methods: list[str], user: str, project_id: str | None) -> Response:
        token = secrets.token_hex(16)
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self.credentials.token_ttl_s)
        body: dict[str, Any] = {
            "methods": methods,
            "issued_at": now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "user": {"id": USER_ID if user == self.credentials.username else _user_id(user), "name": user,
                     "domain": {"id": DOMAIN_ID, "name": "Default"}},
            "audit_ids": [secrets.token_hex(8)],
        }  # fmt: skip
        if project_id:
            body["project"] = {"id": project_id, "name": self.projects[project_id], "domain": {"id": DOMAIN_ID}}
            body["project"]["domain"]["name"] = "Default"
            body["roles"] = [{"id": "r1", "name": "member"}, {"id": "r2", "name": "reader"}]
            body["catalog"] = self.catalog(project_id)
            body["is_domain"] = False
        with self.lock:
            self.tokens[token] = {"project": project_id, "methods": methods, "user": user,
                                  "expires": expires.timestamp()}  # fmt: skip
        return Response(201, {"token": body}, {"X-Subject-Token": token})

    def _scope(self, scope: dict[str, Any] | None, user: str) -> str | None:
        """The project id the scope names, if the user may have it (the default project, or the mapping's)."""
        project = (scope or {}).get("project")
        if not project:
            return None
        allowed = self.user_projects.get(user, {PROJECT_ID})
        for project_id in allowed:
            if project.get("id") == project_id or project.get("name") == self.projects[project_id]:
                return project_id
        return None

    def authenticate(self, request: Request) -> Response:
        auth = (request.body or {}).get("auth") or {}
        identity = auth.get("identity") or {}
        methods = identity.get("methods") or []
        creds = self.credentials
        user = creds.username
        if "password" in methods:
            given = identity.get("password", {}).get("user", {})
            if given.get("name") != creds.username or given.get("password") != creds.password:
                raise HttpError(401, UNAUTHORIZED)
            kind, project = "password", self._scope(auth.get("scope"), user)
        elif "application_credential" in methods:
            cred = identity.get("application_credential", {})
            if cred.get("id") != creds.app_cred_id or cred.get("secret") != creds.app_cred_secret:
                raise HttpError(401, UNAUTHORIZED)
            kind, project = "application_credential", PROJECT_ID  # bound to its project
        elif "token" in methods:
            known = self.tokens.get(identity.get("token", {}).get("id"))
            if known is None or known["expires"] < time.time():
                raise HttpError(401, UNAUTHORIZED)
            user = known["user"]
            kind, project = "token", self._scope(auth.get("scope"), user)
        else:
            raise HttpError(401, UNAUTHORIZED)
        with self.lock:
            self.methods[kind] += 1
        return self._issue(methods, user, project)

    def federated(self, request: Request) -> Response:
        creds = self.credentials
        if request.params["idp"] != creds.identity_provider or request.params["protocol"] != creds.protocol:
            raise HttpError(404, {"error": {"code": 404, "message": "Could not find Identity Provider."}})
        bearer = request.headers.get("Authorization") or request.headers.get("authorization") or ""
        if not bearer.startswith("Bearer "):
            raise HttpError(401, UNAUTHORIZED)
        if creds.oidc_issuer is None:
            if bearer[7:] not in creds.access_tokens:
                raise HttpError(401, UNAUTHORIZED)
            user = creds.username
        else:
            claims = self._validated(bearer[7:])
            user = claims["sub"]
            self._map(user, creds.federated_project.format(**claims))
            with self.lock:
                self.oidc_logins.append((user, str(claims.get("jti", "")), float(claims["exp"])))
        with self.lock:
            self.methods["oidc"] += 1
        return self._issue(["mapped"], user, None)

    def _validated(self, token: str) -> dict[str, Any]:
        """The claims of an access token the OpenID provider signed, unexpired, for us (401 otherwise)."""
        issuer = (self.credentials.oidc_issuer or "").rstrip("/")
        try:
            claims = jwt.decode(token, self._keys(issuer), algorithms=["RS256"]).claims
        except (JoseError, ValueError):
            try:  # the provider rotated its keys: fetch them again once
                claims = jwt.decode(token, self._keys(issuer, fresh=True), algorithms=["RS256"]).claims
            except (JoseError, ValueError):
                raise HttpError(401, UNAUTHORIZED) from None
        audience = self.credentials.oidc_audience
        audiences = claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        if claims.get("iss", "").rstrip("/") != issuer or float(claims.get("exp", 0)) < time.time():
            raise HttpError(401, UNAUTHORIZED)
        if audience and audience not in audiences:
            raise HttpError(401, UNAUTHORIZED)
        return claims

    def _keys(self, issuer: str, fresh: bool = False) -> KeySet:
        if self._jwks is None or fresh:
            metadata = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
            self._jwks = KeySet.import_key_set(httpx.get(metadata["jwks_uri"], timeout=10).json())
        return self._jwks

    def _map(self, user: str, project_name: str) -> None:
        """Keystone's mapping with project auto-provisioning: the user's project exists and is theirs."""
        project_id = next((i for i, name in self.projects.items() if name == project_name), None)
        if project_id is None:
            project_id = _user_id(f"project:{project_name}")
            self.projects[project_id] = project_name
            self.on_new_project(project_id)
        self.user_projects.setdefault(user, set()).add(project_id)

    def auth_projects(self, request: Request) -> Response:
        """GET /v3/auth/projects: the projects the (unscoped) token's user may scope to."""
        known = self.tokens.get(request.headers.get("X-Auth-Token") or request.headers.get("x-auth-token") or "")
        if known is None or known["expires"] < time.time():
            raise HttpError(401, UNAUTHORIZED)
        ids = sorted(self.user_projects.get(known["user"], {PROJECT_ID}))
        projects = [{"id": i, "name": self.projects[i], "domain_id": DOMAIN_ID, "enabled": True} for i in ids]
        return Response(200, {"projects": projects, "links": {"self": None, "next": None, "previous": None}})

    def version(self, request: Request) -> Response:
        return Response(200, {"version": self._version()})

    def versions(self, request: Request) -> Response:
        return Response(300, {"versions": {"values": [self._version()]}})

    def _version(self) -> dict[str, Any]:
        return {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.base_url()}/identity/v3/"}],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
        }

    def register(self, router: Router) -> None:
        router.add("GET", "/identity", "identity.versions", self.versions)
        router.add("GET", "/identity/v3", "identity.version", self.version)
        router.add("POST", "/identity/v3/auth/tokens", "identity.tokens.create", self.authenticate)
        router.add("GET", "/identity/v3/auth/projects", "identity.auth.projects", self.auth_projects)
        router.add(
            "POST",
            "/identity/v3/OS-FEDERATION/identity_providers/{idp}/protocols/{protocol}/auth",
            "identity.federation.auth",
            self.federated,
        )


def _user_id(name: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, name).hex
