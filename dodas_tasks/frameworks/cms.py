"""CMS on Mesos (indigo-dc.cms_config, reference c.2): squid, TTS proxy cache and CMS workers as Marathon apps,
plus the worker-node configuration (CVMFS proxy and the CMS site-local config) written on every agent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dodas_tasks.frameworks.base import Cluster, DeployContext, Node, Script
from dodas_tasks.frameworks.htcondor import proxycache_app
from dodas_tasks.frameworks.marathon_apps import MarathonFramework, command_check, docker, text


def cms_apps(props: Mapping[str, Any], workers: int = 1, etc_dir: str = "/etc") -> list[dict[str, Any]]:
    """cmssquid, cmsproxycache and cmswnel7; the workers mount the SITECONF the wn role wrote under `etc_dir`
    (a relative etc_dir, under a rootless agent user's home, is no host path: the mount stays /etc)."""
    siteconf = f"{etc_dir.rstrip('/')}/cvmfs/SITECONF" if etc_dir.startswith("/") else "/etc/cvmfs/SITECONF"
    squid_host = text(props.get("mysquid_host"))
    proxy = text(props.get("proxycache_host"))
    return [
        {
            "id": "/cmssquid",
            "instances": 1,
            "cpus": 1.0,
            "mem": 2048.0,
            "cmd": "/launch_squid.sh",
            "container": docker(
                text(props.get("cms_squid_image") or "spiga/frontiersquidv1"),
                network="BRIDGE",
                portMappings=[{"containerPort": 3128, "hostPort": 0, "servicePort": 3128, "protocol": "tcp"}],
            ),
            "labels": {"HAPROXY_GROUP": "external"},
            "healthChecks": [command_check("curl -I http://$HOST:$PORT0 | grep -q squid")],
        },
        {
            **proxycache_app({**props, "proxycache_image": props.get("cms_proxycache_image")}, []),
            "id": "/cmsproxycache",
        },
        {
            "id": "/cmswnel7",
            "instances": workers,
            "cpus": 1.0,
            "mem": 2000.0,
            "cmd": "/usr/local/bin/dodas.sh",
            "container": docker(
                text(props.get("cms_wn_image") or "dodasts/cms"),
                network="BRIDGE",
                privileged=True,
                parameters=[{"key": "cap-add", "value": "SYS_ADMIN"}],
                volumes=[
                    {"containerPath": "/cvmfs", "hostPath": "/cvmfs", "mode": "RW"},
                    {"containerPath": "/etc/cvmfs/SITECONF", "hostPath": siteconf, "mode": "RO"},
                    {"containerPath": "/opt/exp_sw/cms", "hostPath": "/opt/exp_sw/cms", "mode": "RW"},
                    {"containerPath": "/sys/fs/cgroup", "hostPath": "/sys/fs/cgroup", "mode": "RO"},
                ],
            ),
            "env": {
                "FRONTIER_PROXY": f"http://{squid_host}:3128",
                "CMS_LOCAL_SITE": text(props.get("cms_local_site")),
                "PROXY_CACHE": f"{proxy}:8080",
            },
        },
    ]


_WN = r"""# CMS worker-node configuration on a Mesos agent: CVMFS through the cluster's squid, CMS site-local config.
set -eu
umask 022
ETC="${DODAS_CMS_ETC:-/etc}"
case "$ETC" in /*) ;; *) ETC="$HOME/$ETC" ;; esac
mkdir -p "$ETC/cvmfs/SITECONF/JobConfig" "$ETC/cvmfs/SITECONF/PhEDEx"
INPUT_PROTOCOL=${TOSCA_PROPERTY_CMS_INPUT_PROTOCOL:-xrootd}
STAGEOUT_PROTOCOL=${TOSCA_PROPERTY_CMS_STAGEOUTPROTOCOL}
STAGEOUT_SITE=${TOSCA_PROPERTY_CMS_STAGEOUTSITE}
CATALOG=trivialcatalog_file:/cvmfs/cms.cern.ch/SITECONF
cat >"$ETC/cvmfs/default.local" <<CVMFS
CVMFS_REPOSITORIES=cms.cern.ch,singularity.opensciencegrid.org,oasis.opensciencegrid.org
CVMFS_HTTP_PROXY=http://${TOSCA_PROPERTY_MYSQUID_HOST}:3128
CVMFS_QUOTA_LIMIT=20000
CVMFS
cat >"$ETC/cvmfs/SITECONF/JobConfig/site-local-config.xml" <<XML
<site-local-config>
 <site name="${TOSCA_PROPERTY_CMS_LOCAL_SITE}">
  <event-data><catalog url="${CATALOG}/local/PhEDEx/storage.xml?protocol=${INPUT_PROTOCOL}"/></event-data>
  <local-stage-out>
   <command value="${TOSCA_PROPERTY_CMS_STAGEOUTCOMMAND}"/>
   <option value="-v"/>
   <catalog url="${CATALOG}/${STAGEOUT_SITE}/PhEDEx/storage.xml?protocol=${STAGEOUT_PROTOCOL}"/>
   <se-name value="${TOSCA_PROPERTY_CMS_PHEDEXNODE}"/>
   <phedex-node value="${TOSCA_PROPERTY_CMS_PHEDEXNODE}"/>
  </local-stage-out>
  <calib-data><frontier-connect>
   <proxy url="http://${TOSCA_PROPERTY_MYSQUID_HOST}:3128"/>
  </frontier-connect></calib-data>
 </site>
</site-local-config>
XML
cat >"$ETC/cvmfs/SITECONF/PhEDEx/storage.xml" <<XML
<storage-mapping>
 <lfn-to-pfn protocol="xrootd" destination-match=".*" path-match="/+store/(.*)" result="root://${TOSCA_PROPERTY_CMS_XRD_READSERVER:-xrootd.ba.infn.it}//store/\$1"/>
</storage-mapping>
XML
echo "CMS worker configuration written for site ${TOSCA_PROPERTY_CMS_LOCAL_SITE} (squid ${TOSCA_PROPERTY_MYSQUID_HOST})"
"""


class CmsOnMesos(MarathonFramework):
    """CMS services (role services, on a master) and worker configuration (role wn, on every agent)."""

    name = "cms-mesos"
    roles = ("services", "wn")
    app_ids = ("cmssquid", "cmsproxycache", "cmswnel7")

    def __init__(self, *, etc_dir: str = "/etc", **kwargs: Any) -> None:
        """etc_dir: where the wn role writes CVMFS and the CMS site config on agents (a site setting,
        `frameworks.cms-mesos.etc_dir`); a relative path is under the SSH user's home (rootless agents)."""
        super().__init__(**kwargs)
        self.etc_dir = etc_dir

    def apps(self, role: str, props: Mapping[str, Any], context: DeployContext) -> list[dict[str, Any]]:
        mesos = context.peers.get("mesos")
        return cms_apps(props, len(mesos.nodes("agent")) if mesos else 1, self.etc_dir)

    def node_script(self, role: str, node: Node, cluster: Cluster) -> Script:
        if role == "wn":
            return Script("cms-wn", {"DODAS_CMS_ETC": self.etc_dir}, _WN)
        return super().node_script(role, node, cluster)
