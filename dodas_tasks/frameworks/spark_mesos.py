"""Spark on Mesos (indigo-dc.spark-mesos, reference c.4): the Spark Mesos dispatcher (or Zeppelin) as a Marathon
app; the smoke check submits SparkPi through the dispatcher's REST port from a master node."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dodas_tasks.frameworks.base import Cluster, DeployContext, Runner, Script, VerificationFailed, Verified
from dodas_tasks.frameworks.marathon_apps import MarathonFramework, docker, http_check, text

IMAGE = "marica/spark-mesos"


def spark_memory(value: Any) -> str:
    """'2 GB' (TOSCA size) -> '2g' (Spark); '0 GB' or empty -> '' (Spark's default)."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]i?B?)?\s*", str(value or ""), re.IGNORECASE)
    if not match or float(match.group(1)) == 0:
        return ""
    unit = (match.group(2) or "M")[0].lower()
    return f"{int(float(match.group(1)))}{unit}"


def dispatcher_app(props: Mapping[str, Any]) -> dict[str, Any]:
    peers = props.get("zookeeper_peers") or []
    zk = ",".join(f"{ip}:2181" for ip in (peers if isinstance(peers, list) else str(peers).split(",")))
    cmd = (
        "/opt/spark/bin/spark-class org.apache.spark.deploy.mesos.MesosClusterDispatcher "
        f"--port $PORT0 --webui-port $PORT1 --master mesos://zk://{zk}/mesos --zk {zk} --name spark"
    )
    env = {"SPARK_MESOS_EXECUTOR_DOCKER_IMAGE": IMAGE}
    for prop, var in (("spark_executor_mem", "SPARK_EXECUTOR_MEMORY"), ("spark_driver_mem", "SPARK_DRIVER_MEMORY")):
        if spark_memory(props.get(prop)):
            env[var] = spark_memory(props.get(prop))
    for prop, var in (("spark_cores_max", "SPARK_CORES_MAX"), ("spark_executor_cores", "SPARK_EXECUTOR_CORES")):
        if int(props.get(prop, -1) or -1) > 0:
            env[var] = text(props[prop])
    return {
        "id": "/spark-dispatcher",
        "instances": 1,
        "cpus": 2.0,
        "mem": 2048.0,
        "cmd": cmd,
        "container": docker(IMAGE, network="HOST"),
        "portDefinitions": [{"port": 7077, "name": "dispatcher"}, {"port": 8081, "name": "ui"}],
        "requirePorts": True,
        "labels": {"HAPROXY_GROUP": "external"},
        "env": env,
        "healthChecks": [http_check("/", port_index=1, protocol="HTTP")],
    }


_SUBMIT = r"""out=$("$DODAS_RUNTIME" run --rm --network host "$SPARK_IMAGE" /opt/spark/bin/spark-submit \
    --deploy-mode cluster --master "mesos://$DISPATCHER" --class org.apache.spark.examples.SparkPi \
    /opt/spark/examples/jars/spark-examples.jar 10 2>&1) || { echo "$out" >&2; exit 1; }
printf '%s\n' "$out"
"""


class SparkOnMesos(MarathonFramework):
    """The Spark Mesos dispatcher on Marathon; verify submits SparkPi in cluster mode through it."""

    name = "spark-mesos"
    roles = ("services",)
    app_ids = ("spark-dispatcher",)

    def __init__(self, *, runtime: str = "docker", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime

    def apps(self, role: str, props: Mapping[str, Any], context: DeployContext) -> list[dict[str, Any]]:
        if props.get("spark_mesos_deploy_app", "spark-dispatcher") != "spark-dispatcher":
            raise VerificationFailed("only spark_mesos_deploy_app=spark-dispatcher is supported (no Zeppelin yet)")
        return [dispatcher_app(props)]

    def verify(self, cluster: Cluster, run: Runner) -> Verified:
        self.check_apps(cluster, run)
        app = self.client(run, self.master(cluster)).app("spark-dispatcher") or {}
        host = (app.get("tasks") or [{}])[0].get("host", "")
        env = {"DODAS_RUNTIME": self.runtime, "SPARK_IMAGE": IMAGE, "DISPATCHER": f"{host}:7077"}
        result = run(self.master(cluster), Script("spark-mesos-pi", env, _SUBMIT))
        if result.exit_status != 0 or "submissionId" not in result.stdout:
            raise VerificationFailed(
                f"spark-mesos: SparkPi submission through {host}:7077 failed: "
                f"{(result.stderr or result.stdout).strip()[-300:]}"
            )
        return Verified(f"spark-mesos: dispatcher healthy, SparkPi accepted by {host}:7077")
