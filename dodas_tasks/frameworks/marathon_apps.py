"""Frameworks that run as Marathon apps (HTCondor, CMS, AMS, Spark dispatcher, generic container apps).

`MarathonFramework` is their shared shape: deploy() builds app definitions from the component's resolved
properties and PUTs them through a master node (curl over SSH, credentials kept on the node); verify() checks
every app runs and is healthy, naming the app and the reason when not. `marathon_app()` maps an
indigo `Container.Application.Docker.Marathon` node to an app as the INDIGO orchestrator's Marathon provider did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dodas_tasks.frameworks.base import (
    Cluster,
    DeployContext,
    Framework,
    Load,
    Node,
    Runner,
    Script,
    SiteServices,
    VerificationFailed,
    Verified,
)
from dodas_tasks.frameworks.marathon import (
    MarathonClient,
    MarathonError,
    NodeCurlTransport,
    app_state,
    describe_states,
)
from dodas_tasks.naming import marathon_app_id, marathon_group, marathon_volume_name
from dodas_tasks.tosca.units import size_to_mib

STATE_DIR = "$HOME/.dodas/mesos"
# DODAS's health-check timings (section c of the reference): restart after 3 failures a minute apart
HEALTH = {"gracePeriodSeconds": 300, "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3}


def command_check(command: str) -> dict[str, Any]:
    return {"protocol": "COMMAND", "command": {"value": command}, **HEALTH}


def http_check(path: str, port_index: int = 0, protocol: str = "MESOS_HTTP") -> dict[str, Any]:
    return {"protocol": protocol, "path": path, "portIndex": port_index, **HEALTH}


def docker(image: str, *, network: str = "HOST", privileged: bool = False, **extra: Any) -> dict[str, Any]:
    """A Docker `container`; `volumes` belong to the container (Marathon has no container.docker.volumes), the rest
    (portMappings, parameters, …) to its `docker` part."""
    volumes = extra.pop("volumes", None)
    spec: dict[str, Any] = {"image": image, "network": network, "forcePullImage": True}
    if privileged:
        spec["privileged"] = True
    spec.update(extra)
    container: dict[str, Any] = {"type": "DOCKER", "docker": spec}
    if volumes is not None:
        container["volumes"] = volumes
    return container


def text(value: Any) -> str:
    """Marathon env values are strings; lists (IP lists) become comma lists."""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


class MarathonFramework(Framework):
    """A framework whose `api_roles` are Marathon apps posted through a master node; other roles are scripts."""

    api_roles: tuple[str, ...] = ("services",)
    app_ids: tuple[str, ...] = ()

    def __init__(self, *, state_dir: str = STATE_DIR, timeout: float = 900, poll_seconds: float = 5.0) -> None:
        self.state_dir = state_dir
        self.timeout = timeout
        self.poll_seconds = poll_seconds

    # -- to be given by each framework -------------------------------------------------------------------------

    def apps(self, role: str, props: Mapping[str, Any], context: DeployContext) -> list[dict[str, Any]]:
        """The Marathon app definitions of one role."""
        raise NotImplementedError

    def node_script(self, role: str, node: Node, cluster: Cluster) -> Script:
        """A role configured by a script on its nodes (e.g. CVMFS on agents); API roles need none."""
        return Script(f"{self.name}-{role}-check", {}, _MARATHON_READY.replace("@STATE@", self.state_dir))

    # -- Framework ---------------------------------------------------------------------------------------------

    def install_script(self, node: Node) -> Script:
        return Script(f"{self.name}-install", {}, "true\n")

    def configure_script(self, role: str, node: Node, cluster: Cluster) -> Script:
        self.check_role(role)
        return self.node_script(role, node, cluster)

    def stop_script(self, role: str, node: Node, cluster: Cluster, *, drain: bool = True) -> Script:
        return Script(f"{self.name}-stop-{role}", {}, "true\n")  # apps go with the Mesos cluster

    def client(self, run: Runner, node: Node) -> MarathonClient:
        return MarathonClient(NodeCurlTransport(run, node, self.state_dir), poll_seconds=self.poll_seconds)

    def deploy(self, context: DeployContext) -> list[str]:
        """PUT the role's apps through the first node of the role (a Mesos master) and wait until healthy."""
        if context.role not in self.api_roles:
            return []
        nodes = context.cluster.nodes(context.role)
        if not nodes:
            raise MarathonError(f"{context.component}: no master node to reach Marathon from")
        apps = self.apps(context.role, context.properties, context)
        try:
            changed = self.client(context.run, nodes[0]).ensure_apps(apps, timeout=self.timeout)
        except MarathonError as exc:
            raise MarathonError(f"{context.component}: {exc}") from None
        context.log(
            f"{context.component}: Marathon apps {', '.join(a['id'] for a in apps)} healthy "
            f"({', '.join(changed) or 'none'} changed)"
        )
        return changed

    def master(self, cluster: Cluster) -> Node:
        for role in self.api_roles:
            if cluster.nodes(role):
                return cluster.nodes(role)[0]
        raise VerificationFailed(f"{self.name}: no master node in the cluster to check Marathon from")

    def check_apps(self, cluster: Cluster, run: Runner, app_ids: Sequence[str] | None = None) -> list[str]:
        """Every app exists, runs its instances and is healthy; VerificationFailed names the others and why."""
        client = self.client(run, self.master(cluster))
        try:
            queue = client.queue()
            problems, ok = [], []
            for app_id in app_ids or self.app_ids:
                app = client.app(app_id)
                if app is None:
                    problems.append(f"{app_id}: not deployed")
                    continue
                state = app_state(app, queue)
                if state.ready:
                    ok.append(app_id)
                else:
                    why = "; ".join(state.problems) or "not all instances running/healthy"
                    problems.append(
                        f"{app_id}: {state.running}/{state.instances} running, {state.healthy} healthy ({why})"
                    )
        except MarathonError as exc:
            raise VerificationFailed(f"{self.name}: {exc}") from None
        if problems:
            raise VerificationFailed(f"{self.name}: " + "; ".join(problems))
        return ok

    def verify(self, cluster: Cluster, run: Runner) -> Verified:
        ok = self.check_apps(cluster, run)  # the deployer prefixes the framework's name to the summary
        return Verified(f"Marathon apps {', '.join(ok)} running and healthy", {"apps": float(len(ok))})

    def outputs(self, cluster: Cluster) -> dict[str, str]:
        return {}

    def load(self, cluster: Cluster) -> Load:
        return Load()


