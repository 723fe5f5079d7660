"""A small but real OpenID Connect provider for tests, built on authlib's server components (run as a process).

Endpoints: discovery, JWKS (with key rotation), token (client_credentials, refresh_token with rotation,
RFC 8693 token exchange), RFC 7662 introspection, RFC 7009 revocation, userinfo, RFC 7591/7592 dynamic client
registration (register, read, delete with the registration access token), and a minimal Keystone v3
OS-FEDERATION endpoint (OIDC access token → unscoped → project-scoped token). ``/test/*`` endpoints stand in for
the user's interactive login (mint a user's token) and let tests rotate keys and read counters.
Run: ``python server.py --port N [--access-ttl 30]``; prints ``ready <issuer>`` when it listens.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, g, jsonify, request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
CLIENT_AUTH = ("client_secret_basic", "client_secret_post")
ALL_SCOPES = "openid profile email offline_access compute.read compute.write"
EVERY_GRANT = ("client_credentials", "refresh_token", TOKEN_EXCHANGE)


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    grant_types: tuple[str, ...]
    scope: str = ALL_SCOPES

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return ""

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = set(self.scope.split())
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class Token(TokenMixin):
    """One issued token (access or refresh) as the provider remembers it."""

    value: str
    kind: str  # "access" | "refresh"
    client_id: str
    subject: str
    scope: str
    issued_at: float
    expires_in: int
    audience: str | None = None
    revoked: bool = False
    claims: dict[str, Any] = field(default_factory=dict)

    def check_client(self, client: ClientMixin) -> bool:
        return client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str:
        return self.subject

    def get_client(self) -> ClientMixin:
        return STATE.clients[self.client_id]


@dataclass
class User:
    subject: str
    name: str
    groups: list[str]

    def get_user_id(self) -> str:
        return self.subject


class State:
    """Everything the provider knows, in memory, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.issuer = ""
        self.access_ttl = 30
        self.refresh_ttl = 30 * 24 * 3600
        self.rotate_refresh = True
        self.keys: list[RSAKey] = []  # last one signs; all are published
        self.clients: dict[str, Client] = {}
        self.registrations: dict[str, str] = {}  # dynamically registered client id -> registration access token
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        self.keystone_tokens: dict[str, dict[str, Any]] = {}
        self.counters: dict[str, int] = {}
        self.keystone_idp = "dodas-iam"

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    def new_key(self) -> RSAKey:
        key = RSAKey.generate_key(2048, parameters={"kid": f"k-{uuid.uuid4().hex[:12]}", "use": "sig", "alg": "RS256"})
        with self.lock:
            self.keys.append(key)
        return key

    def key_set(self) -> KeySet:
        with self.lock:
            return KeySet(list(self.keys))


STATE = State()


def sign_access_token(
    subject: str, client_id: str, scope: str, audience: str | None, ttl: int, issued_at: float | None = None
) -> str:
    """A JWT access token (RFC 9068 style) signed with the current key; remembered for introspection."""
    now = int(issued_at if issued_at is not None else time.time())
    user = STATE.users.get(subject)
    claims: dict[str, Any] = {
        "iss": STATE.issuer,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
        "client_id": client_id,
        "scope": scope,
    }
    if audience:
        claims["aud"] = audience
    if user is not None:
        claims["groups"] = list(user.groups)
        claims["wlcg.groups"] = [f"/{name}" for name in user.groups]
        claims["preferred_username"] = user.name
    key = STATE.keys[-1]
    value = jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "at+jwt"}, claims, key)
    with STATE.lock:
        STATE.tokens[value] = Token(value, "access", client_id, subject, scope, now, ttl, audience, claims=claims)
    return value


def opaque_access_token(subject: str, client_id: str, scope: str, audience: str | None, ttl: int) -> str:
    value = generate_token(40)
    with STATE.lock:
        STATE.tokens[value] = Token(value, "access", client_id, subject, scope, time.time(), ttl, audience)
    return value


def active_access_token(value: str) -> Token | None:
    """The access token if it is ours, unexpired and unrevoked (JWTs are also checked by signature)."""
    with STATE.lock:
        token = STATE.tokens.get(value)
    if token is None or token.kind != "access" or token.is_expired() or token.is_revoked():
        return None
    if value.count(".") == 2:
        try:
            jwt.decode(value, STATE.key_set(), algorithms=["RS256"])
        except (JoseError, ValueError):
            return None
    return token


def _access_token_generator(client: Client, grant_type: str, user: User | None, scope: str) -> str:
    subject = user.subject if user is not None else client.client_id
    return sign_access_token(subject, client.client_id, scope, g.get("audience"), STATE.access_ttl)


def _refresh_token_generator(client: Client, grant_type: str, user: User | None, scope: str) -> str:
    return generate_token(48)


