"""An HTTP double of the OpenStack APIs the DODAS driver uses (Keystone v3, Nova, Glance, Neutron, Cinder), so that
unmodified openstacksdk runs against it: realistic asynchronous states and injectable faults.

    with OpenStackDouble() as cloud:        # listens on 127.0.0.1:<free port>
        cloud.connection_json("password")   # an Airflow connection (AIRFLOW_CONN_<ID>) for the driver
        cloud.faults.error_rate = 0.2       # 20 % of service calls answer 500/503/429
        cloud.behaviour.build_seconds = 2   # BUILD for 2 s, then ACTIVE
        cloud.quotas.instances = 3          # Nova's quota message past 3 servers

One project by default (`cloud.cloud`); federated users get projects of their own (identity.py), each with its own
servers, networks and key pairs (`cloud.project("alice")`). A request acts on the project of its token.
"""

from __future__ import annotations

import json
import random
import threading
from typing import Any

from .compute import Compute
from .http import DoubleServer, Faults, Request, Router
from .identity import PROJECT_NAME, REGION, Credentials, Identity, ServiceCall
from .network import Network
from .state import IMAGES, PROJECT_ID, Behaviour, Cloud, Quotas
from .storage import Images, Volumes

__all__ = ["IMAGES", "PROJECT_ID", "Behaviour", "Credentials", "Faults", "OpenStackDouble", "Quotas", "ServiceCall"]


class _RequestProject:
    """Stands for the Cloud of the project the current request's token is scoped to (services hold one of these)."""

    def __init__(self, clouds: dict[str, Cloud], default: str) -> None:
        self._clouds, self._default, self._current = clouds, default, threading.local()

    def use(self, project_id: str) -> None:
        self._current.project = project_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clouds[getattr(self._current, "project", self._default)], name)


class OpenStackDouble:
    """One project on one fake OpenStack site, served over HTTP on loopback by a thread."""

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        faults: Faults | None = None,
        quotas: Quotas | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.behaviour = behaviour or Behaviour()
        self.faults = faults or Faults()
        self.quotas = quotas or Quotas()
        self.credentials = credentials or Credentials()
        self.cloud = Cloud(self.behaviour, self.quotas)
        self.clouds = {PROJECT_ID: self.cloud}  # by project id
        self.lock = threading.RLock()
        router = Router()
        self.server = DoubleServer(router, self.faults, self.lock, self._tick)
        url = lambda: self.server.url  # noqa: E731
        self.identity = Identity(url, self.credentials, self._new_project)
        self._request_project = _RequestProject(self.clouds, PROJECT_ID)
        current: Any = self._request_project
        for service in (
            self.identity,
            Compute(current, url, random.Random(self.faults.seed)),
            Network(current, url),
            Images(current, url),
            Volumes(current, url),
        ):
            service.register(router)
        self.server.authorize = self._authorize

    def _authorize(self, op: str, request: Request) -> None:
        if op.startswith("identity.") or op.endswith((".versions", ".version")):
            return
        self._request_project.use(self.identity.check(request, op))

    def _new_project(self, project_id: str) -> None:
        self.clouds[project_id] = Cloud(self.behaviour, Quotas())

    def _tick(self) -> None:
        for cloud in list(self.clouds.values()):
            cloud.tick()

    def project(self, name: str) -> Cloud:
        """The resources of the project called `name` (a federated user's, created at their first login)."""
        ids = [i for i, n in self.identity.projects.items() if n == name]
        if not ids:
            raise KeyError(f"no project {name!r}; projects: {sorted(self.identity.projects.values())}")
        return self.clouds[ids[0]]

    # -- life ----------------------------------------------------------------------------------------------------

    def start(self) -> OpenStackDouble:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> OpenStackDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def auth_url(self) -> str:
        return f"{self.url}/identity/v3"

    # -- what a driver needs ---------------------------------------------------------------------------------------

    def connection(self, auth: str = "password", **extra: Any) -> dict[str, Any]:
        """An Airflow connection (as a dict) for this site: auth is password, appcred or oidc."""
        creds = self.credentials
        base = {"region_name": REGION, "network": "private", "floating_ip_pool": "public", **extra}
        if auth == "password":
            conn = {"login": creds.username, "password": creds.password}
            base.update(project_name=PROJECT_NAME, project_domain_id="default", user_domain_id="default")
        elif auth == "appcred":
            conn = {"login": creds.app_cred_id, "password": creds.app_cred_secret}
            base.update(auth_type="v3applicationcredential")
        elif auth == "oidc":
            conn = {}
            base.update(
                auth_type="v3oidcaccesstoken",
                identity_provider=creds.identity_provider,
                protocol=creds.protocol,
                project_id=PROJECT_ID,
            )
        else:
            raise ValueError(f"auth {auth!r}: use password, appcred or oidc")
        return {"conn_type": "openstack", "host": self.auth_url, **conn, "extra": base}

    def connection_json(self, auth: str = "password", **extra: Any) -> str:
        return json.dumps(self.connection(auth, **extra))

    # -- what tests look at ------------------------------------------------------------------------------------------

    def calls(self, prefix: str = "") -> int:
        return sum(n for op, n in self.server.calls.items() if op.startswith(prefix))

    def reset_calls(self) -> None:
        self.server.calls.clear()
        self.server.log.clear()

    def inventory(self) -> dict[str, int]:
        """How many of each DODAS-relevant resource exist (the default security group is not counted)."""
        with self.lock:
            self.cloud.tick()
            cloud = self.cloud
            return {
                "servers": len(cloud.servers),
                "ports": len(cloud.ports),
                "floating_ips": len(cloud.floating_ips),
                "volumes": len(cloud.volumes),
                "security_groups": sum(1 for g in cloud.security_groups if g != cloud.default_sg),
                "key_pairs": len(cloud.keypairs),
            }
