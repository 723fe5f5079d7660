"""What every framework (Spark, HTCondor, Mesos/Marathon) gives the deployer and the autoscaler.

A framework only *produces* node scripts and *parses* what comes back; running a script on a node is the
caller's job (SSH configurator, or a local shell in tests), passed in as a `Runner`.
"""

from __future__ import annotations

import contextlib
import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dodas_tasks.frameworks.chronos import ChronosClient
    from dodas_tasks.frameworks.marathon import MarathonClient


@dataclass(frozen=True)
class Node:
    """One machine as a framework sees it; cpus and memory_mb come from the TOSCA host capability."""

    name: str
    ip: str
    cpus: int = 1
    memory_mb: int = 1024


@dataclass(frozen=True)
class Cluster:
    """The framework's nodes by role (e.g. master/worker); names are the deployment's node names."""

    roles: Mapping[str, tuple[Node, ...]]

    def nodes(self, role: str) -> tuple[Node, ...]:
        """All nodes of a role; none if the role is absent."""
        return tuple(self.roles.get(role, ()))

    def single(self, role: str) -> Node:
        """The one node of a role, or a clear error when there is none or several."""
        nodes = self.nodes(role)
        if len(nodes) != 1:
            raise ValueError(f"the cluster needs exactly one {role!r} node, it has {len(nodes)}")
        return nodes[0]

    def name_of(self, ip: str) -> str:
        """The node name behind an IP, or the IP itself for a node the cluster does not know."""
        for nodes in self.roles.values():
            for node in nodes:
                if node.ip == ip:
                    return node.name
        return ip


@dataclass(frozen=True)
class Script:
    """A shell script for one node: the environment it needs plus a POSIX-sh body (sent as exports + body).

    log_output: stream its output lines to the task log. API calls made through a node (Marathon's answers hold
    the apps' environment, e.g. an earlier run's IAM token no masker knows) return their output without logging it.
    """

    name: str
    env: Mapping[str, str]
    body: str
    log_output: bool = True

    def render(self) -> str:
        """`export K='v'` lines then the body, as one text for `sh -s`."""
        exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in self.env.items())
        return exports + self.body


@dataclass(frozen=True)
class ScriptResult:
    """What running a Script on a node gave back."""

    exit_status: int
    stdout: str
    stderr: str


WORKER_ROLES = frozenset({"worker", "slave", "agent", "wn"})  # roles the framework lists in Load.healthy_nodes

Runner = Callable[[Node, Script], ScriptResult]
"""Runs a script on a node and returns its result (SSH in production, a local shell in tests)."""

Reach = Callable[[Node, int], contextlib.AbstractContextManager[tuple[str, int]]]
"""reach(node, port) gives a (host, port) this process can connect to for `port` on the node: the node's own
address, or a local port forwarded through the SSH jump hosts when the node has a private address only."""


@contextlib.contextmanager
def direct(node: Node, port: int) -> Iterator[tuple[str, int]]:
    """The Reach of nodes this process reaches at their address."""
    yield node.ip, port


class SiteServices(Protocol):
    """A site's shared services, where a template's apps and jobs hosted on no VM of the deployment go (as the
    INDIGO orchestrator sent them to the site's Marathon and Chronos). Handed in like the Runner: the caller knows
    where the services are (the Airflow layer, from Airflow connections); a framework only names the connection."""

    def marathon(self, conn_id: str, *, poll_seconds: float) -> MarathonClient:
        """The site's Marathon behind connection `conn_id`."""
        ...

    def chronos(self, conn_id: str) -> ChronosClient:
        """The site's Chronos behind connection `conn_id`."""
        ...