def _save_token(token: dict[str, Any], req: Any) -> None:
    refresh = token.get("refresh_token")
    if not refresh:
        return
    user = req.user
    subject = user.subject if user is not None else req.client.client_id
    with STATE.lock:
        STATE.tokens[refresh] = Token(
            refresh, "refresh", req.client.client_id, subject, token.get("scope", ""), time.time(), STATE.refresh_ttl
        )


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Refresh with rotation (when enabled): the old refresh token is revoked as the new one is issued."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        with STATE.lock:
            token = STATE.tokens.get(refresh_token)
        if token and token.kind == "refresh" and not token.is_expired() and not token.is_revoked():
            return token
        return None

    def authenticate_user(self, refresh_token: Token) -> User | None:
        STATE.count("refresh")
        return STATE.users.get(refresh_token.subject)

    def revoke_old_credential(self, refresh_token: Token) -> None:
        if STATE.rotate_refresh:
            refresh_token.revoked = True

    def issue_token(self, user: User, refresh_token: Token) -> dict[str, Any]:
        g.audience = refresh_token.audience
        token = self.generate_token(
            user=user, scope=refresh_token.get_scope(), include_refresh_token=STATE.rotate_refresh
        )
        if not STATE.rotate_refresh:
            token["refresh_token"] = refresh_token.value
        return token

    def save_token(self, token: dict[str, Any]) -> None:
        if STATE.rotate_refresh:
            super().save_token(token)
            with STATE.lock:
                STATE.tokens[token["refresh_token"]].audience = g.get("audience")


class TokenExchangeGrant(grants.BaseGrant, grants.TokenEndpointMixin):
    """RFC 8693: a client trades a user's access token for tokens of its own (a refresh token with offline_access)."""

    GRANT_TYPE = TOKEN_EXCHANGE
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise InvalidGrantError(f"client {client.client_id} may not use token exchange")
        form = self.request.form
        if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(f"subject_token_type must be {ACCESS_TOKEN_TYPE}")
        subject = active_access_token(form.get("subject_token") or "")
        if subject is None:
            raise InvalidGrantError("subject_token is not an active access token of this issuer")
        requested = set((self.request.payload.scope or "openid").split())
        if not requested <= set(client.scope.split()):
            raise InvalidScopeError("scope not allowed for this client")
        self.request.client = client
        self.request.user = STATE.users.get(subject.subject)
        if self.request.user is None:
            raise InvalidGrantError("the subject token belongs to no user")

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        STATE.count("token_exchange")
        scope = " ".join(sorted(set((self.request.payload.scope or "openid").split())))
        g.audience = self.request.form.get("audience")
        token = self.generate_token(
            user=self.request.user, scope=scope, include_refresh_token="offline_access" in scope.split()
        )
        token["issued_token_type"] = ACCESS_TOKEN_TYPE
        self.save_token(token)
        if token.get("refresh_token"):
            with STATE.lock:
                STATE.tokens[token["refresh_token"]].audience = g.audience
        return 200, token, self.TOKEN_RESPONSE_HEADER


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH

    def create_token_response(self) -> Any:
        g.audience = self.request.form.get("audience")
        return super().create_token_response()


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        with STATE.lock:
            token = STATE.tokens.get(token_string)
        if token is not None and token.kind == "access" and token_string.count(".") == 2:
            return token if active_access_token(token_string) else None
        return token

    def check_permission(self, token: Token, client: Client, req: Any) -> bool:
        return True  # any registered client may introspect (a resource server's job)

    def introspect_token(self, token: Token) -> dict[str, Any]:
        user = STATE.users.get(token.subject)
        payload: dict[str, Any] = {
            "active": True,
            "client_id": token.client_id,
            "token_type": "Bearer" if token.kind == "access" else "refresh_token",
            "scope": token.scope,
            "sub": token.subject,
            "iss": STATE.issuer,
            "exp": int(token.issued_at + token.expires_in),
            "iat": int(token.issued_at),
        }
        if token.audience:
            payload["aud"] = token.audience
        if user is not None:
            payload["groups"] = list(user.groups)
            payload["wlcg.groups"] = [f"/{name}" for name in user.groups]
        return payload


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        with STATE.lock:
            return STATE.tokens.get(token_string)

    def revoke_token(self, token: Token, req: Any) -> None:
        STATE.count("revoke")
        token.revoked = True


def _query_client(client_id: str) -> Client | None:
    return STATE.clients.get(client_id)


