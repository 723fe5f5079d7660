"""Spark standalone (master + workers, no Mesos): the framework deployed on the embedded local cloud.

An open standalone master runs anyone's code on every worker, so a cluster runs with `spark.authenticate` and a
secret of its deployment (every RPC between master, workers, drivers and executors proves it), without the REST
submission server, and with every daemon and web UI bound to its node's private address. The secret lives in each
node's `spark-defaults.conf` (mode 0600), so a driver started on the master needs no flag; drivers elsewhere are
given it (`spark.authenticate.secret`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from importlib import metadata

from dodas_tasks.configure.scripts import packaged_script
from dodas_tasks.frameworks.base import (
    Cluster,
    Framework,
    Load,
    Node,
    Reach,
    Runner,
    Script,
    VerificationFailed,
    Verified,
    direct,
)
from dodas_tasks.frameworks.spark.state import read_load
from dodas_tasks.runtime import spark_env

_PI_LINE = re.compile(r"Pi is roughly (\d+\.\d+)")


def _body(name: str) -> str:
    """A script body: the shared functions, then the named script."""
    return packaged_script(__package__, name)


def worker_memory_mb(node: Node) -> int:
    """Memory a worker offers: the node's memory minus 1 GiB for the OS and daemons (Spark's own rule),
    but at least 512 MB (one default executor) and never more than the node has."""
    return min(node.memory_mb, max(node.memory_mb - 1024, 512))


def parse_pi(output: str) -> float:
    """The value from SparkPi's "Pi is roughly 3.14..." line; VerificationFailed if absent or implausible."""
    match = _PI_LINE.search(output)
    if match is None:
        raise VerificationFailed(f"SparkPi printed no 'Pi is roughly' line; it printed: {output.strip()[-300:]!r}")
    pi = float(match.group(1))
    if not 3.0 < pi < 3.3:
        raise VerificationFailed(f"SparkPi computed pi = {pi}, outside (3.0, 3.3): the cluster computes wrongly")
    return pi


