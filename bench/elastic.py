"""Elasticity and healing under a real Airflow (scheduler + triggerer + dag-processor + api-server) on loopback.

Figures:
- scale_out_p50_s / scale_out_p95_s: a Spark app starts waiting (fake master /json/) → the elasticity DAG has
  recorded the scale-out and requested the deployment DAG run (the `scale` event), 20 trials, 20 deployments.
- reaction_p95_at_200_s: the same with 200 elastic deployments watched at once (20 trials), plus the CPU of the
  triggerer and scheduler (% of one core, averaged over the measuring window): triggerer_cpu_pct_at_200,
  scheduler_cpu_pct_at_200.
- heal_detect_s (`--only heal`, its own run): a node's VM killed (real local-cloud server) → healing has marked it
  ERROR and asked for its replacement (`replacing` event), with the default settings (grace 60 s, which a VM the
  cloud reports lost does not wait; the healing DAG every 30 s), median of 5 kills at random moments of the cycle.
Every load comes from a fake Spark master per deployment: one HTTP server process answering on 200 loopback IPs.
Deployment DAGs are stubs (one no-op task) so that only the elasticity machinery is measured, with the default
settings (poll_interval 2 s, backlog_window 5 s). Run: .venv/bin/python bench/elastic.py [--deployments 200]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TMP = Path(tempfile.mkdtemp(prefix="dodas-bench-elastic-"))
os.environ.update(DODAS_HOME=str(TMP / "dodas"), AIRFLOW_HOME=str(TMP / "airflow"))
sys.path.insert(0, str(REPO))

TEMPLATE = (REPO / "templates" / "spark_local_elastic.yaml").read_text()
PLAIN = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: 1}}
        host: {properties: {num_cpus: 1, mem_size: 512 MB}}
"""
STUB_DAGS = """
from datetime import datetime, UTC
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator
from dodas_tasks.naming import deployment_dag_id
from dodas_tasks.store import Store
with Store() as store:
    for dep in store.list_deployments(live_only=True):
        with DAG(deployment_dag_id(dep.id), schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC), catchup=False,
                 is_paused_upon_creation=False, max_active_runs=1) as d:
            EmptyOperator(task_id="reconcile")
        globals()[d.dag_id] = d
"""
FAKE_PORT = 8080


# -- the fake Spark masters: one process, one listener per loopback IP ---------------------------------------