def create_app() -> Flask:
    app = Flask("dodas-test-oidc-provider")
    server = AuthorizationServer(app, query_client=_query_client, save_token=_save_token)
    server.register_token_generator(
        "default",
        BearerTokenGenerator(_access_token_generator, _refresh_token_generator, lambda *_: STATE.access_ttl),
    )
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(RefreshTokenGrant)
    server.register_grant(TokenExchangeGrant)
    server.register_endpoint(Introspection)
    server.register_endpoint(Revocation)

    @app.get("/.well-known/openid-configuration")
    def discovery() -> Any:
        base = STATE.issuer
        return jsonify(
            issuer=base,
            jwks_uri=f"{base}/jwk",
            token_endpoint=f"{base}/token",
            introspection_endpoint=f"{base}/introspect",
            revocation_endpoint=f"{base}/revoke",
            registration_endpoint=f"{base}/register",
            userinfo_endpoint=f"{base}/userinfo",
            authorization_endpoint=f"{base}/authorize",
            device_authorization_endpoint=f"{base}/devicecode",
            grant_types_supported=["client_credentials", "refresh_token", TOKEN_EXCHANGE],
            token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
            id_token_signing_alg_values_supported=["RS256"],
            scopes_supported=ALL_SCOPES.split(),
            response_types_supported=["code"],
            subject_types_supported=["public"],
            claims_supported=["sub", "iss", "groups", "wlcg.groups", "preferred_username"],
        )

    @app.get("/jwk")
    def jwks() -> Any:
        STATE.count("jwks")
        return jsonify(STATE.key_set().as_dict(private=False))

    @app.post("/token")
    def token() -> Any:
        return server.create_token_response()

    @app.post("/introspect")
    def introspect() -> Any:
        return server.create_endpoint_response(Introspection.ENDPOINT_NAME)

    @app.post("/revoke")
    def revoke() -> Any:
        return server.create_endpoint_response(Revocation.ENDPOINT_NAME)

    @app.route("/userinfo", methods=["GET", "POST"])
    def userinfo() -> Any:
        header = request.headers.get("Authorization", "")
        token = active_access_token(header[7:]) if header.startswith("Bearer ") else None
        if token is None or token.subject not in STATE.users:
            return jsonify(error="invalid_token"), 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        user = STATE.users[token.subject]
        return jsonify(sub=user.subject, preferred_username=user.name, name=user.name, groups=user.groups)

    _registration_endpoints(app)
    _test_endpoints(app)
    _keystone_endpoints(app)
    return app


def _registration_endpoints(app: Flask) -> None:
    """RFC 7591 registration (anonymous, as INDIGO IAM allows) and RFC 7592 read/delete of the client."""

    @app.post("/register")
    def register() -> Any:
        metadata = request.get_json(silent=True) or {}
        grant_types = tuple(metadata.get("grant_types") or ("refresh_token",))
        unsupported = sorted(set(grant_types) - set(EVERY_GRANT))
        if unsupported:
            return jsonify(error="invalid_client_metadata", error_description=f"grant types {unsupported}"), 400
        allowed = set(ALL_SCOPES.split())
        scope = " ".join(s for s in str(metadata.get("scope") or ALL_SCOPES).split() if s in allowed)
        client = Client(f"dyn-{uuid.uuid4().hex[:12]}", secrets.token_urlsafe(32), grant_types, scope)
        registration_token = secrets.token_urlsafe(32)
        with STATE.lock:
            STATE.clients[client.client_id] = client
            STATE.registrations[client.client_id] = registration_token
        STATE.count("register")
        body = _client_metadata(client, metadata.get("client_name"))
        body.update(client_secret=client.client_secret, registration_access_token=registration_token)
        return jsonify(body), 201

    @app.route("/register/<client_id>", methods=["GET", "DELETE"])
    def client_configuration(client_id: str) -> Any:
        with STATE.lock:
            expected = STATE.registrations.get(client_id)
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if expected is None or not secrets.compare_digest(expected, given):
                return jsonify(error="invalid_token"), 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            client = STATE.clients[client_id]
            if request.method == "GET":
                return jsonify(_client_metadata(client, None))
            del STATE.clients[client_id], STATE.registrations[client_id]
            for token in STATE.tokens.values():  # the client's tokens die with it
                if token.client_id == client_id:
                    token.revoked = True
        STATE.count("unregister")
        return "", 204


def _client_metadata(client: Client, name: str | None) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "client_name": name or client.client_id,
        "grant_types": list(client.grant_types),
        "scope": client.scope,
        "token_endpoint_auth_method": "client_secret_basic",
        "client_secret_expires_at": 0,
        "registration_client_uri": f"{STATE.issuer}/register/{client.client_id}",
    }


