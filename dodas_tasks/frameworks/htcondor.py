"""HTCondor on Mesos as DODAS ran it: TTS proxy cache, central manager, schedd and startd workers as Marathon apps.

App definitions follow indigo-dc.htcondor_config v1.0.0-dodas-rc3 (reference section c.1): `condorcm` pinned to
the CCB node and `condorschedd` to the schedd node by hostname constraints (our agents register with their IP
as hostname), workers everywhere else with `instances` = the worker agents, ZooKeeper as the discovery store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dodas_tasks.frameworks.base import Cluster, DeployContext, Load, Runner, Script, VerificationFailed, Verified
from dodas_tasks.frameworks.marathon_apps import (
    MarathonFramework,
    command_check,
    docker,
    http_check,
    text,
)

DEFAULT_IMAGE = "dodasts/htcondor"


def zookeeper_hosts(props: Mapping[str, Any]) -> str:
    return ",".join(f"{ip}:2181" for ip in _list(props.get("master_ips")))


def worker_count(props: Mapping[str, Any], context: DeployContext) -> int:
    """Mesos agents that are neither the schedd nor the CCB node: one HTCondor worker on each."""
    special = {text(props.get(k)) for k in ("htcondor_config_schedd_ip", "htcondor_config_ccb_ip")}
    special |= {text(props.get(k)) for k in ("htcondor_config_schedd_ip_pub", "htcondor_config_ccb_ip_pub")}
    mesos = context.peers.get("mesos")
    if mesos is None:
        return int(props.get("number_of_wn_instances", 0) or 0)
    return sum(1 for agent in mesos.nodes("agent") if agent.ip not in special)


def proxycache_app(props: Mapping[str, Any], avoid: list[str]) -> dict[str, Any]:
    env = {
        "IAM_TOKEN": text(props.get("iam_access_token")),
        "IAM_CLIENT_ID": text(props.get("iam_client_id")),
        "IAM_CLIENT_SECRET": text(props.get("iam_client_secret")),
        "MARATHON_USER": text(props.get("marathon_username", "admin")),
        "MARATHON_PASSWD": text(props.get("marathon_password")),
        "ZOOKEEPER_HOST_LIST": zookeeper_hosts(props),
        "CACHE_MANAGER": text(props.get("proxycache_token_manager", "ZOOKEEPER")),
        "PROXY_AUDIENCE": text(props.get("audience")),
        "PROXY_TTS": text(props.get("watts_endpoint")),
        "PROXY_IAM_ENDPOINT": text(props.get("iam_endpoint")),
        "PROXY_CREDENTIAL_ENDPOINT": text(props.get("iam_credential_endpoint")),
        "PROXY_LOCAL_CACHE_EXPIRATION_TIME": text(props.get("local_cache_expiration_time", 86400)),
        "PROXY_LOCK_FILE_AGE": text(props.get("lock_file_age", 20)),
        "PROXY_CACHE_DIR": text(props.get("cache_dir", "/tmp")),
    }
    return {
        "id": "/proxycache",
        "instances": 1,
        "cpus": 1.0,
        "mem": 2048.0,
        "container": docker(
            text(props.get("proxycache_image") or "dodasts/ttscache"),
            network="BRIDGE",
            portMappings=[{"containerPort": 80, "hostPort": 0, "servicePort": 8080, "protocol": "tcp"}],
        ),
        "labels": {"HAPROXY_GROUP": "external"},
        "env": env,
        "constraints": [["hostname", "UNLIKE", ip] for ip in avoid],
        "healthChecks": [http_check("/health")],
    }


def htcondor_apps(props: Mapping[str, Any], workers: int) -> list[dict[str, Any]]:
    """proxycache, condorcm, condorschedd and condorwn, as the DODAS role posted them."""
    image = text(props.get("htcondor_config_condor_image") or DEFAULT_IMAGE)
    ccb = text(props.get("htcondor_config_ccb_ip"))
    schedd = text(props.get("htcondor_config_schedd_ip"))
    schedd_pub = text(props.get("htcondor_config_schedd_ip_pub") or schedd)
    condor_host = text(props.get("htcondor_config_condor_host") or ccb)
    proxy = f"{text(props.get('proxycache_host'))}:8080"
    zk = zookeeper_hosts(props)
    common = {"CONDOR_HOST": condor_host, "ZOOKEEPER_HOST_LIST": zk, "PROXY_CACHE": proxy}
    return [
        proxycache_app(props, [schedd, ccb]),
        {
            "id": "/condorcm",
            "instances": 1,
            "cpus": 0.95,
            "mem": 998.0,
            "args": ["master"],
            "container": docker(image),
            "env": {
                **common,
                "LB_HOST_LIST": text(props.get("lb_ips")),
                "CCB_ADDRESS": text(props.get("htcondor_config_ccb_address") or ccb),
            },
            "constraints": [["hostname", "UNIQUE"], ["hostname", "LIKE", ccb]],
            "healthChecks": [command_check("dodas_check_condor_processes condor_negotiator condor_collector")],
        },
        {
            "id": "/condorschedd",
            "instances": 1,
            "cpus": 0.9,
            "mem": 1000.0,
            "args": ["schedd"],
            "container": docker(
                image,
                privileged=True,
                volumes=[
                    {"containerPath": "/home/uwdir", "hostPath": "/tmp/uwdir", "mode": "RW"},
                    {"containerPath": "/var/lib/condor/spool/", "hostPath": "/spooldisk/", "mode": "RW"},
                ],
            ),
            "env": {
                **common,
                "CONDOR_SCHEDD_SSH_PORT": "31042",
                "NETWORK_INTERFACE": schedd_pub,
                "HIGHPORT": text(props.get("htcondor_config_high_port") or "32048"),
                "LOWPORT": text(props.get("htcondor_config_low_port") or "31024"),
                "IAM_ENDPOINT": text(props.get("iam_endpoint")),
                "CLIENT_ID": text(props.get("iam_client_id")),
                "CLIENT_SECRET": text(props.get("iam_client_secret")),
            },
            "constraints": [["hostname", "LIKE", schedd]],
            "healthChecks": [command_check("dodas_check_condor_processes condor_schedd")],
        },
        {
            "id": "/condorwn",
            "instances": workers,
            "cpus": 0.98,
            "mem": 1999.98,
            "args": ["wn"],
            "container": docker(image, network="BRIDGE", privileged=True),
            "env": {
                **common,
                "CONDOR_HOST": "ZOOKEEPER",
                "CCB_ADDRESS": condor_host,
                "SLOT_TYPE_1": "cpus=1, mem=2000",
            },
            "constraints": [["hostname", "UNLIKE", schedd], ["hostname", "UNLIKE", ccb]],
            "healthChecks": [command_check("dodas_check_condor_processes condor_startd")],
        },
    ]


def parse_pool(output: str) -> dict[str, list[str]]:
    """`condor_status -any -af MyType Name State Activity TotalIdleJobs` lines: the rest of each line by ad type
    (Scheduler, Machine …); attributes an ad does not have read `undefined`."""
    pool: dict[str, list[str]] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            pool.setdefault(parts[0], []).append(" ".join(parts[1:]))
    return pool


def idle_jobs(schedds: list[str]) -> int:
    """Idle jobs in the pool: the sum of the TotalIdleJobs every schedd advertises to the collector."""
    return sum(int(ad.split()[-1]) for ad in schedds if ad.split()[-1].isdigit())


def load_from_pool(machines: list[str], idle_job_cpus: list[int], name_of: Any = str) -> Load:
    """Load from startd ads ('<name> <State> <Activity>') and the idle jobs' RequestCpus."""
    busy, idle = set(), set()
    for machine in machines:
        name, _, rest = machine.partition(" ")
        host = name.rpartition("@")[2]
        (busy if rest.startswith("Claimed") else idle).add(name_of(host))
    idle -= busy
    return Load(
        pending_demand=sum(idle_job_cpus),
        waiting_apps=len(idle_job_cpus),
        idle_nodes=sorted(idle),
        busy_nodes=sorted(busy),
        healthy_nodes=sorted(idle | busy),
    )


