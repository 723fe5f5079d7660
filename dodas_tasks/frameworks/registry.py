"""Which framework deploys which TOSCA component type, and in which role: one table for the deployer.

A component type is looked up through its derivation chain, so a template's own subtype of a known type works.
Site settings of a framework (container runtime, API ports, images, timeouts) come from the deployment's submit
options, so a site that runs podman or whose Marathon listens elsewhere needs no code change.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import Any

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
    "tosca.nodes.indigo.Container.Application.Docker.Chronos": Binding("chronos-jobs", "job"),
    "tosca.nodes.indigo.Container.Runtime.Docker": Binding("container-runtime", "runtime"),
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
    "chronos-jobs": "dodas_tasks.frameworks.chronos:ChronosJobs",
    "container-runtime": "dodas_tasks.frameworks.runtime:ContainerRuntime",
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


def framework_class(name: str) -> type[Framework]:
    """The class behind a framework name, imported on first use (a plan loads only the frameworks it needs)."""
    try:
        module, _, attr = FRAMEWORKS[name].partition(":")
    except KeyError:
        raise ComponentNotDeployable(f"no framework {name!r}; known: {', '.join(sorted(FRAMEWORKS))}") from None
    return getattr(import_module(module), attr)


def framework(name: str, settings: Mapping[str, Any] | None = None) -> Framework:
    """The framework `name`, built with its site settings (see `framework_settings`)."""
    return framework_class(name)(**dict(settings or {}))


@functools.cache  # asked on every poll of every watched deployment
def needs_runner(name: str) -> bool:
    """The framework reads its load through commands on a node (`runner=`), not only through an HTTP API."""
    return "runner" in inspect.signature(framework_class(name)).parameters


@functools.cache
def needs_reach(name: str) -> bool:
    """The framework opens a network API on a node (`reach=`), through the deployment's SSH route to it."""
    return "reach" in inspect.signature(framework_class(name)).parameters


@functools.cache
def needs_deployment_id(name: str) -> bool:
    """The framework names what it puts outside the deployment's VMs after it (`deployment_id=`)."""
    return "deployment_id" in inspect.signature(framework_class(name)).parameters


@functools.cache
def needs_auth_secret(name: str) -> bool:
    """The framework authenticates its members with a secret of the deployment's own (`auth_secret=`)."""
    return "auth_secret" in inspect.signature(framework_class(name)).parameters


@functools.cache
def needs_site_services(name: str) -> bool:
    """The framework puts what the template hosts on no VM onto the site's services (`site_services=`)."""
    return "site_services" in inspect.signature(framework_class(name)).parameters


_SIMPLE = (str, int, float, bool)


def settable(name: str) -> dict[str, Any]:
    """Settings a deployment may give framework `name`: its keyword parameters with a plain default
    (str/int/float/bool; e.g. runtime, ports, timeouts), plus those it lists in `mapping_settings` (e.g. images)."""
    cls = framework_class(name)
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):  # parameters passed on through **kwargs live on the base classes
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.kind is param.KEYWORD_ONLY and isinstance(param.default, _SIMPLE):
                float_typed = param.annotation in (float, "float") and not isinstance(param.default, bool)
                found[param.name] = float(param.default) if float_typed else param.default  # timeout: float = 900
    for key in getattr(cls, "mapping_settings", ()):
        found[key] = {}
    return found


def framework_settings(options: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """Settings for framework `name` from a deployment's submit options.

    `container_runtime` (e.g. "podman", or a path) goes to every framework that runs containers from its node
    scripts; `frameworks: {<name>: {<setting>: value}}` sets one framework (e.g. {"mesos": {"marathon_https_port":
    9443}}) and wins over `container_runtime`. Submission refuses unknown names and settings (check_options).
    """
    options = options or {}
    known = settable(name)
    settings: dict[str, Any] = {}
    if options.get("container_runtime") and "runtime" in known:
        settings["runtime"] = str(options["container_runtime"])
    settings.update((options.get("frameworks") or {}).get(name) or {})
    return settings


def check_options(options: Mapping[str, Any] | None) -> list[str]:
    """What is wrong with a submission's framework options (empty when nothing): unknown frameworks or
    settings, wrong value types; each message names the setting and what is accepted."""
    options = options or {}
    problems: list[str] = []
    runtime = options.get("container_runtime")
    if runtime is not None and (not isinstance(runtime, str) or not runtime.strip()):
        problems.append(f"container_runtime must be a command name or path, got {runtime!r}")
    per_framework = options.get("frameworks") or {}
    if not isinstance(per_framework, Mapping):
        return [*problems, 'frameworks must be an object such as {"mesos": {"marathon_https_port": 9443}}']
    for name, settings in per_framework.items():
        if name not in FRAMEWORKS:
            problems.append(f"frameworks.{name}: no such framework; known: {', '.join(sorted(FRAMEWORKS))}")
            continue
        known = settable(name)
        if not isinstance(settings, Mapping):
            problems.append(f"frameworks.{name} must be an object of settings ({', '.join(sorted(known))})")
            continue
        before = len(problems)
        for key, value in settings.items():
            if key not in known:
                problems.append(f"frameworks.{name}.{key}: unknown setting; settable: {', '.join(sorted(known))}")
            elif not _same_kind(known[key], value):
                problems.append(
                    f"frameworks.{name}.{key} = {value!r}: expected {type(known[key]).__name__} "
                    f"(default {known[key]!r})"
                )
        if len(problems) == before:
            try:  # what the framework itself refuses (e.g. an unknown image name inside `images`)
                framework(name, settings)
            except (TypeError, ValueError) as exc:
                problems.append(f"frameworks.{name}: {exc}")
    return problems


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, dict):
        return isinstance(value, Mapping)
    return isinstance(value, type(default))