@dataclass(frozen=True)
class Load:
    """A framework's load, the same for every framework, so one autoscaler serves them all.

    pending_demand: units of work wanted but not granted (Spark: cores; HTCondor: idle jobs' CPUs;
      Marathon: instances' CPUs still to place). 0 means adding a node would not help.
    waiting_apps: applications/jobs waiting for resources.
    idle_nodes / busy_nodes: healthy worker nodes running nothing / something (candidates to remove are idle).
    healthy_nodes: worker nodes the framework currently accepts work on; a provisioned worker missing here
      is unhealthy (not registered, lost, or draining).
    """

    pending_demand: int = 0
    waiting_apps: int = 0
    idle_nodes: list[str] = field(default_factory=list)
    busy_nodes: list[str] = field(default_factory=list)
    healthy_nodes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Verified:
    """A passed end-to-end check: a one-line summary and numbers worth recording (durations, results)."""

    summary: str
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DeployContext:
    """What an API-driven framework (Marathon apps) needs to deploy one component from the worker.

    properties: the component's TOSCA properties, resolved (IPs filled in, secrets in clear: never log them).
    peers: the clusters of the deployment's other frameworks by name (e.g. "mesos": masters, agents, lb).
    artifacts: the component's artifacts (e.g. its Docker image), resolved.
    host: the capabilities of the component it is hosted on (e.g. a Container.Runtime.Docker's `host`, `scalable`).
    requirements: the nodes each of its requirements names, by requirement (e.g. {"parent_job": ("fetch",)}).
    """

    component: str
    role: str
    properties: Mapping[str, Any]
    cluster: Cluster
    run: Runner
    peers: Mapping[str, Cluster] = field(default_factory=dict)
    log: Callable[[str], None] = print
    deployment_id: str = ""
    artifacts: Mapping[str, Any] = field(default_factory=dict)
    host: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    requirements: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class VerificationFailed(RuntimeError):
    """The end-to-end check failed; the message says why (and where to look)."""


class Framework(ABC):
    """A cluster framework: scripts to install, configure and stop it per role, a check, outputs, its load."""

    name: str
    roles: tuple[str, ...]

    @abstractmethod
    def install_script(self, node: Node) -> Script:
        """Makes the framework's software available on a node (idempotent)."""

    @abstractmethod
    def configure_script(self, role: str, node: Node, cluster: Cluster) -> Script:
        """Configures and starts the role on the node; idempotent, waits until the role is ready."""

    @abstractmethod
    def stop_script(self, role: str, node: Node, cluster: Cluster, *, drain: bool = True) -> Script:
        """Stops the role on the node (at undeploy or scale-in), draining work first when drain is set."""

    @abstractmethod
    def verify(self, cluster: Cluster, run: Runner) -> Verified:
        """Runs a real job end to end; raises VerificationFailed saying why."""

    @abstractmethod
    def outputs(self, cluster: Cluster) -> dict[str, str]:
        """Endpoints the user gets (URLs of masters, web UIs)."""

    @abstractmethod
    def load(self, cluster: Cluster) -> Load:
        """The current load, read from the framework's own API."""

    def membership_check(self, cluster: Cluster) -> Verified | None:
        """A cheap check for runs that changed only which workers there are (scale, a replaced worker): the
        framework counts every worker. None when the framework has none, so its full verify runs instead."""
        return None

    def deploy(self, context: DeployContext) -> list[str]:
        """API-driven deploy step, run in the worker after the role's node scripts; returns what it changed.

        Frameworks whose work is all in node scripts keep this no-op default.
        """
        return []

    def release(self) -> list[str]:
        """At undeploy, after the VMs are gone: removes what the framework put outside them (apps on a site's
        Marathon); returns what it removed. Frameworks living on the deployment's VMs keep this no-op default."""
        return []

    def check_role(self, role: str) -> None:
        """A clear error for a role this framework does not have."""
        if role not in self.roles:
            raise ValueError(f"{self.name} has no role {role!r}; its roles are: {', '.join(self.roles)}")


class NoNodeScripts(Framework):
    """A framework with nothing to run on its nodes (its work is API calls, or nothing); no outputs, no load."""

    def install_script(self, node: Node) -> Script:
        return Script(f"{self.name}-install", {}, "true\n")

    def configure_script(self, role: str, node: Node, cluster: Cluster) -> Script:
        self.check_role(role)
        return Script(f"{self.name}-configure", {}, "true\n")

    def stop_script(self, role: str, node: Node, cluster: Cluster, *, drain: bool = True) -> Script:
        return Script(f"{self.name}-stop", {}, "true\n")

    def outputs(self, cluster: Cluster) -> dict[str, str]:
        return {}

    def load(self, cluster: Cluster) -> Load:
        return Load()