_POOL = r"""out=$("$DODAS_RUNTIME" run --rm --network host "$CONDOR_IMAGE" condor_status -pool "$COLLECTOR" -any \
    -af MyType Name State Activity TotalIdleJobs 2>&1) || { echo "$out" >&2; exit 1; }
printf '%s\n' "$out"
"""


class HTCondorOnMesos(MarathonFramework):
    """HTCondor pool as Marathon apps; the smoke check asks the collector for the schedd and the startds."""

    name = "htcondor-mesos"
    roles = ("services",)
    app_ids = ("proxycache", "condorcm", "condorschedd", "condorwn")

    def __init__(self, *, runtime: str = "docker", runner: Runner | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self.runner = runner

    def apps(self, role: str, props: Mapping[str, Any], context: DeployContext) -> list[dict[str, Any]]:
        """The pool's apps; in an AMS deployment the workers are AMS's own `condorwn` (its execute step), so
        this one is left out rather than put and replaced on every run."""
        apps = htcondor_apps(props, worker_count(props, context))
        if "ams-mesos" in context.peers:
            apps = [app for app in apps if app["id"] != "/condorwn"]
        return apps

    def pool(self, cluster: Cluster, run: Runner) -> tuple[dict[str, list[str]], int]:
        """The collector's ads (asked from a master node with the condor image) and the workers wanted."""
        client = self.client(run, self.master(cluster))
        cm, wn = client.app("condorcm"), client.app("condorwn")
        if cm is None or not cm.get("tasks"):
            raise VerificationFailed("htcondor: condorcm has no running task, no collector to ask")
        collector = f"{cm['tasks'][0]['host']}:9618"
        env = {
            "DODAS_RUNTIME": self.runtime,
            "CONDOR_IMAGE": cm["container"]["docker"]["image"],
            "COLLECTOR": collector,
        }
        result = run(self.master(cluster), Script("htcondor-pool", env, _POOL))
        if result.exit_status != 0:
            raise VerificationFailed(
                f"htcondor: condor_status against {collector} failed: {result.stderr.strip()[-300:]}"
            )
        return parse_pool(result.stdout), int((wn or {}).get("instances", 0))

    def verify(self, cluster: Cluster, run: Runner) -> Verified:
        """All apps healthy, then the collector lists the schedd and one startd per worker instance."""
        ok = self.check_apps(cluster, run)
        pool, workers = self.pool(cluster, run)
        schedds, startds = pool.get("Scheduler", []), pool.get("Machine", [])
        hosts = {m.split()[0].rpartition("@")[2] for m in startds}
        problems = []
        if not schedds:
            problems.append("the collector lists no schedd")
        if len(hosts) < workers:
            problems.append(f"the collector lists {len(hosts)} startd host(s), {workers} worker(s) expected")
        if problems:
            raise VerificationFailed("htcondor: " + "; ".join(problems))
        return Verified(
            f"htcondor: apps {', '.join(ok)} healthy; collector lists {len(schedds)} schedd(s), "
            f"{len(hosts)} startd host(s)",
            {"schedds": float(len(schedds)), "startd_hosts": float(len(hosts))},
        )

    def load(self, cluster: Cluster) -> Load:
        """Idle jobs (schedd ads) and idle/claimed startds from the collector; needs a runner (the collector is
        asked from a master node over SSH).

        The collector does not carry the idle jobs' RequestCpus: each counts as one CPU, the size of the slots
        DODAS workers offer (SLOT_TYPE_1 cpus=1).
        """
        if self.runner is None:
            raise RuntimeError("HTCondorOnMesos.load needs runner= (commands run on a master node over SSH)")
        pool, _ = self.pool(cluster, self.runner)
        waiting = idle_jobs(pool.get("Scheduler", []))
        return load_from_pool(pool.get("Machine", []), [1] * waiting, cluster.name_of)


def _list(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [v for v in str(value or "").replace(",", " ").split() if v]
