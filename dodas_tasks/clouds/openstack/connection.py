"""One OpenStack site = one Airflow connection; this turns it into an authenticated openstacksdk Connection.

The provider's `OpenstackHook` only knows password auth (and reads the user domain from the project domain key),
so `SiteHook` subclasses it and builds the keystoneauth plugin itself: password, application credential, or an
OIDC access token (keystone `v3oidcaccesstoken`) fetched from a caller-supplied `token_provider` at each
(re)authentication. Connection fields:

- host: the Keystone v3 URL (`https://keystone.example.org:5000/v3`); login / password: user name and password
  (password auth) or application credential id / secret (`auth_type: v3applicationcredential`).
- extra: `auth_type` (`password` default, `v3applicationcredential`, `v3oidcaccesstoken`), `region_name`,
  `project_id` / `project_name`, `project_domain_id` / `project_domain_name`, `user_domain_id` /
  `user_domain_name`, `identity_provider` + `protocol` (OIDC), `network` (default network, name or id),
  `floating_ip_pool` (external network for PUBLIC servers), `default_image`, `interface`, `verify`, `timeout`
  (seconds per HTTP call, default 60). The provider's `OS_REGION_NAME` / `OS_PROJECT_ID` keys are accepted too.
- For OIDC without a token provider, the connection's password field may hold a (short-lived) access token.
- `dodas_auth: owner`: the site acts as each deployment's owner (Keystone OS-FEDERATION with the owner's fresh
  OIDC access token; `identity_provider` + `protocol` required). With `project_id` / `project_name` every owner
  works in that project; without, in the one project Keystone's mapping gives the owner (`GET /v3/auth/projects`).
  `dodas_service_conn_id` may name a connection of the same site with service credentials (the leak collector
  lists with it what no delegated owner can). Default `dodas_auth: service`: the connection's own credentials.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache, TTLCache, cached
from keystoneauth1.identity import v3

from dodas_tasks.clouds.base import DEFAULT_CONCURRENCY, CloudError, OwnerIdentity, OwnerRequired, SiteAuth

MAX_POOL = 64  # HTTP connections kept per site; above any sensible dodas_max_concurrency
MAX_OWNER_HOOKS = 256  # (site, deployment) sessions a process keeps when sites act as the owners
SITE_AUTH_TTL_S = 30.0  # how long a process trusts what it read of a connection's dodas_auth

TokenProvider = Callable[[], str]
AUTH_TYPES = ("password", "v3applicationcredential", "v3oidcaccesstoken")
OWNER, SERVICE = "owner", "service"  # extra `dodas_auth`: how the site authenticates


@dataclass(frozen=True)
class SiteSettings:
    """What the driver needs from the connection besides credentials."""

    conn_id: str
    region: str | None
    network: str | None
    floating_ip_pool: str | None
    default_image: str | None
    max_concurrency: int = DEFAULT_CONCURRENCY


def _extra(extra: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if extra.get(key) not in (None, ""):
            return extra[key]
    return None


def acts_as_owner(conn: Any) -> bool:
    """The connection says the site authenticates as each deployment's owner (extra dodas_auth: owner)."""
    mode = (conn.extra_dejson or {}).get("dodas_auth", SERVICE)
    if mode not in (OWNER, SERVICE):
        raise CloudError(f"OpenStack connection {conn.conn_id!r}: dodas_auth {mode!r} is not {OWNER!r} or {SERVICE!r}")
    return mode == OWNER


