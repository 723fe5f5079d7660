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
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keystoneauth1.identity import v3

from dodas_tasks.clouds.base import DEFAULT_CONCURRENCY, CloudError

MAX_POOL = 64  # HTTP connections kept per site; above any sensible dodas_max_concurrency

TokenProvider = Callable[[], str]
AUTH_TYPES = ("password", "v3applicationcredential", "v3oidcaccesstoken")


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


def build_auth(conn: Any, token_provider: TokenProvider | None) -> Any:
    """The keystoneauth plugin for an Airflow connection; raises CloudError naming the missing field."""
    extra = conn.extra_dejson
    auth_type = extra.get("auth_type", "password")
    where = f"OpenStack connection {conn.conn_id!r}"
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


class ProvidedTokenOidc(v3.OidcAccessToken):
    """Keystone `v3oidcaccesstoken` whose access token comes fresh from the IAM layer at every authentication."""

    def __init__(self, provider: TokenProvider, **kwargs: Any) -> None:
        super().__init__(access_token="pending", **kwargs)
        self.provider = provider

    def get_unscoped_auth_ref(self, session: Any) -> Any:
        self.access_token = self.provider()  # keystone token expired or first use: ask IAM for a current token
        return super().get_unscoped_auth_ref(session)


def _hook_class() -> type:
    from airflow.providers.openstack.hooks.openstack import OpenstackHook

    class SiteHook(OpenstackHook):
        """The provider's hook, with every Keystone auth mode, region, interface, TLS and timeout settings."""

        def __init__(self, os_conn_id: str, token_provider: TokenProvider | None = None) -> None:
            super().__init__(os_conn_id=os_conn_id)
            self.token_provider = token_provider
            self._lock = threading.Lock()

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
                sess = ks_session.Session(
                    auth=build_auth(params, self.token_provider),
                    session=_pooled_http_session(),
                    verify=verify,
                    timeout=float(extra.get("timeout", 60)),
                )
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


def site_hook(conn_id: str, token_provider: TokenProvider | None = None) -> Any:
    """A hook per (connection, token provider) per process, so repeated driver instances (one per poll) share
    one Keystone token and one HTTP connection pool instead of authenticating again."""
    key = (conn_id, id(token_provider))
    with _lock:
        hook = _hooks.get(key)
        if hook is None:
            hook = _hooks[key] = _hook_class()(conn_id, token_provider)
        return hook


def forget_site(conn_id: str) -> None:
    """Drop cached hooks of a connection (after its credentials changed)."""
    with _lock:
        for key in [k for k in _hooks if k[0] == conn_id]:
            hook = _hooks.pop(key)
            if hook.conn is not None:
                hook.close_conn()
