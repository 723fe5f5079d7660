"""configure-Mesos: ZooKeeper + Mesos master + Marathon (+ Chronos) on masters, agents, marathon-lb.

Node scripts only produce configuration and containers (via a container runtime CLI: docker, podman, or a
recorder in tests); the template's properties (credentials, TLS and Chronos switches) reach them as
TOSCA_PROPERTY_* environment from the deployer. verify() asks the masters' APIs from a master node over SSH,
with the credentials that live there, so no secret travels back to the worker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import httpx

from dodas_tasks.clustermanagers.mesos.images import MesosImages
from dodas_tasks.clustermanagers.mesos.state import agent_problems, load_from_state, queue_demand, split_sections
from dodas_tasks.configure.scripts import packaged_script
from dodas_tasks.frameworks.base import (
    Cluster,
    Framework,
    Load,
    Node,
    Runner,
    Script,
    VerificationFailed,
    Verified,
)
from dodas_tasks.naming import parse_server_name

CONTAINERS = {
    "master": "dodas-zookeeper dodas-mesos-master dodas-marathon dodas-chronos",
    "agent": "dodas-mesos-agent",
    "lb": "dodas-marathon-lb",
}


def script_body(name: str) -> str:
    """A node script: the shared functions, then the named script."""
    return packaged_script(__package__, name)


def quorum(masters: int) -> int:
    """Mesos replicated-log quorum: a strict majority of the masters."""
    return masters // 2 + 1


def agent_attributes(node: Node) -> str:
    """Mesos agent attributes for placement constraints: the node's compute group and name (`key:value;...`)."""
    parsed = parse_server_name(node.name)
    attrs = {"dodas_node": node.name}
    if parsed:
        attrs["dodas_group"] = parsed.group
    return ";".join(f"{key}:{value}" for key, value in attrs.items())


