"""Container images of the Mesos stack, configurable, with the defaults chosen below.

Apache Mesos was retired to the Apache Attic in 2025; its last release line is 1.11. No one publishes
maintained Mesos builds any more, so the default is the project's own last build line, `mesos/mesos-centos`
(built by Apache's CI from the 1.11.x branch; one image holds both `mesos-master` and `mesos-agent`), rather
than INDIGO's `indigodatacloud/mesos-*:1.5.0` (2018). Marathon was archived by D2iQ in 2021; AVENTER UG keeps a
maintained fork published as `avhost/docker-marathon` (Marathon 1.30 on Mesos 1.11 libraries), the default
here. ZooKeeper uses the Docker official image (maintained, 3.9 line). marathon-lb and Chronos have no
maintained successor: the last Mesosphere releases are the defaults. Every image is a constructor argument,
so a site with its own builds (or INDIGO's images) sets them per deployment.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MesosImages:
    """Images and the commands that start Mesos inside them."""

    zookeeper: str = "zookeeper:3.9"
    mesos: str = "mesos/mesos-centos:1.11.x"
    mesos_master_command: str = "mesos-master"
    mesos_agent_command: str = "mesos-agent"
    marathon: str = "avhost/docker-marathon:1.30.0"
    chronos: str = "mesosphere/chronos:v3.0.2"
    marathon_lb: str = "mesosphere/marathon-lb:v1.15.0"
