"""A Container.Runtime.Docker node: where container apps and jobs run (a site's Mesos, or this deployment's own).

It has nothing to install or check of its own; its `host` capability sizes the apps and jobs hosted on it.
"""

from __future__ import annotations

from dodas_tasks.frameworks.base import Cluster, NoNodeScripts, Runner, Verified


class ContainerRuntime(NoNodeScripts):
    name = "container-runtime"
    roles = ("runtime",)

    def verify(self, cluster: Cluster, run: Runner) -> Verified:
        return Verified("nothing of its own to check (its apps and jobs are checked by their frameworks)")
