"""Spark on Mesos (indigo-dc.spark-mesos, reference c.4): the Spark Mesos dispatcher (or Zeppelin) as a Marathon
app; the smoke check submits SparkPi in cluster mode through the dispatcher's REST port from a master node, then
asks the driver's status (`spark-submit --status`, as Spark's REST submission client does) until it ends."""

from __future__ import annotations

import json
import re
import time
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


_STATUS = r"""out=$("$DODAS_RUNTIME" run --rm --network host "$SPARK_IMAGE" /opt/spark/bin/spark-submit \
    --master "mesos://$DISPATCHER" --status "$SUBMISSION" 2>&1) || { echo "$out" >&2; exit 1; }
printf '%s\n' "$out"
"""

# driverState values that end a driver badly: the standalone master's (FAILED, ERROR, KILLED) and the Mesos
# dispatcher's NOT_FOUND; the Mesos dispatcher reports every ended driver as FINISHED with the Mesos task's
# status (`state: TASK_FAILED` …) in its message, so FINISHED counts only when that task state is TASK_FINISHED.
FAILED_STATES = frozenset({"FAILED", "ERROR", "KILLED", "NOT_FOUND", "UNKNOWN"})


def submission_id(output: str) -> str:
    """The submissionId of a CreateSubmissionResponse spark-submit printed, or '' when it was refused."""
    response = _response(output, "CreateSubmissionResponse")
    return str(response.get("submissionId") or "") if response.get("success") is True else ""


def driver_status(output: str) -> tuple[str, str]:
    """(driverState, message) of the SubmissionStatusResponse spark-submit --status printed."""
    response = _response(output, "SubmissionStatusResponse")
    return str(response.get("driverState") or ""), str(response.get("message") or "")


def _response(output: str, kind: str) -> dict[str, Any]:
    """The JSON the REST client logged after 'Server responded with <kind>:' (the last one), else {}."""
    marker = f"Server responded with {kind}:"
    at = output.rfind(marker)
    start = output.find("{", at) if at >= 0 else -1
    if start < 0:
        return {}
    try:
        found, _ = json.JSONDecoder().raw_decode(output[start:])
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


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

    def __init__(self, *, runtime: str = "docker", driver_timeout: float = 600, **kwargs: Any) -> None:
        """driver_timeout: how long verify waits for the SparkPi driver to finish (`frameworks.spark-mesos.
        driver_timeout`); its status is asked every `poll_seconds`."""
        super().__init__(**kwargs)
        self.runtime = runtime
        self.driver_timeout = driver_timeout

    def apps(self, role: str, props: Mapping[str, Any], context: DeployContext) -> list[dict[str, Any]]:
        if props.get("spark_mesos_deploy_app", "spark-dispatcher") != "spark-dispatcher":
            raise VerificationFailed("only spark_mesos_deploy_app=spark-dispatcher is supported (no Zeppelin yet)")
        return [dispatcher_app(props)]

    def verify(self, cluster: Cluster, run: Runner) -> Verified:
        """SparkPi in cluster mode through the dispatcher Marathon placed; passes only when its driver ended
        with the Mesos task FINISHED (a dispatcher that accepts a job it cannot run fails here)."""
        self.check_apps(cluster, run)
        master = self.master(cluster)
        app = self.client(run, master).app("spark-dispatcher") or {}
        host = (app.get("tasks") or [{}])[0].get("host", "")
        if not host:
            raise VerificationFailed("spark-mesos: Marathon reports no running spark-dispatcher task")
        where = f"{host}:7077"
        env = {"DODAS_RUNTIME": self.runtime, "SPARK_IMAGE": IMAGE, "DISPATCHER": where}
        result = run(master, Script("spark-mesos-pi", env, _SUBMIT))
        driver = submission_id(result.stdout) if result.exit_status == 0 else ""
        if not driver:
            raise VerificationFailed(
                f"spark-mesos: SparkPi submission through {where} failed: "
                f"{(result.stderr or result.stdout).strip()[-300:]}"
            )
        started = time.monotonic()
        while True:
            status = run(master, Script("spark-mesos-status", {**env, "SUBMISSION": driver}, _STATUS))
            if status.exit_status != 0:
                raise VerificationFailed(
                    f"spark-mesos: status of SparkPi driver {driver} from {where} failed: "
                    f"{(status.stderr or status.stdout).strip()[-300:]}"
                )
            state, message = driver_status(status.stdout)
            task = re.search(r"\bstate: (TASK_[A-Z_]+)", message)
            if state == "FINISHED" and (task is None or task.group(1) == "TASK_FINISHED"):
                waited = time.monotonic() - started
                return Verified(
                    f"dispatcher healthy, SparkPi driver {driver} FINISHED through {where}",
                    {"driver_seconds": waited},
                )
            if state == "FINISHED" or state in FAILED_STATES or not state:
                why = task.group(1) if task else (state or "no SubmissionStatusResponse")
                detail = " ".join(message.split())[-300:] or status.stdout.strip()[-300:]
                raise VerificationFailed(f"spark-mesos: SparkPi driver {driver} on {where} ended {why}: {detail}")
            if time.monotonic() - started >= self.driver_timeout:
                raise VerificationFailed(
                    f"spark-mesos: SparkPi driver {driver} on {where} still {state} after "
                    f"{self.driver_timeout:g} s (frameworks.spark-mesos.driver_timeout)"
                )
            time.sleep(self.poll_seconds)