def build_auth(conn: Any, token_provider: TokenProvider | None) -> Any:
    """The keystoneauth plugin for an Airflow connection; raises CloudError naming the missing field.

    On a site that acts as the owners, `token_provider` gives the owner's access tokens (required)."""
    extra = conn.extra_dejson
    where = f"OpenStack connection {conn.conn_id!r}"
    if acts_as_owner(conn):
        return _owner_auth(conn, token_provider, where)
    auth_type = extra.get("auth_type", "password")
    if auth_type not in AUTH_TYPES:
        raise CloudError(f"{where}: auth_type {auth_type!r} is not supported; use one of {', '.join(AUTH_TYPES)}")
    if not conn.host:
        raise CloudError(f"{where}: host must hold the Keystone v3 URL (e.g. https://keystone:5000/v3)")
    scope = {
        "project_id": _extra(extra, "project_id", "OS_PROJECT_ID"),
        "project_name": _extra(extra, "project_name", "OS_PROJECT_NAME"),
        "project_domain_id": _extra(extra, "project_domain_id", "OS_PROJECT_DOMAIN_ID"),
        "project_domain_name": _extra(extra, "project_domain_name", "OS_PROJECT_DOMAIN_NAME"),
    }
    if auth_type == "v3applicationcredential":
        if not conn.login or not conn.password:
            raise CloudError(f"{where}: login must hold the application credential id and password its secret")
        return v3.ApplicationCredential(
            auth_url=conn.host, application_credential_id=conn.login, application_credential_secret=conn.password
        )
    if auth_type == "v3oidcaccesstoken":
        idp, protocol = extra.get("identity_provider"), extra.get("protocol")
        if not idp or not protocol:
            raise CloudError(f"{where}: OIDC needs extra.identity_provider and extra.protocol (e.g. 'openid')")
        if token_provider is None and not conn.password:
            raise CloudError(f"{where}: OIDC needs an access token: pass token_provider= or put one in password")
        provider = token_provider or (lambda: conn.password)
        return ProvidedTokenOidc(
            provider, auth_url=conn.host, identity_provider=idp, protocol=protocol, **_scope_only(scope)
        )
    if not conn.login or not conn.password:
        raise CloudError(f"{where}: password auth needs login and password")
    return v3.Password(
        auth_url=conn.host,
        username=conn.login,
        password=conn.password,
        user_domain_id=_extra(extra, "user_domain_id", "OS_USER_DOMAIN_ID")
        or (None if extra.get("user_domain_name") else "default"),
        user_domain_name=extra.get("user_domain_name"),
        **_scope_only(scope),
    )


def _scope_only(scope: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scope.items() if v is not None}


def _owner_auth(conn: Any, token_provider: TokenProvider | None, where: str) -> Any:
    extra = conn.extra_dejson
    if extra.get("auth_type", "v3oidcaccesstoken") != "v3oidcaccesstoken":
        raise CloudError(f"{where}: dodas_auth owner authenticates with Keystone OIDC; remove auth_type")
    site = keystone_site(conn)
    if token_provider is None:
        raise OwnerRequired(
            f"{where} acts as each deployment's owner (Keystone OIDC, identity provider {site.identity_provider!r}): "
            "this deployment has no delegated owner (it was submitted without an IAM access token, or its "
            "delegation was revoked); the owner must submit or delegate with their IAM token"
        )
    return keystone_auth(site, token_provider)


@dataclass(frozen=True)
class KeystoneSite:
    """An OpenStack site federated with the IdP (names as configured in its Keystone)."""

    auth_url: str  # the identity v3 URL, e.g. https://keystone.example.org:5000/v3
    identity_provider: str  # Keystone's name for the IdP, e.g. "dodas-iam"
    protocol: str = "openid"  # "openid" or "oidc", as the site's mapping says
    project_id: str | None = None  # None (and no name): the one project Keystone's mapping gives the user
    project_name: str | None = None
    project_domain_name: str | None = "Default"  # needed with project_name (names are unique per domain)
    region_name: str | None = None


def keystone_site(conn: Any) -> KeystoneSite:
    """The federation settings of a connection (extra identity_provider, protocol, project_*, region_name)."""
    extra = conn.extra_dejson
    idp, protocol = extra.get("identity_provider"), extra.get("protocol")
    if not conn.host:
        raise CloudError(f"OpenStack connection {conn.conn_id!r}: host must hold the Keystone v3 URL")
    if not idp or not protocol:
        raise CloudError(
            f"OpenStack connection {conn.conn_id!r}: OIDC needs extra.identity_provider and extra.protocol "
            "(e.g. 'openid')"
        )
    return KeystoneSite(
        auth_url=conn.host,
        identity_provider=idp,
        protocol=protocol,
        project_id=_extra(extra, "project_id", "OS_PROJECT_ID"),
        project_name=_extra(extra, "project_name", "OS_PROJECT_NAME"),
        project_domain_name=_extra(extra, "project_domain_name", "OS_PROJECT_DOMAIN_NAME") or "Default",
        region_name=_extra(extra, "region_name", "OS_REGION_NAME"),
    )