class MesosCluster(Framework):
    """The Mesos cluster manager: roles master (ZooKeeper, Mesos master, Marathon, Chronos), agent, lb."""

    name = "mesos"
    roles = ("master", "agent", "lb")
    mapping_settings = ("images",)  # a deployment may set images as {"marathon": "...", ...} (MesosImages fields)

    def __init__(
        self,
        *,
        images: MesosImages | Mapping[str, str] | None = None,
        runtime: str = "docker",
        state_dir: str = "$HOME/.dodas/mesos",
        cluster_name: str = "DodasCluster",
        mesos_port: int = 5050,
        agent_port: int = 5051,
        marathon_http_port: int = 8080,
        marathon_https_port: int = 8443,
        chronos_http_port: int = 4400,
        chronos_https_port: int = 4443,
        zookeeper_port: int = 2181,
        containerizers: str = "docker,mesos",
        agent_work_dir: str = "/var/lib/mesos",
        docker_socket: str = "/var/run/docker.sock",
        lb_group: str = "external",
        wait_seconds: int = 300,
        http: Callable[[], httpx.Client] | None = None,
        mesos_auth: tuple[str, str] | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.images = images if isinstance(images, MesosImages) else MesosImages(**dict(images or {}))
        self.runtime = runtime
        self.state_dir = state_dir
        self.cluster_name = cluster_name
        self.mesos_port = mesos_port
        self.agent_port = agent_port
        self.marathon_http_port = marathon_http_port
        self.marathon_https_port = marathon_https_port
        self.chronos_http_port = chronos_http_port
        self.chronos_https_port = chronos_https_port
        self.zookeeper_port = zookeeper_port
        self.containerizers = containerizers
        self.agent_work_dir = agent_work_dir
        self.docker_socket = docker_socket
        self.lb_group = lb_group
        self.wait_seconds = wait_seconds
        self._http = http
        self.mesos_auth = mesos_auth
        self.runner = runner

    # -- scripts -----------------------------------------------------------------------------------------------

    def _env(self, node: Node, **extra: object) -> dict[str, str]:
        env = {
            "NODE_IP": node.ip,
            "DODAS_RUNTIME": self.runtime,
            "DODAS_WAIT_SECONDS": str(self.wait_seconds),
        }
        env.update({key: str(value) for key, value in extra.items()})
        return env

    def _zookeeper(self, cluster: Cluster) -> dict[str, object]:
        masters = [m.ip for m in cluster.nodes("master")]
        if not masters:
            raise ValueError("the Mesos cluster has no master node: agents and Marathon need ZooKeeper on a master")
        return {
            "ZK_CONNECT": ",".join(f"{ip}:{self.zookeeper_port}" for ip in masters),
            "ZK_SERVERS": ",".join(masters),
            "ZK_ENSEMBLE": " ".join(
                f"server.{i}={ip}:2888:3888;{self.zookeeper_port}" for i, ip in enumerate(masters, start=1)
            ),
        }

    def _with_state(self, env: dict[str, str], body: str) -> tuple[dict[str, str], str]:
        # the state dir may hold $HOME: expanded on the node, so it is set in the body, not as a quoted value
        return env, f'DODAS_MESOS_STATE="{self.state_dir}"\n' + body

    def install_script(self, node: Node) -> Script:
        """Checks the node has the container runtime (installing Docker is the image's job, as in DODAS)."""
        body = (
            'command -v "$DODAS_RUNTIME" >/dev/null 2>&1 || '
            '{ echo "error: container runtime $DODAS_RUNTIME not found on this node" >&2; exit 1; }\n'
        )
        return Script("mesos-install-check", self._env(node), body)

    def configure_script(self, role: str, node: Node, cluster: Cluster) -> Script:
        """The role's containers on the node, configured from the cluster's masters; idempotent."""
        self.check_role(role)
        zk = self._zookeeper(cluster)
        if role == "master":
            masters = [m.ip for m in cluster.nodes("master")]
            env = self._env(
                node,
                **zk,
                ZK_MYID=masters.index(node.ip) + 1,
                MESOS_QUORUM=quorum(len(masters)),
                MESOS_CLUSTER_NAME=self.cluster_name,
                MESOS_PORT=self.mesos_port,
                MARATHON_HTTP_PORT=self.marathon_http_port,
                MARATHON_HTTPS_PORT=self.marathon_https_port,
                CHRONOS_HTTP_PORT=self.chronos_http_port,
                CHRONOS_HTTPS_PORT=self.chronos_https_port,
                ZOOKEEPER_IMAGE=self.images.zookeeper,
                MESOS_IMAGE=self.images.mesos,
                MESOS_MASTER_COMMAND=self.images.mesos_master_command,
                MARATHON_IMAGE=self.images.marathon,
                CHRONOS_IMAGE=self.images.chronos,
            )
            return Script("mesos-master", *self._with_state(env, script_body("master.sh")))
        if role == "agent":
            env = self._env(
                node,
                **zk,
                MESOS_AGENT_PORT=self.agent_port,
                MESOS_ATTRIBUTES=agent_attributes(node),
                MESOS_CONTAINERIZERS=self.containerizers,
                MESOS_IMAGE=self.images.mesos,
                MESOS_AGENT_COMMAND=self.images.mesos_agent_command,
                MESOS_AGENT_WORK_DIR=self.agent_work_dir,
                DOCKER_SOCKET=self.docker_socket,
            )
            return Script("mesos-agent", *self._with_state(env, script_body("agent.sh")))
        env = self._env(
            node,
            MARATHON_URLS=" ".join(self.marathon_urls(cluster, tls=True)),
            MARATHON_LB_IMAGE=self.images.marathon_lb,
            MARATHON_LB_GROUP=self.lb_group,
        )
        return Script("mesos-lb", *self._with_state(env, script_body("lb.sh")))

    def stop_script(self, role: str, node: Node, cluster: Cluster, *, drain: bool = True) -> Script:
        """Removes the role's containers (Mesos reschedules an agent's tasks elsewhere once it is gone)."""
        self.check_role(role)
        env = self._env(node, CONTAINERS=CONTAINERS[role])
        return Script(f"mesos-stop-{role}", *self._with_state(env, script_body("stop.sh")))

    def marathon_urls(self, cluster: Cluster, *, tls: bool) -> list[str]:
        """Marathon on every master (HTTPS on 8443 as DODAS set it, or plain HTTP)."""
        if tls:
            return [f"https://{m.ip}:{self.marathon_https_port}" for m in cluster.nodes("master")]
        return [f"http://{m.ip}:{self.marathon_http_port}" for m in cluster.nodes("master")]

    # -- verify, outputs, load ---------------------------------------------------------------------------------

    def verify_script(self, cluster: Cluster) -> Script:
        master = cluster.nodes("master")[0]
        env = self._env(master, DODAS_VERIFY_PATHS="mesos:/master/slaves marathon:/v2/info")
        return Script("mesos-verify", *self._with_state(env, script_body("verify.sh")), log_output=False)

    def verify(self, cluster: Cluster, run: Runner) -> Verified:
        """Mesos lists every agent node as active and Marathon answers with its leader; asked from a master."""
        masters = cluster.nodes("master")
        if not masters:
            raise VerificationFailed("the Mesos cluster has no master node to check")
        result = run(masters[0], self.verify_script(cluster))
        if result.exit_status != 0:
            reason = result.stderr.strip()[-500:] or f"exit status {result.exit_status}"
            raise VerificationFailed(f"checking Mesos from {masters[0].name} failed: {reason}")
        sections = split_sections(result.stdout)
        slaves = _json_section(sections, "mesos /master/slaves", "Mesos master", masters[0])
        problems = agent_problems(slaves, [(a.name, a.ip) for a in cluster.nodes("agent")])
        info = _json_section(sections, "marathon /v2/info", "Marathon", masters[0])
        if not info.get("leader"):
            problems.append("Marathon has no leader (is ZooKeeper reachable from Marathon?)")
        if problems:
            raise VerificationFailed("Mesos cluster not ready: " + "; ".join(problems))
        agents = len(cluster.nodes("agent"))
        return Verified(
            f"Mesos: {agents} active agent(s), Marathon leader {info.get('leader')}",
            {"active_agents": float(agents)},
        )

    def outputs(self, cluster: Cluster) -> dict[str, str]:
        """Endpoints as the DODAS templates name them (templates' own outputs take precedence)."""
        masters = cluster.nodes("master")
        if not masters:
            return {}
        ip = masters[0].ip
        out = {
            "mesos_endpoint": f"http://{ip}:{self.mesos_port}",
            "marathon_endpoint": f"https://{ip}:{self.marathon_https_port}",
            "zookeeper_peers": ",".join(f"{m.ip}:{self.zookeeper_port}" for m in masters),
        }
        lbs = cluster.nodes("lb")
        if lbs:
            out["mesos_lb_ip"] = lbs[0].ip
        return out

    def load(self, cluster: Cluster) -> Load:
        """Busy/idle agents and staging tasks from the leading master's /master/state: asked on a master over SSH
        with the credentials kept there when a runner is given (how the watchers call it), else over HTTP."""
        masters = cluster.nodes("master")
        if not masters:
            return Load()
        if self.runner is not None:
            env = self._env(masters[0], DODAS_VERIFY_PATHS="mesos:/master/state marathon:/v2/queue")
            script = Script("mesos-state", *self._with_state(env, script_body("verify.sh")), log_output=False)
            result = self.runner(masters[0], script)
            if result.exit_status != 0:
                reason = result.stderr.strip()[-300:] or f"exit status {result.exit_status}"
                raise VerificationFailed(f"reading Mesos state on {masters[0].name} failed: {reason}")
            sections = split_sections(result.stdout)
            state = _json_section(sections, "mesos /master/state", "Mesos master", masters[0])
            queue = _json_section(sections, "marathon /v2/queue", "Marathon", masters[0]).get("queue", [])
            return load_from_state(state, cluster.name_of, *queue_demand(queue))
        with self._client() as client:
            response = client.get(f"http://{masters[0].ip}:{self.mesos_port}/master/state", follow_redirects=True)
            response.raise_for_status()
            return load_from_state(response.json(), cluster.name_of)

    def _client(self) -> httpx.Client:
        if self._http is not None:
            return self._http()
        return httpx.Client(auth=self.mesos_auth, timeout=10, trust_env=False)


def _json_section(sections: Mapping[str, str], key: str, what: str, node: Node) -> dict:
    body, path = sections.get(key), key.split(" ", 1)[1]
    if body is None:
        raise VerificationFailed(f"{what} on {node.name} gave no answer to {path}")
    if body.startswith("ERROR:"):
        raise VerificationFailed(f"{what} on {node.name} refused {path}: {body[6:].strip()[:300]}")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise VerificationFailed(f"{what} on {node.name} answered {path} with no JSON: {body[:200]!r}") from exc
