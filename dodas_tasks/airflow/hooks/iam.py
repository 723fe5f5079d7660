"""Airflow hook for the IdP: reads the ``dodas_iam`` connection and holds the process-wide IAM client.

Connection (conn_type http): host = issuer URL (scheme included, or put the scheme in ``schema``), login = client
id, password = client secret, extra = {"scopes": "openid profile offline_access", "audience": "...",
"group_claim": "groups" | "wlcg.groups"}.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from dodas_tasks.iam import IamClient, IamConfig, TokenSource, shared_client
from dodas_tasks.iam.config import DEFAULT_DELEGATION_SCOPES
from dodas_tasks.store import DeploymentRecord, Store


class IamHook(BaseHook):
    """The OpenID Connect provider (INDIGO IAM) as an Airflow connection."""

    conn_name_attr = "iam_conn_id"
    default_conn_name = "dodas_iam"
    conn_type = "http"
    hook_name = "DODAS IAM (OpenID Connect)"

    def __init__(self, iam_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.iam_conn_id = iam_conn_id

    @cached_property
    def client(self) -> IamClient:
        """The IAM client for this connection (shared by the process: discovery and JWKS fetched once)."""
        return shared_client(config_from_connection(self.get_connection(self.iam_conn_id)))

    def get_conn(self) -> IamClient:
        return self.client

    def token_source(self, store: Store, deployment_id: str) -> TokenSource:
        """Fresh access tokens on behalf of the deployment's owner."""
        return TokenSource(store, deployment_id, self.client)

    def test_connection(self) -> tuple[bool, str]:
        """Discovery + JWKS + client credentials: proves the URL, the keys and the client secret."""
        try:
            self.client.jwks()
            self.client.client_credentials(scope="openid")
        except Exception as exc:
            return False, str(exc)
        return True, f"IdP {self.client.config.issuer} answered and accepted client {self.client.config.client_id}"


def owner_access_tokens(store: Store, deployment_id: str) -> Callable[[], str]:
    """The deployment owner's fresh access tokens for the cloud drivers; the IdP's connection is read only when a
    driver asks (sites that act as the owner), so service-credential sites never need it."""

    def access_token() -> str:
        return IamHook().token_source(store, deployment_id).access_token()

    return access_token


def owner_tokens_for(store: Store) -> Callable[[DeploymentRecord], Callable[[], str] | None]:
    """For passes over many deployments (healing, leak collection): each delegated deployment's owner tokens."""

    def tokens_for(dep: DeploymentRecord) -> Callable[[], str] | None:
        return owner_access_tokens(store, dep.id) if dep.has_refresh_token else None

    return tokens_for


def config_from_connection(conn: Any) -> IamConfig:
    """IamConfig from an Airflow connection (see the module docstring); the secret is registered for masking."""
    extra = conn.extra_dejson or {}
    host = (conn.host or "").strip()
    if not host:
        raise ValueError(
            f"connection {conn.conn_id!r}: host must be the IdP's issuer URL, e.g. https://iam.example.org/"
        )
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}" + (f":{conn.port}" if conn.port else "")
    if conn.password:
        mask_secret(conn.password)
    scopes = extra.get("scopes") or DEFAULT_DELEGATION_SCOPES
    if isinstance(scopes, str):
        scopes = scopes.replace(",", " ").split()
    return IamConfig(
        issuer=host,
        client_id=conn.login or "",
        client_secret=conn.password or "",
        scopes=tuple(scopes),
        audience=extra.get("audience") or None,
        group_claim=extra.get("group_claim") or "groups",
        leeway_s=int(extra.get("leeway_s", 30)),
        timeout_s=float(extra.get("timeout_s", 10)),
    )
