"""A Container.Runtime.Docker node: where container apps and jobs run (a site's Mesos, or this deployment's own).

It has nothing to install or check of its own; its `host` capability sizes the apps and jobs hosted on it.
"""

from __future__ import annotations

from dodas_tasks.frameworks.base import Cluster, Framework, Load, Node, Runner, Script, Verified


class ContainerRuntime(Framework):
    name = "container-runtime"
    roles = ("runtime",)

    def install_script(self, node: Node) -> Script:
        return Script("runtime-install", {}, "true\n")

    def configure_script(self, role: str, node: Node, cluster: Cluster) -> Script:
        self.check_role(role)
        return Script("runtime-configure", {}, "true\n")

    def stop_script(self, role: str, node: Node, cluster: Cluster, *, drain: bool = True) -> Script:
        return Script("runtime-stop", {}, "true\n")

    def verify(self, cluster: Cluster, run: Runner) -> Verified:
        return Verified("nothing of its own to check (its apps and jobs are checked by their frameworks)")

    def outputs(self, cluster: Cluster) -> dict[str, str]:
        return {}

    def load(self, cluster: Cluster) -> Load:
        return Load()
