"""Which framework deploys which TOSCA component type, and in which role: one table for the deployer.

A component type is looked up through its derivation chain, so a template's own subtype of a known type works.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from dodas_tasks.frameworks.base import Framework


@dataclass(frozen=True)
class Binding:
    """How a TOSCA component type is deployed: which framework, in which of its roles."""

    framework: str
    role: str


BINDINGS: dict[str, Binding] = {
    "tosca.nodes.indigo.dodas.SparkMaster": Binding("spark-standalone", "master"),
    "tosca.nodes.indigo.dodas.SparkWorker": Binding("spark-standalone", "worker"),
    # configure-Mesos
    "tosca.nodes.indigo.LRMS.FrontEnd.Mesos": Binding("mesos", "master"),
    "tosca.nodes.indigo.LRMS.WorkerNode.Mesos": Binding("mesos", "agent"),
    "tosca.nodes.indigo.MesosLoadBalancer": Binding("mesos", "lb"),
    # frameworks as Marathon apps (API roles deploy through a master; wn roles are scripts on agents)
    "tosca.nodes.indigo.HTCondorServices": Binding("htcondor-mesos", "services"),
    "tosca.nodes.indigo.CmsServices": Binding("cms-mesos", "services"),
    "tosca.nodes.indigo.CmsWnConfig": Binding("cms-mesos", "wn"),
    "tosca.nodes.indigo.AmsCondorMasterConfig": Binding("ams-mesos", "master"),
    "tosca.nodes.indigo.AmsCondorExecuteConfig": Binding("ams-mesos", "execute"),
    "tosca.nodes.indigo.AmsCondorWnConfig": Binding("ams-mesos", "wn"),
    "tosca.nodes.indigo.SparkMesos": Binding("spark-mesos", "services"),
    "tosca.nodes.indigo.Container.Application.Docker.Marathon": Binding("marathon-apps", "app"),
    "tosca.nodes.indigo.Container.Runtime.Docker": Binding("marathon-apps", "runtime"),
}

# framework name -> "module:Class" (imported on first use, so the deployer loads only what a plan needs)
FRAMEWORKS: dict[str, str] = {
    "spark-standalone": "dodas_tasks.frameworks.spark:SparkStandalone",
    "mesos": "dodas_tasks.clustermanagers.mesos:MesosCluster",
    "htcondor-mesos": "dodas_tasks.frameworks.htcondor:HTCondorOnMesos",
    "cms-mesos": "dodas_tasks.frameworks.cms:CmsOnMesos",
    "ams-mesos": "dodas_tasks.frameworks.ams:AmsOnMesos",
    "spark-mesos": "dodas_tasks.frameworks.spark_mesos:SparkOnMesos",
    "marathon-apps": "dodas_tasks.frameworks.marathon_apps:MarathonApps",
}


class ComponentNotDeployable(RuntimeError):
    """The plan holds a component whose type has no deployer in this version."""


def binding_for(type_chain: list[str], component: str = "") -> Binding:
    for type_name in type_chain:
        if type_name in BINDINGS:
            return BINDINGS[type_name]
    raise ComponentNotDeployable(
        f"component {component!r} ({type_chain[0] if type_chain else '?'}) has no deployer yet; "
        f"deployable types: {', '.join(sorted(BINDINGS))}"
    )


def framework(name: str) -> Framework:
    try:
        module, _, attr = FRAMEWORKS[name].partition(":")
    except KeyError:
        raise ComponentNotDeployable(f"no framework {name!r}; known: {', '.join(sorted(FRAMEWORKS))}") from None
    return getattr(import_module(module), attr)()
