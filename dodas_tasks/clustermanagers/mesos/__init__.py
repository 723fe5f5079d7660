"""Mesos as DODAS ran it: ZooKeeper, Mesos masters with quorum, Marathon, Chronos, agents, marathon-lb."""

from dodas_tasks.clustermanagers.mesos.framework import MesosCluster, agent_attributes, quorum, script_body
from dodas_tasks.clustermanagers.mesos.images import MesosImages
from dodas_tasks.clustermanagers.mesos.state import active_agents, agent_problems, load_from_state

__all__ = [
    "MesosCluster",
    "MesosImages",
    "active_agents",
    "agent_attributes",
    "agent_problems",
    "load_from_state",
    "quorum",
    "script_body",
]