def keystone_auth(site: KeystoneSite, tokens: TokenProvider) -> ProvidedTokenOidc:
    """Keystone `v3oidcaccesstoken` whose every (re)authentication takes a fresh access token from `tokens`."""
    scope: dict[str, Any] = {"project_id": site.project_id}
    if site.project_name and not site.project_id:
        scope.update(project_name=site.project_name, project_domain_name=site.project_domain_name)
    return ProvidedTokenOidc(
        tokens,
        auth_url=site.auth_url,
        identity_provider=site.identity_provider,
        protocol=site.protocol,
        **_scope_only(scope),
    )


def keystone_session(site: KeystoneSite, tokens: TokenProvider) -> Any:
    """A keystoneauth Session on keystone_auth; pass it to openstacksdk as ``Connection(session=...)``."""
    from keystoneauth1 import session as ks_session

    return ks_session.Session(auth=keystone_auth(site, tokens))


def keystone_oidc_auth(site: KeystoneSite, access_token: str) -> dict[str, Any]:
    """openstacksdk connection arguments for one access token: ``openstack.connect(**keystone_oidc_auth(...))``."""
    auth: dict[str, Any] = {
        "auth_url": site.auth_url,
        "identity_provider": site.identity_provider,
        "protocol": site.protocol,
        "access_token": access_token,
    }
    for name in ("project_id", "project_name", "project_domain_name"):
        if getattr(site, name):
            auth[name] = getattr(site, name)
    args: dict[str, Any] = {"auth_type": "v3oidcaccesstoken", "auth": auth}
    if site.region_name:
        args["region_name"] = site.region_name
    return args


def scope_to_own_project(sess: Any, auth: ProvidedTokenOidc, where: str) -> None:
    """Scope an unscoped federated login to the one project Keystone's mapping gives the user.

    The unscoped token lists the user's projects (`GET /v3/auth/projects`); the next request rescopes it."""
    if any((auth.project_id, auth.project_name)):
        return
    answer = sess.get(auth.auth_url.rstrip("/") + "/auth/projects", authenticated=True)
    projects = [p for p in answer.json().get("projects", []) if p.get("enabled", True)]
    if len(projects) != 1:
        names = ", ".join(sorted(p.get("name", p.get("id", "?")) for p in projects)) or "none"
        raise CloudError(
            f"{where}: Keystone maps this owner to {len(projects)} project(s) ({names}); "
            "name the project in the connection's extra (project_name or project_id)"
        )
    auth.project_id = projects[0]["id"]
    auth.auth_ref = None  # the unscoped token is kept: the next request rescopes it to the project


class ProvidedTokenOidc(v3.OidcAccessToken):
    """Keystone `v3oidcaccesstoken` whose access token comes fresh from the caller (the owner's token source,
    handed down as a callable) at every authentication."""

    def __init__(self, provider: TokenProvider, **kwargs: Any) -> None:
        super().__init__(access_token="pending", **kwargs)
        self.provider = provider

    def get_unscoped_auth_ref(self, session: Any) -> Any:
        self.access_token = self.provider()  # keystone token expired or first use: ask IAM for a current token
        return super().get_unscoped_auth_ref(session)


def _hook_class() -> type:
    from airflow.providers.openstack.hooks.openstack import OpenstackHook

    class SiteHook(OpenstackHook):
        """The provider's hook, with every Keystone auth mode, region, interface, TLS and timeout settings.

        On a site that acts as the owners, one hook per (connection, owner's delegation); `owner` is replaced by
        the newest one handed in, so re-authentications call a live token source."""

        def __init__(
            self, os_conn_id: str, token_provider: TokenProvider | None = None, owner: OwnerIdentity | None = None
        ) -> None:
            super().__init__(os_conn_id=os_conn_id)
            self.token_provider = token_provider
            self.owner = owner
            self._lock = threading.Lock()

        def _tokens(self) -> TokenProvider | None:
            if self.owner is not None:
                return lambda: self.owner.access_token()  # late: the newest owner callable
            return self.token_provider

        def get_conn(self) -> Any:
            with self._lock:
                return self._connect()

        def _connect(self) -> Any:
            if self.conn is None:
                import openstack
                from keystoneauth1 import session as ks_session

                params = airflow_connection(self, self.os_conn_id)
                extra = params.extra_dejson
                verify = extra.get("verify", True)
                auth = build_auth(params, self._tokens())
                sess = ks_session.Session(
                    auth=auth,
                    session=_pooled_http_session(),
                    verify=verify,
                    timeout=float(extra.get("timeout", 60)),
                )
                if acts_as_owner(params):
                    scope_to_own_project(sess, auth, f"OpenStack connection {self.os_conn_id!r}")
                self.conn = openstack.connection.Connection(
                    session=sess,
                    region_name=_extra(extra, "region_name", "OS_REGION_NAME"),
                    interface=extra.get("interface", "public"),
                )
                self.settings = SiteSettings(
                    conn_id=self.os_conn_id,
                    region=_extra(extra, "region_name", "OS_REGION_NAME"),
                    network=extra.get("network"),
                    floating_ip_pool=extra.get("floating_ip_pool"),
                    default_image=extra.get("default_image"),
                    max_concurrency=int(extra.get("dodas_max_concurrency") or DEFAULT_CONCURRENCY),
                )
            return self.conn

    return SiteHook


