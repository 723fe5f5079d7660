"""HTTP doubles of a Mesos 1.x master and Marathon v2 (no reachable build of the retired projects exists).

They follow the documented endpoints: Mesos /master/slaves and /master/state; Marathon /ping, /v2/info,
/v2/apps (PUT/GET, embed=app.tasks), /v2/deployments, /v2/queue. Behaviour a test needs is set on the state:
slow deployments (a deployment ends after N polls of /v2/deployments), unhealthy apps, lost agents, apps that
cannot be placed (constraints matched against agent hostnames).
"""

from mesos_double.server import ClusterDouble, ClusterState

__all__ = ["ClusterDouble", "ClusterState"]