class SparkStandalone(Framework):
    """Spark standalone: one master (role "master") and workers (role "worker") bound to their node IPs."""

    name = "spark-standalone"
    roles = ("master", "worker")

    def __init__(
        self,
        *,
        master_port: int = 7077,
        master_webui_port: int = 8080,
        worker_webui_port: int = 8081,
        wait_seconds: int = 300,
        drain_seconds: int = 60,
        verify_executor_memory_mb: int = 512,
        verify_partitions: int = 10,
        runtime_env: Callable[[], Mapping[str, str]] = spark_env,
        reach: Reach = direct,
        auth_secret: str | None = None,
    ) -> None:
        """reach: how this process opens the master's web UI (through the SSH jump hosts of the deployment).
        auth_secret: the deployment's Spark secret (required to configure nodes; reading the load needs none)."""
        self.master_port = master_port
        self.master_webui_port = master_webui_port
        self.worker_webui_port = worker_webui_port
        self.wait_seconds = wait_seconds
        self.drain_seconds = drain_seconds
        self.verify_executor_memory_mb = verify_executor_memory_mb
        self.verify_partitions = verify_partitions
        self._runtime_env = runtime_env
        self._reach = reach
        self._runtime: dict[str, str] | None = None
        self._auth_secret = auth_secret

    def _env(self, node: Node, **extra: object) -> dict[str, str]:
        if self._runtime is None:  # found once: finding Java runs `java -version`
            self._runtime = dict(self._runtime_env())
        env = dict(self._runtime)
        env.update(NODE_IP=node.ip, DODAS_WAIT_SECONDS=str(self.wait_seconds))
        env.update({key: str(value) for key, value in extra.items()})
        return env

    def _master_env(self, cluster: Cluster) -> dict[str, object]:
        return {
            "SPARK_MASTER_IP": cluster.single("master").ip,
            "SPARK_MASTER_PORT": self.master_port,
            "SPARK_MASTER_WEBUI_PORT": self.master_webui_port,
        }

    def install_script(self, node: Node) -> Script:
        """Checks Java and Spark on the node: on the local cloud they come from the shared venv."""
        env = self._env(node, SPARK_VERSION=metadata.version("pyspark"))
        return Script("spark-install-check", env, _body("install.sh"))

    def _auth_env(self) -> dict[str, str]:
        if not self._auth_secret:
            raise ValueError("Spark standalone runs with authentication: give auth_secret (the deployment's secret)")
        return {"SPARK_AUTH_SECRET": self._auth_secret}

    def configure_script(self, role: str, node: Node, cluster: Cluster) -> Script:
        """Writes the node's spark-defaults.conf (authentication on, no REST server), then starts the master, or a
        worker with the node's cores and memory pointed at the cluster's master."""
        self.check_role(role)
        if role == "master":
            env = self._env(
                node,
                SPARK_MASTER_PORT=self.master_port,
                SPARK_MASTER_WEBUI_PORT=self.master_webui_port,
                **self._auth_env(),
            )
            return Script("spark-master", env, _body("master.sh"))
        env = self._env(
            node,
            **self._master_env(cluster),
            **self._auth_env(),
            SPARK_WORKER_CORES=max(node.cpus, 1),
            SPARK_WORKER_MEMORY_MB=worker_memory_mb(node),
            SPARK_WORKER_WEBUI_PORT=self.worker_webui_port,
        )
        return Script("spark-worker", env, _body("worker.sh"))

    def stop_script(self, role: str, node: Node, cluster: Cluster, *, drain: bool = True) -> Script:
        """Stops the role; a worker is decommissioned first (SIGPWR) and given drain_seconds to finish."""
        self.check_role(role)
        extra: dict[str, object] = {"SPARK_ROLE": role, "SPARK_DRAIN_SECONDS": self.drain_seconds if drain else 0}
        if role == "worker":
            extra.update(self._master_env(cluster))
        return Script(f"spark-stop-{role}", self._env(node, **extra), _body("stop.sh"))

    def verify_script(self, cluster: Cluster) -> Script:
        """SparkPi submitted from the master node to the master, its executors small enough for every worker; it
        authenticates with the master node's spark-defaults.conf, as a user's driver started there does."""
        master = cluster.single("master")
        worker_memory = [worker_memory_mb(worker) for worker in cluster.nodes("worker")]
        env = self._env(
            master,
            **self._master_env(cluster),
            SPARK_VERIFY_EXECUTOR_MEMORY_MB=min([self.verify_executor_memory_mb, *worker_memory]),
            SPARK_VERIFY_PARTITIONS=self.verify_partitions,
        )
        return Script("spark-verify", env, _body("verify.sh"))

    def verify(self, cluster: Cluster, run: Runner) -> Verified:
        """Runs SparkPi on the cluster; its pi must be within (3.0, 3.3)."""
        started = time.monotonic()
        result = run(cluster.single("master"), self.verify_script(cluster))
        seconds = time.monotonic() - started
        if result.exit_status != 0:  # the script's own "error: ..." line says why; the log tail is in the task log
            lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith("error:")]
            reason = (errors or lines or [f"exit status {result.exit_status}"])[-1].removeprefix("error:").strip()
            raise VerificationFailed(f"SparkPi on {cluster.single('master').name}: {reason}")
        pi = parse_pi(result.stdout)
        return Verified(f"SparkPi: pi is roughly {pi} ({seconds:.1f} s)", {"pi": pi, "seconds": seconds})

    def membership_check(self, cluster: Cluster) -> Verified:
        """The master lists every worker ALIVE (each worker's start waited for that; this confirms it still holds)."""
        workers = sorted(node.name for node in cluster.nodes("worker"))
        try:
            alive = set(self.load(cluster).healthy_nodes)
        except Exception as exc:
            raise VerificationFailed(
                f"the Spark master {cluster.single('master').name} does not answer: {exc}"
            ) from exc
        missing = [name for name in workers if name not in alive]
        if missing:
            raise VerificationFailed(f"the Spark master does not list worker(s) {', '.join(missing)} as ALIVE")
        return Verified(f"all {len(workers)} worker(s) ALIVE on the master (SparkPi passed with this master)")

    def outputs(self, cluster: Cluster) -> dict[str, str]:
        """The master URL for spark-submit and the master's web UI."""
        ip = cluster.single("master").ip
        return {
            "spark_master_url": f"spark://{ip}:{self.master_port}",
            "spark_webui_url": f"http://{ip}:{self.master_webui_port}",
        }

    def load(self, cluster: Cluster) -> Load:
        """Workers idle/busy/healthy and cores still wanted, read from the master's web UI."""
        with self._reach(cluster.single("master"), self.master_webui_port) as (host, port):
            return read_load(host, port, cluster.name_of)
