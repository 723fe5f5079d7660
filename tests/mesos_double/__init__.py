"""HTTP doubles of a Mesos 1.x master and Marathon v2 (no reachable build of the retired projects exists).

They follow the documented endpoints: Mesos /master/slaves and /master/state; Marathon /ping, /v2/info,
/v2/apps (PUT/GET, embed=app.tasks), /v2/deployments, /v2/queue. Behaviour a test needs is set on the state:
slow deployments (a deployment ends after N polls of /v2/deployments), unhealthy apps, lost agents, apps that
cannot be placed (constraints matched against agent hostnames).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ClusterDouble", "ClusterState"]


def __getattr__(name: str) -> Any:
    """Imported on first use: the recorder (`fake_docker`) runs for every docker call and needs none of it."""
    if name in __all__:
        from mesos_double import server

        return getattr(server, name)
    raise AttributeError(name)
