"""AMS on Mesos (indigo-dc.ams_config, reference c.3): the HTCondor base with the AMS image, an AMS squid
(master step), the execute step's `condorwn` and `cvmfscheck`, and the AMS CVMFS repository on every agent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dodas_tasks.frameworks.base import Cluster, DeployContext, Node, Script
from dodas_tasks.frameworks.marathon_apps import MarathonFramework, command_check, docker, text


def ams_master_apps(props: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": "/amssquid",
            "instances": 1,
            "cpus": 1.0,
            "mem": 2048.0,
            "cmd": "/launch_squid.sh",
            "container": docker(
                "spiga/frontiersquidv1",
                network="BRIDGE",
                portMappings=[{"containerPort": 3128, "hostPort": 0, "servicePort": 3128, "protocol": "tcp"}],
            ),
            "labels": {"HAPROXY_GROUP": "external"},
            "healthChecks": [command_check("curl -I http://$HOST:$PORT0 | grep -q squid")],
        }
    ]


def ams_execute_apps(props: Mapping[str, Any], workers: int) -> list[dict[str, Any]]:
    """condorwn with the AMS image; instances = worker agents (the role's undefined variable fixed, see c.3)."""
    ccb = text(props.get("htcondor_config_ccb_ip"))
    schedd = text(props.get("htcondor_config_schedd_ip"))
    condor_host = text(props.get("htcondor_config_condor_host") or ccb)
    port = text(props.get("config_proxycache_serviceport") or "8080")
    return [
        {
            "id": "/condorwn",
            "instances": workers,
            "cpus": 0.98,
            "mem": 1999.98,
            "args": ["wn"],
            "container": docker(
                text(props.get("htcondor_config_condor_image") or "dodasts/ams"),
                network="BRIDGE",
                privileged=True,
                volumes=[{"containerPath": "/cvmfs", "hostPath": "/cvmfs", "mode": "RW"}],
            ),
            "env": {
                "CONDOR_HOST": "ZOOKEEPER",
                "CCB_ADDRESS": condor_host,
                "ZOOKEEPER_HOST_LIST": ",".join(f"{ip}:2181" for ip in props.get("master_ips") or []),
                "PROXY_CACHE": f"{text(props.get('proxycache_host'))}:{port}",
                "SLOT_TYPE_1": "cpus=1, mem=2000",
            },
            "constraints": [["hostname", "UNLIKE", schedd], ["hostname", "UNLIKE", ccb]],
            "healthChecks": [command_check("dodas_check_condor_processes condor_startd")],
        },
        {
            "id": "/cvmfscheck",
            "instances": workers,
            "cpus": 0.01,
            "mem": 32.0,
            "cmd": "while ls /cvmfs/ams.cern.ch >/dev/null; do sleep 60; done",
            "container": docker(
                "busybox", network="HOST", volumes=[{"containerPath": "/cvmfs", "hostPath": "/cvmfs", "mode": "RO"}]
            ),
            "constraints": [["hostname", "UNIQUE"]],
        },
    ]


_WN = r"""# AMS worker-node configuration on a Mesos agent: CVMFS for ams.cern.ch (custom repository key) via the squid.
set -eu
umask 022
ETC="${DODAS_AMS_ETC:-/etc}"
case "$ETC" in /*) ;; *) ETC="$HOME/$ETC" ;; esac
mkdir -p "$ETC/cvmfs/config.d" "$ETC/cvmfs/keys"
printf '%s\n' "${TOSCA_PROPERTY_AMS_REPO_PUBLIC_KEY}" >"$ETC/cvmfs/keys/${TOSCA_PROPERTY_AMS_REPO_REPOSITORY_NAME}.pub"
cat >"$ETC/cvmfs/default.local" <<CVMFS
CVMFS_REPOSITORIES=${TOSCA_PROPERTY_AMS_REPO_REPOSITORY_NAME},sft.cern.ch
CVMFS_HTTP_PROXY=http://${TOSCA_PROPERTY_AMS_DEFAULT_SQUID}:3128
CVMFS
cat >"$ETC/cvmfs/config.d/${TOSCA_PROPERTY_AMS_REPO_REPOSITORY_NAME}.conf" <<CVMFS
CVMFS_SERVER_URL=${TOSCA_PROPERTY_AMS_REPO_SERVER_URL}
CVMFS_PUBLIC_KEY=$ETC/cvmfs/keys/${TOSCA_PROPERTY_AMS_REPO_REPOSITORY_NAME}.pub
CVMFS
echo "AMS worker configuration written (repository ${TOSCA_PROPERTY_AMS_REPO_REPOSITORY_NAME})"
"""


class AmsOnMesos(MarathonFramework):
    """AMS: roles master (squid), execute (workers as Marathon apps) and wn (CVMFS on each agent)."""

    name = "ams-mesos"
    roles = ("master", "execute", "wn")
    api_roles = ("master", "execute")
    app_ids = ("amssquid", "condorwn", "cvmfscheck")

    def __init__(self, *, etc_dir: str = "/etc", **kwargs: Any) -> None:
        """etc_dir: where the wn role writes the AMS CVMFS configuration on agents (a site setting,
        `frameworks.ams-mesos.etc_dir`); a relative path is under the SSH user's home (rootless agents)."""
        super().__init__(**kwargs)
        self.etc_dir = etc_dir

    def apps(self, role: str, props: Mapping[str, Any], context: DeployContext) -> list[dict[str, Any]]:
        if role == "master":
            return ams_master_apps(props)
        mesos = context.peers.get("mesos")
        special = {text(props.get("htcondor_config_schedd_ip")), text(props.get("htcondor_config_ccb_ip"))}
        workers = sum(1 for a in mesos.nodes("agent") if a.ip not in special) if mesos else 1
        return ams_execute_apps(props, workers)

    def node_script(self, role: str, node: Node, cluster: Cluster) -> Script:
        if role == "wn":
            return Script("ams-wn", {"DODAS_AMS_ETC": self.etc_dir}, _WN)
        return super().node_script(role, node, cluster)