def _pooled_http_session() -> Any:
    """keystoneauth's default pool keeps 10 connections; parallel provisioning needs one per concurrent call.

    This is requests, not httpx (our HTTP library elsewhere): keystoneauth's Session is built on requests and
    takes only a requests.Session; openstacksdk makes every call through it."""
    import requests
    from requests.adapters import HTTPAdapter

    http = requests.Session()
    for scheme in ("https://", "http://"):
        http.mount(scheme, HTTPAdapter(pool_connections=4, pool_maxsize=MAX_POOL))
    return http


def airflow_connection(hook: Any, conn_id: str) -> Any:
    """The site's Airflow connection, or a CloudError saying how to define it."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return hook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise CloudError(
            f"Airflow connection {conn_id!r} is not defined: create it (conn_type openstack, host = Keystone v3 URL) "
            "or point DODAS_OPENSTACK_CONN_ID at the site's connection"
        ) from None


_lock = threading.Lock()
_hooks: dict[tuple[str, int], Any] = {}
_owner_hooks: LRUCache[tuple[str, str], Any] = LRUCache(maxsize=MAX_OWNER_HOOKS)


def site_hook(conn_id: str, token_provider: TokenProvider | None = None, owner: OwnerIdentity | None = None) -> Any:
    """A hook per (connection, token provider) per process, so repeated driver instances (one per poll) share
    one Keystone token and one HTTP connection pool instead of authenticating again; with an `owner`, one per
    (connection, the owner's delegation), kept for the MAX_OWNER_HOOKS most recently used."""
    with _lock:
        if owner is not None:
            hook = _owner_hooks.get((conn_id, owner.delegation))
            if hook is None:
                hook = _owner_hooks[(conn_id, owner.delegation)] = _hook_class()(conn_id, owner=owner)
            hook.owner = owner
            return hook
        key = (conn_id, id(token_provider))
        hook = _hooks.get(key)
        if hook is None:
            hook = _hooks[key] = _hook_class()(conn_id, token_provider)
        return hook


def _definition(conn_id: str) -> tuple[str, str | None]:
    """Cache key: a connection redefined in the environment is read again."""
    return conn_id, os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")


@cached(TTLCache(maxsize=64, ttl=SITE_AUTH_TTL_S), key=_definition, lock=threading.Lock())
def site_auth(conn_id: str) -> SiteAuth:
    """How the site of `conn_id` authenticates (see the module docstring); a missing connection reads as service
    credentials here (the driver says what is missing when it is used). Read at most every SITE_AUTH_TTL_S."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # not defined (AirflowNotFoundException) or unreadable: the driver reports it on use
        return SiteAuth()
    if not acts_as_owner(conn):
        return SiteAuth(description=f"OpenStack connection {conn_id!r} (service credentials)")
    site = keystone_site(conn)
    service = conn.extra_dejson.get("dodas_service_conn_id")
    return SiteAuth(
        acts_as_owner=True,
        description=f"OpenStack connection {conn_id!r} (each owner through Keystone OIDC, identity provider "
        f"{site.identity_provider!r})",
        service_options={"openstack_conn_id": service} if service else None,
    )


def forget_site(conn_id: str) -> None:
    """Drop cached hooks of a connection (after its credentials changed)."""
    with _lock:
        for key in [k for k in _hooks if k[0] == conn_id]:
            hook = _hooks.pop(key)
            if hook.conn is not None:
                hook.close_conn()
        for key in [k for k in _owner_hooks if k[0] == conn_id]:
            hook = _owner_hooks.pop(key)
            if hook.conn is not None:
                hook.close_conn()