_MARATHON_READY = r"""S="@STATE@"
[ -s "$S/marathon/url" ] || { echo "error: no Marathon configured on this node (configure-Mesos ran?)" >&2; exit 1; }
echo "Marathon at $(cat "$S/marathon/url")"
"""


def marathon_app(
    app_id: str, props: Mapping[str, Any], image: str, runtime: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """An indigo Container.Application.Docker.Marathon node as a Marathon app (INDIGO orchestrator mapping).

    runtime: the hosting Container.Runtime.Docker's `host` capability (num_cpus, mem_size MB, publish_ports,
    volumes) and `scalable.count` as `instances`.
    """
    runtime = runtime or {}
    ports = [
        {
            "containerPort": int(p["target"] if "target" in p else p["source"]),
            "hostPort": 0,
            "servicePort": int(p["source"]),
            "protocol": str(p.get("protocol", "tcp")).lower(),
        }
        for p in runtime.get("publish_ports", []) or []
    ]
    volumes = []
    for spec in runtime.get("volumes", []) or []:
        parts = str(spec).split(":")
        if len(parts) >= 5 and parts[3] == "dvdi":  # marathon:<path>:rw:dvdi:rexray -> external volume
            volumes.append(
                {
                    "containerPath": parts[1],
                    "mode": parts[2].upper(),
                    "external": {
                        "name": marathon_volume_name(app_id, parts[1]),
                        "provider": "dvdi",
                        "options": {"dvdi/driver": parts[4]},
                    },
                }
            )
        elif len(parts) >= 2:
            volumes.append({"hostPath": parts[0], "containerPath": parts[1], "mode": (parts[2:] or ["rw"])[0].upper()})
    labels = {str(k): str(v) for k, v in (props.get("labels") or {}).items()}
    if ports:
        labels.setdefault("HAPROXY_GROUP", "external")
    app: dict[str, Any] = {
        "id": app_id,
        "instances": int(runtime.get("instances", 1)),
        "cpus": float(runtime.get("num_cpus", 1.0)),
        "mem": float(runtime.get("mem_size", 1024)),
        "container": docker(
            image,
            network="BRIDGE" if ports else "HOST",
            privileged=bool(props.get("privileged", False)),
            forcePullImage=bool(props.get("force_pull_image", True)),
            **({"portMappings": ports} if ports else {}),
        ),
        "env": {str(k): text(v) for k, v in (props.get("environment_variables") or {}).items()},
        "labels": labels,
        "uris": list(props.get("uris") or []),
        "constraints": [list(c) for c in props.get("constraints") or []],
    }
    if volumes:
        app["container"]["volumes"] = volumes
    if props.get("command"):
        app["cmd"] = str(props["command"])
    return app


class MarathonApps(MarathonFramework):
    """Generic container apps (indigo_marathon_app templates), one app per component in the deployment's group
    `/dodas-<deployment id>`, so apps of many deployments share a Marathon without meeting.

    A runtime hosted on this deployment's VMs (a Mesos master) takes the apps through that node over SSH; a
    runtime hosted nowhere means the site's Marathon (the `marathon_conn_id` connection), as the INDIGO
    orchestrator deployed such templates on the site's Mesos. Apps on the site's Marathon are deleted at undeploy.
    """

    name = "marathon-apps"
    roles = ("app",)
    api_roles = ("app",)

    def __init__(
        self,
        *,
        marathon_conn_id: str = "dodas_marathon",
        deployment_id: str | None = None,
        site_services: SiteServices | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.marathon_conn_id = marathon_conn_id
        self.deployment_id = deployment_id
        self.site_services = site_services

    def _owner(self) -> str:
        if not self.deployment_id:
            raise MarathonError("marathon-apps needs the deployment id to name its Marathon group")
        return self.deployment_id

    @property
    def group(self) -> str:
        return marathon_group(self._owner())

    def app_id(self, component: str) -> str:
        return marathon_app_id(self._owner(), component)

    def apps(self, role: str, props: Mapping[str, Any], context: DeployContext) -> list[dict[str, Any]]:
        image = props.get("image") or (context.artifacts.get("image") or {}).get("file")
        if not image:
            raise MarathonError(
                f"{context.component}: no Docker image (give the image artifact's file, e.g. the docker_image input)"
            )
        host = dict(context.host.get("host") or {})
        if "mem_size" in host:
            host["mem_size"] = size_to_mib(host["mem_size"])
        host["instances"] = int((context.host.get("scalable") or {}).get("count", 1))
        return [marathon_app(self.app_id(context.component), props, str(image), host)]

    def site(self) -> MarathonClient:
        """The site's Marathon (connection `marathon_conn_id`), through the site services handed in."""
        if self.site_services is None:
            raise MarathonError(f"{self.name}: no site services were handed in to reach {self.marathon_conn_id}")
        return self.site_services.marathon(self.marathon_conn_id, poll_seconds=self.poll_seconds)

    def deploy(self, context: DeployContext) -> list[str]:
        if context.role not in self.api_roles or context.cluster.nodes(context.role):
            return super().deploy(context)
        apps = self.apps(context.role, context.properties, context)
        try:
            changed = self.site().ensure_apps(apps, timeout=self.timeout)
        except MarathonError as exc:
            raise MarathonError(f"{context.component}: site Marathon ({self.marathon_conn_id}): {exc}") from None
        context.log(f"{context.component}: {', '.join(a['id'] for a in apps)} healthy on the site's Marathon")
        return changed

    def verify(self, cluster: Cluster, run: Runner) -> Verified:
        """Every app of the deployment's group runs and is healthy (on its master, or on the site's Marathon)."""
        client = self.client(run, self.master(cluster)) if cluster.nodes("app") else self.site()
        try:
            ids = [a["id"] for a in client.apps() if a["id"].startswith(self.group + "/")]
            if not ids:
                raise VerificationFailed(f"marathon-apps: no app of {self.group} is deployed")
            states = client.states(ids)
        except MarathonError as exc:
            raise VerificationFailed(f"marathon-apps: {exc}") from None
        bad = [s for s in states if not s.ready]
        if bad:
            raise VerificationFailed("marathon-apps: " + describe_states(bad))
        return Verified(f"{', '.join(ids)} running and healthy", {"apps": float(len(ids))})

    def release(self) -> list[str]:
        """Delete the deployment's group from the site's Marathon (its apps stop), and wait until it is gone."""
        return self.site().remove_group(self.group, timeout=self.timeout)
