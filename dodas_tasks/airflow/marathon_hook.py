"""Airflow hook for a site's Marathon: where generic container apps go when the template brings no Mesos cluster.

The INDIGO orchestrator posted indigo_marathon_app templates to the Marathon of the chosen site (from its CMDB);
here the site is the connection ``dodas_marathon`` (conn_type http): host = Marathon URL (scheme included, or the
scheme in ``schema``), login/password = its HTTP credentials, extra = {"verify": false | "/path/to/ca.pem"}.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

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
        return MarathonClient(
            transport_from_connection(self.get_connection(self.marathon_conn_id)), poll_seconds=self.poll_seconds
        )


def transport_from_connection(conn: Any) -> HttpTransport:
    """HttpTransport from a connection (see the module docstring); the password is registered for masking."""
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise ValueError(
            f"connection {conn.conn_id!r}: host must be the site's Marathon URL, e.g. https://marathon:8443"
        )
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}" + (f":{conn.port}" if conn.port else "")
    if conn.password:
        mask_secret(conn.password)
    auth = (conn.login, conn.password or "") if conn.login else None
    return HttpTransport(host, auth=auth, verify=(conn.extra_dejson or {}).get("verify", True))