def fake_masters(ips: list[str]) -> None:
    """Serve /json/ and /app/ for each IP; POST /want?cores=N makes an app wait for N cores (0: none)."""
    wants: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _reply(self, body: str, kind: str = "application/json") -> None:
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            ip = self.server.server_address[0]
            cores = wants.get(ip, 0)
            worker_ip = ip.rsplit(".", 1)[0] + "." + str(int(ip.rsplit(".", 1)[1]) + 1)
            if self.path.startswith("/app/"):
                return self._reply(f"<strong>Cores:</strong> {cores} (0 granted, {cores} left)", "text/html")
            apps = [{"id": "app-1", "state": "WAITING", "cores": 0}] if cores else []
            workers = [{"host": worker_ip, "state": "ALIVE", "cores": 1, "coresused": 0}]
            return self._reply(json.dumps({"workers": workers, "activeapps": apps}))

        def do_POST(self) -> None:
            ip = self.server.server_address[0]
            wants[ip] = int(self.path.split("cores=")[1])
            self._reply("{}")

    for ip in ips:
        server = ThreadingHTTPServer((ip, FAKE_PORT), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def want(ip: str, cores: int) -> None:
    import httpx

    httpx.post(f"http://{ip}:{FAKE_PORT}/want?cores={cores}", timeout=10).raise_for_status()


# -- deployments recorded directly in the store ------------------------------------------------------------------


def make_deployments(store, count: int, start: int) -> list[tuple[str, str]]:
    """Elastic Spark deployments (CREATE_COMPLETE) whose master is a fake at 127.79.<i>.1: [(id, master ip)]."""
    from dodas_tasks.deploy import service
    from dodas_tasks.store import DeploymentStatus, NodeState

    made = []
    for i in range(start, start + count):
        # fake nodes have no VM: the scaling runs leave the healing DAG out (a huge grace would not help: a VM the
        # cloud does not know is lost, and lost VMs are replaced at once)
        deployment_id = service.submit(store, TEMPLATE, {"min_workers": 1, "max_workers": 4}, options={"grace": 1e9})
        master_ip, worker_ip = f"127.79.{i // 100}.{(i % 100) * 2 + 1}", f"127.79.{i // 100}.{(i % 100) * 2 + 2}"
        for group, ip in (("spark-master-server", master_ip), ("spark-worker-server", worker_ip)):
            store.upsert_node(deployment_id, group, 0, state=NodeState.STARTED, private_ip=ip, cloud_id=f"fake-{ip}")
        store.set_status(deployment_id, DeploymentStatus.CREATE_COMPLETE)
        made.append((deployment_id, master_ip))
    return made


def scale_event_after(store, deployment_id: str, after: datetime) -> datetime | None:
    for event in store.list_events(deployment_id, limit=20):
        if event.kind == "scale" and event.time >= after:
            return event.time
    return None


def run_queued_after(stack, deployment_id: str, after: datetime) -> datetime | None:
    """When the deployment DAG's run (asked for by the elasticity DAG) was queued."""
    from dodas_tasks.naming import deployment_dag_id

    runs = stack.rest.api("GET", f"/api/v2/dags/{deployment_dag_id(deployment_id)}/dagRuns")["dag_runs"]
    times = [datetime.fromisoformat(r["queued_at"]) for r in runs if r.get("queued_at")]
    times = [t for t in times if t >= after]
    return min(times) if times else None


def trials(store, stack, deployments: list[tuple[str, str]], count: int) -> tuple[list[float], list[float]]:
    """One trial per deployment, staggered 1.5 s: app waits → scale event (decision recorded) and → deployment
    DAG run queued; returns both lists of reaction times."""
    picked = deployments[:count]
    started: dict[str, datetime] = {}
    for deployment_id, ip in picked:
        started[deployment_id] = datetime.now(UTC)
        want(ip, 2)
        time.sleep(1.5)
    reactions: dict[str, float] = {}
    deadline = time.monotonic() + 300
    while len(reactions) < len(picked) and time.monotonic() < deadline:
        for deployment_id, _ in picked:
            if deployment_id not in reactions:
                seen = scale_event_after(store, deployment_id, started[deployment_id])
                if seen:
                    reactions[deployment_id] = (seen - started[deployment_id]).total_seconds()
        time.sleep(0.5)
    runs: dict[str, float] = {}
    while len(runs) < len(reactions) and time.monotonic() < deadline:
        for deployment_id in reactions:
            if deployment_id not in runs:
                queued = run_queued_after(stack, deployment_id, started[deployment_id])
                if queued:
                    runs[deployment_id] = (queued - started[deployment_id]).total_seconds()
        time.sleep(1)
    for _, ip in picked:
        want(ip, 0)
    if len(reactions) < len(picked):
        print(f"warning: {len(picked) - len(reactions)} trial(s) saw no decision within 300 s", file=sys.stderr)
    return sorted(reactions.values()), sorted(runs.values())


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def cpu_percent(stack, window: float) -> dict[str, float]:
    import psutil

    procs = {}
    for name, record in json.loads(stack.pid_file.read_text())["components"].items():
        if name in ("triggerer", "scheduler"):
            leader = psutil.Process(record["pid"])
            procs[name] = [leader, *leader.children(recursive=True)]

    def total(ps: list) -> float:
        sum_ = 0.0
        for p in ps:
            try:
                t = p.cpu_times()
                sum_ += t.user + t.system
            except psutil.Error:
                pass
        return sum_

    before = {k: total(v) for k, v in procs.items()}
    time.sleep(window)
    return {k: 100 * (total(procs[k]) - before[k]) / window for k in procs}


def heal_detection(store, stack, repeats: int = 5) -> list[float]:
    from dodas_tasks.clouds.base import Flavor, ServerSpec
    from dodas_tasks.clouds.local import LocalCloud
    from dodas_tasks.configure import generate_keypair
    from dodas_tasks.deploy import service
    from dodas_tasks.naming import server_tags
    from dodas_tasks.store import DeploymentStatus, NodeState

    cloud, results = LocalCloud(), []
    for _ in range(repeats):
        deployment_id = service.submit(store, PLAIN, {})
        key = generate_keypair()
        spec = ServerSpec(
            name="bench",
            flavor=Flavor(cpus=1, mem_mb=512),
            image="local",
            key_name="",
            public_key=key.public_openssh,
            tags=server_tags(deployment_id, "vm", 0),
        )
        server = cloud.create_server(spec)
        while (server := cloud.get_server(server.id)).status == "BUILD":
            time.sleep(0.2)
        store.upsert_node(
            deployment_id,
            "vm",
            0,
            state=NodeState.STARTED,
            cloud_id=server.id,
            private_ip=server.private_ip,
            ssh_port=server.ssh_port,
        )
        store.set_status(deployment_id, DeploymentStatus.CREATE_COMPLETE)
        while store.get_node(store.list_nodes(deployment_id)[0].id).last_healthy_at is None:
            time.sleep(0.5)  # healing has seen it healthy
        time.sleep(random.uniform(0, 30))  # a random moment of the healing cycle
        killed = datetime.now(UTC)
        os.kill(cloud.layout.server(server.id).read_state()["pid"], 9)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            hits = [
                e for e in store.list_events(deployment_id, limit=50) if e.kind == "heal" and "replacing" in e.message
            ]
            if hits:
                results.append((hits[0].time - killed).total_seconds())
                break
            time.sleep(0.5)
        cloud.delete_server(server.id)
        store.set_status(deployment_id, DeploymentStatus.DELETE_COMPLETE)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--only", choices=["heal"], help="measure heal detection (its own run: healing DAG on)")
    args = parser.parse_args()
    from dodas_tasks.devstack.local_airflow import AirflowStack
    from dodas_tasks.store import Store

    dags = TMP / "dags"
    dags.mkdir()
    (dags / "stub_deployments.py").write_text(STUB_DAGS)
    # healing only when measuring it: the scaling trials' fake nodes have no VM, and healing replaces lost VMs at once
    for name in ("dodas_elastic.py", "dodas_healing.py") if args.only == "heal" else ("dodas_elastic.py",):
        (dags / name).symlink_to(REPO / "dags" / name)
    ips = [f"127.79.{i // 100}.{(i % 100) * 2 + 1}" for i in range(args.deployments)]
    fake = subprocess.Popen([sys.executable, __file__, "--fake-masters", *ips], stdout=subprocess.PIPE)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stack = AirflowStack(
        TMP / "airflow",
        dags,
        REPO / "plugins",
        port=port,
        parallelism=8,
        extra_env={"AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10"},  # healing: default interval
    )
    os.environ["AIRFLOW__CORE__FERNET_KEY"] = stack.env()["AIRFLOW__CORE__FERNET_KEY"]
    store = Store()
    try:
        assert fake.stdout is not None and fake.stdout.readline().strip() == b"ready"
        if args.only == "heal":
            stack.start()
            heal = heal_detection(store, stack)
            print(f"heal detection times: {heal}")
            print(f"figure heal_detect_s = {statistics.median(heal):.1f}", flush=True)
            return
        first = make_deployments(store, 20, 0)
        stack.start()
        wait_watching(store, stack, first)
        small, small_runs = trials(store, stack, first, 20)
        print(f"figure scale_out_p50_s = {statistics.median(small):.1f}")
        print(f"figure scale_out_p95_s = {p95(small):.1f}")
        print(f"figure scale_out_run_queued_p50_s = {statistics.median(small_runs):.1f}")
        print(f"figure scale_out_run_queued_p95_s = {p95(small_runs):.1f}", flush=True)
        rest = make_deployments(store, args.deployments - 20, 20)
        wait_watching(store, stack, rest)
        cpu = cpu_percent(stack, 60)
        big, big_runs = trials(store, stack, rest, 20)
        print(f"figure reaction_p50_at_{args.deployments}_s = {statistics.median(big):.1f}")
        print(f"figure reaction_p95_at_{args.deployments}_s = {p95(big):.1f}")
        print(f"figure reaction_run_queued_p95_at_{args.deployments}_s = {p95(big_runs):.1f}")
        for name, value in cpu.items():
            print(f"figure {name}_cpu_pct_at_{args.deployments} = {value:.0f}")
    finally:
        stack.stop()
        fake.kill()
        fake.wait()
        store.close()


def wait_watching(store, stack, deployments: list[tuple[str, str]]) -> None:
    """Every elasticity DAG parsed and its watch deferred (its trigger running in the triggerer)."""
    from dodas_tasks.naming import elastic_dag_id

    deadline = time.monotonic() + 600
    pending = {elastic_dag_id(d) for d, _ in deployments}
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            runs = (
                stack.rest.api("GET", f"/api/v2/dags/{name}/dagRuns/~/taskInstances", params={"state": "deferred"})
                if stack.rest.dag_exists(name)
                else {"total_entries": 0}
            )
            if runs["total_entries"]:
                pending.discard(name)
        time.sleep(2)
    if pending:
        raise SystemExit(f"{len(pending)} elasticity DAG(s) never deferred")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--fake-masters":
        fake_masters(sys.argv[2:])
    else:
        from dodas_tasks.devstack.interrupts import exit_on_signals

        with exit_on_signals():  # SIGTERM (a time limit), SIGINT, SIGHUP: main's finally stops the stack
            main()
