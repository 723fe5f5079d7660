"""Airflow hooks for a site's Marathon and Chronos: where generic container apps and jobs go when the template
brings no Mesos cluster of its own.

The INDIGO orchestrator posted indigo_marathon_app/Chronos templates to the services of the chosen site (from its
CMDB); here each service is a connection, ``dodas_marathon`` and ``dodas_chronos`` (conn_type http): host = the
service URL (scheme included, or the scheme in ``schema``), login/password = its HTTP credentials,
extra = {"verify": false | "/path/to/ca.pem"}.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret

from dodas_tasks.frameworks.chronos import ChronosClient
from dodas_tasks.frameworks.marathon import HttpTransport, MarathonClient


class MarathonHook(BaseHook):
    """A Marathon v2 endpoint as an Airflow connection; get_conn() gives the MarathonClient."""

    conn_name_attr = "marathon_conn_id"
    default_conn_name = "dodas_marathon"
    conn_type = "http"
    hook_name = "DODAS site Marathon"

    def __init__(self, marathon_conn_id: str = default_conn_name, poll_seconds: float = 5.0) -> None:
        super().__init__()
        self.marathon_conn_id = marathon_conn_id
        self.poll_seconds = poll_seconds

    def get_conn(self) -> MarathonClient:
        return MarathonClient(site_transport(self.marathon_conn_id, "Marathon"), poll_seconds=self.poll_seconds)


class ChronosHook(BaseHook):
    """A Chronos endpoint as an Airflow connection; get_conn() gives the ChronosClient."""

    conn_name_attr = "chronos_conn_id"
    default_conn_name = "dodas_chronos"
    conn_type = "http"
    hook_name = "DODAS site Chronos"

    def __init__(self, chronos_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.chronos_conn_id = chronos_conn_id

    def get_conn(self) -> ChronosClient:
        return ChronosClient(site_transport(self.chronos_conn_id, "Chronos"))


class AirflowSiteServices:
    """The site's services from Airflow connections: what the deployment operators hand the frameworks."""

    def marathon(self, conn_id: str, *, poll_seconds: float) -> MarathonClient:
        return MarathonHook(conn_id, poll_seconds=poll_seconds).get_conn()

    def chronos(self, conn_id: str) -> ChronosClient:
        return ChronosHook(conn_id).get_conn()


def site_transport(conn_id: str, service: str) -> HttpTransport:
    """The transport to a site's service, or an error saying which connection to define."""
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise ValueError(
            f"the template's {service} workloads are hosted on no VM of the deployment, so they go to the site's "
            f"{service}: define the Airflow connection {conn_id!r} (conn_type http, host = its URL, login/password), "
            f"or name another with the submit option frameworks.<framework>.{service.lower()}_conn_id"
        ) from None
    return transport_from_connection(conn)


def transport_from_connection(conn: Any) -> HttpTransport:
    """HttpTransport from a connection (see the module docstring); the password is registered for masking."""
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise ValueError(
            f"connection {conn.conn_id!r}: host must be the service's URL, e.g. https://marathon.example.org:8443"
        )
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}" + (f":{conn.port}" if conn.port else "")
    if conn.password:
        mask_secret(conn.password)
    auth = (conn.login, conn.password or "") if conn.login else None
    return HttpTransport(host, auth=auth, verify=(conn.extra_dejson or {}).get("verify", True))
