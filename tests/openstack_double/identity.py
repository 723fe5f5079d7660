"""Keystone v3: version document, password / application credential / token auth, OIDC access-token federation
(`/v3/OS-FEDERATION/identity_providers/{idp}/protocols/{protocol}/auth`), and a catalog pointing at the double."""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

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


UNAUTHORIZED = {
    "error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}
}


class Identity:
    """Issues tokens; every service call is checked against them (401 otherwise)."""

    def __init__(self, base_url: Callable[[], str], credentials: Credentials) -> None:
        self.base_url, self.credentials = base_url, credentials
        self.tokens: dict[str, dict[str, Any]] = {}
        self.methods: Counter[str] = Counter()  # successful authentications by method
        self.lock = threading.Lock()

    def check(self, request: Request) -> None:
        token = request.headers.get("X-Auth-Token") or request.headers.get("x-auth-token")
        if not token or token not in self.tokens or not self.tokens[token].get("project"):
            raise HttpError(401, UNAUTHORIZED)

    def catalog(self) -> list[dict[str, Any]]:
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
            entry("block-storage", "cinder", f"{base}/volume/v3/{PROJECT_ID}"),
        ]

    def _issue(self, methods: list[str], scoped: bool) -> Response:
        token = secrets.token_hex(16)
        now = datetime.now(UTC)
        body: dict[str, Any] = {
            "methods": methods,
            "issued_at": now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "expires_at": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "user": {"id": USER_ID, "name": self.credentials.username, "domain": {"id": DOMAIN_ID, "name": "Default"}},
            "audit_ids": [secrets.token_hex(8)],
        }
        if scoped:
            body["project"] = {"id": PROJECT_ID, "name": PROJECT_NAME, "domain": {"id": DOMAIN_ID, "name": "Default"}}
            body["roles"] = [{"id": "r1", "name": "member"}, {"id": "r2", "name": "reader"}]
            body["catalog"] = self.catalog()
            body["is_domain"] = False
        with self.lock:
            self.tokens[token] = {"project": PROJECT_ID if scoped else None, "methods": methods}
        return Response(201, {"token": body}, {"X-Subject-Token": token})

    def _scope_ok(self, scope: dict[str, Any] | None) -> bool:
        project = (scope or {}).get("project")
        if not project:
            return False
        return project.get("id") == PROJECT_ID or project.get("name") == PROJECT_NAME

    def authenticate(self, request: Request) -> Response:
        auth = (request.body or {}).get("auth") or {}
        identity = auth.get("identity") or {}
        methods = identity.get("methods") or []
        creds = self.credentials
        if "password" in methods:
            user = identity.get("password", {}).get("user", {})
            if user.get("name") != creds.username or user.get("password") != creds.password:
                raise HttpError(401, UNAUTHORIZED)
            kind, scoped = "password", self._scope_ok(auth.get("scope"))
        elif "application_credential" in methods:
            cred = identity.get("application_credential", {})
            if cred.get("id") != creds.app_cred_id or cred.get("secret") != creds.app_cred_secret:
                raise HttpError(401, UNAUTHORIZED)
            kind, scoped = "application_credential", True  # bound to its project
        elif "token" in methods:
            token = identity.get("token", {}).get("id")
            if token not in self.tokens:
                raise HttpError(401, UNAUTHORIZED)
            kind, scoped = "token", self._scope_ok(auth.get("scope"))
        else:
            raise HttpError(401, UNAUTHORIZED)
        with self.lock:
            self.methods[kind] += 1
        return self._issue(methods, scoped)

    def federated(self, request: Request) -> Response:
        creds = self.credentials
        if request.params["idp"] != creds.identity_provider or request.params["protocol"] != creds.protocol:
            raise HttpError(404, {"error": {"code": 404, "message": "Could not find Identity Provider."}})
        bearer = request.headers.get("Authorization") or request.headers.get("authorization") or ""
        if not bearer.startswith("Bearer ") or bearer[7:] not in creds.access_tokens:
            raise HttpError(401, UNAUTHORIZED)
        with self.lock:
            self.methods["oidc"] += 1
        return self._issue(["mapped"], scoped=False)

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
        router.add(
            "POST",
            "/identity/v3/OS-FEDERATION/identity_providers/{idp}/protocols/{protocol}/auth",
            "identity.federation.auth",
            self.federated,
        )
