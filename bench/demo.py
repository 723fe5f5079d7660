"""End to end: submission → CREATE_COMPLETE through a running Airflow, against the same steps run by a plain script.

The direct script boots 3 local-cloud VMs, starts the Spark master, then 2 workers, then runs SparkPi, over the
same SSH path, with no Airflow and no store. Runs alternate (direct, Airflow, ...), median of 2 each.
Prints `figure demo_over_direct`, and `figure demo_cold_start_s`: Airflow cold start (migrate + 4 components
healthy) plus the first deployment to CREATE_COMPLETE, i.e. what `dodas demo` costs from nothing.
Run: .venv/bin/python bench/demo.py
"""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TMP = tempfile.mkdtemp(prefix="dodas-bench-demo-")
os.environ["AIRFLOW_HOME"] = f"{TMP}/airflow"
os.environ["DODAS_AIRFLOW_PORT"] = os.environ.get("DODAS_AIRFLOW_PORT", "18231")
sys.path.insert(0, str(REPO))


def direct(runtime_env=None) -> float:
    """Boot, start master, start workers, SparkPi: the deployment's steps without Airflow. runtime_env: the nodes'
    Java/Spark environment (runtime.spark_env by default; bench/spark_jvm.py varies its JVM options)."""
    from dodas_tasks.clouds.base import ACTIVE, Flavor, ServerSpec
    from dodas_tasks.clouds.local import LocalCloud
    from dodas_tasks.configure import NodeTarget, generate_keypair, run_script
    from dodas_tasks.frameworks.base import Cluster, Node, ScriptResult
    from dodas_tasks.frameworks.spark import SparkStandalone

    cloud, keys, known = LocalCloud(), generate_keypair(), {}
    start = time.perf_counter()
    cloud.import_key_pair("bench-direct", keys.public_openssh)
    specs = [
        ServerSpec(
            f"bench-direct-{i}", Flavor(1, 1024), "img", "bench-direct", keys.public_openssh, {"bench": "direct"}
        )
        for i in range(3)
    ]
    with ThreadPoolExecutor(3) as pool:
        servers = list(pool.map(cloud.create_server, specs))
    while any((cloud.get_server(s.id) or s).status != ACTIVE for s in servers):
        time.sleep(0.2)
    servers = [cloud.get_server(s.id) for s in servers]
    nodes = [Node(s.name, s.private_ip, cpus=1, memory_mb=1024) for s in servers]
    ports = {s.private_ip: s.ssh_port for s in servers}
    cluster = Cluster({"master": (nodes[0],), "worker": tuple(nodes[1:])})
    options = {"runtime_env": runtime_env} if runtime_env else {}
    spark = SparkStandalone(auth_secret=secrets.token_urlsafe(32), **options)  # as a deployment's own secret

    def run(node: Node, script) -> ScriptResult:
        r = run_script(
            NodeTarget(node.name, node.ip, ports[node.ip]),
            script.body,
            env=dict(script.env),
            private_key=keys.private_openssh,
            known_hosts=known,
            check=True,
        )
        return ScriptResult(r.exit_code, r.stdout, r.stderr)

    def configure(node: Node, role: str) -> None:
        run(node, spark.install_script(node))
        run(node, spark.configure_script(role, node, cluster))

    try:
        configure(nodes[0], "master")
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda n: configure(n, "worker"), nodes[1:]))
        spark.verify(cluster, run)
        return time.perf_counter() - start
    finally:
        for s in servers:
            cloud.delete_server(s.id)
        cloud.delete_key_pair("bench-direct")


def through_airflow(stack) -> float:
    from dodas_tasks import demo

    start = time.perf_counter()
    deployment_id = demo.submit(stack, {"template": "spark_local.yaml", "inputs": {"number_of_workers": 2}}, print)
    try:
        status = demo.watch(deployment_id, lambda _line: None)
        elapsed = time.perf_counter() - start
        assert status == "CREATE_COMPLETE", status
        return elapsed
    finally:  # leave nothing behind, whatever happened
        since = demo.last_event_id(deployment_id)
        demo.undeploy(stack, deployment_id)
        demo.watch(deployment_id, lambda _line: None, until={"DELETE_COMPLETE", "DELETE_FAILED"}, since=since)


def main() -> None:
    from dodas_tasks import demo

    stack = demo.stack()
    cold = time.perf_counter()
    demo.ensure_running(stack, print)
    started = time.perf_counter() - cold
    try:
        first = through_airflow(stack)
        print(f"figure demo_cold_start_s = {started + first:.1f}  (Airflow start {started:.1f} s + first deployment)")
        d, a = [], []
        for _ in range(2):
            d.append(direct())
            a.append(through_airflow(stack))
        print(f"direct {statistics.median(d):.1f} s, through Airflow {statistics.median(a):.1f} s")
        print(f"figure demo_direct_s = {statistics.median(d):.1f}")
        print(f"figure demo_airflow_s = {statistics.median(a):.1f}")
        print(f"figure demo_over_direct = {statistics.median(a) / statistics.median(d):.3f}")
    finally:
        stack.stop()


if __name__ == "__main__":
    from dodas_tasks.devstack.interrupts import exit_on_signals

    with exit_on_signals():  # SIGTERM (a time limit), SIGINT, SIGHUP: main's finally blocks stop what it started
        main()