def _test_endpoints(app: Flask) -> None:
    """Stand-ins for interactive steps (the user's login) and test controls."""

    @app.post("/test/login")
    def login() -> Any:
        body = request.get_json(force=True)
        subject = body["sub"]
        with STATE.lock:
            STATE.users[subject] = User(subject, body.get("name", subject), list(body.get("groups", [])))
        ttl = int(body.get("ttl", STATE.access_ttl))
        issued_at = time.time() + float(body.get("issued_offset", 0))
        args = (subject, body.get("client_id", "user-app"), body.get("scope", "openid profile"), body.get("aud"), ttl)
        if body.get("format") == "opaque":
            return jsonify(access_token=opaque_access_token(*args), expires_in=ttl)
        return jsonify(access_token=sign_access_token(*args, issued_at=issued_at), expires_in=ttl)

    @app.post("/test/rotate-keys")
    def rotate_keys() -> Any:
        body = request.get_json(silent=True) or {}
        key = STATE.new_key()
        if body.get("drop_old"):
            with STATE.lock:
                STATE.keys[:] = [key]
        return jsonify(kid=key.kid)

    @app.get("/test/counters")
    def counters() -> Any:
        with STATE.lock:
            return jsonify(dict(STATE.counters))

    @app.get("/test/clients")
    def clients() -> Any:
        with STATE.lock:
            return jsonify(sorted(STATE.registrations))


def _keystone_endpoints(app: Flask) -> None:
    """Keystone v3 federation, only what keystoneauth's v3oidcaccesstoken plugin uses."""

    def keystone_token(user: User, project: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
        now = time.time()
        body: dict[str, Any] = {
            "methods": ["token"] if project else ["openid"],
            "user": {
                "id": uuid.uuid5(uuid.NAMESPACE_URL, user.subject).hex,
                "name": user.name,
                "domain": {"id": "Federated", "name": "Federated"},
                "OS-FEDERATION": {"identity_provider": {"id": STATE.keystone_idp}, "protocol": {"id": "openid"}},
            },
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now)),
            "expires_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now + 3600)),
            "audit_ids": [uuid.uuid4().hex[:22]],
        }
        if project:
            body["project"] = project
            body["roles"] = [{"id": "r1", "name": "member"}]
            body["catalog"] = []
        value = uuid.uuid4().hex
        with STATE.lock:
            STATE.keystone_tokens[value] = {"user": user.subject, "body": body}
        return value, body

    @app.get("/v3")
    def version() -> Any:
        return jsonify(version={"id": "v3.14", "status": "stable", "links": [{"rel": "self", "href": request.url}]})

    @app.post("/v3/OS-FEDERATION/identity_providers/<idp>/protocols/<protocol>/auth")
    def federated_auth(idp: str, protocol: str) -> Any:
        header = request.headers.get("Authorization", "")
        token = active_access_token(header[7:]) if header.startswith("Bearer ") else None
        if idp != STATE.keystone_idp or protocol != "openid":
            return jsonify(error={"code": 404, "message": f"no identity provider {idp}/{protocol}"}), 404
        if token is None or token.subject not in STATE.users:
            return jsonify(error={"code": 401, "message": "The request you have made requires authentication."}), 401
        STATE.count("keystone_federated_auth")
        value, body = keystone_token(STATE.users[token.subject], None)
        return jsonify(token=body), 201, {"X-Subject-Token": value}

    @app.post("/v3/auth/tokens")
    def scoped_token() -> Any:
        auth = request.get_json(force=True)["auth"]
        presented = auth["identity"].get("token", {}).get("id") or request.headers.get("X-Auth-Token", "")
        with STATE.lock:
            known = STATE.keystone_tokens.get(presented)
        if known is None:
            return jsonify(error={"code": 401, "message": "The request you have made requires authentication."}), 401
        wanted = auth.get("scope", {}).get("project", {})
        project_id = wanted.get("id") or uuid.uuid5(uuid.NAMESPACE_URL, wanted.get("name", "none")).hex
        domain = {"id": "default", "name": "Default"}
        project = {"id": project_id, "name": wanted.get("name", "dodas"), "domain": domain}
        value, body = keystone_token(STATE.users[known["user"]], project)
        return jsonify(token=body), 201, {"X-Subject-Token": value}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--access-ttl", type=int, default=30)
    parser.add_argument("--no-rotate", action="store_true", help="keep refresh tokens across refreshes")
    parser.add_argument("--client", action="append", default=[], help="id:secret of a confidential client")
    parser.add_argument("--keystone-idp", default="dodas-iam")
    args = parser.parse_args(argv)
    STATE.issuer = f"http://{args.host}:{args.port}"
    STATE.access_ttl = args.access_ttl
    STATE.rotate_refresh = not args.no_rotate
    STATE.keystone_idp = args.keystone_idp
    STATE.new_key()
    STATE.clients["user-app"] = Client("user-app", secrets.token_urlsafe(16), ("refresh_token",))
    for spec in args.client:
        client_id, _, secret = spec.partition(":")
        STATE.clients[client_id] = Client(client_id, secret, EVERY_GRANT)
    httpd = make_server(args.host, args.port, create_app(), threaded=True)
    print(f"ready {STATE.issuer}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        httpd.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
