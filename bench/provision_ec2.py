"""EC2 provisioning at scale against moto's server, 1 s of injected latency on every RunInstances.

Library level (GroupProvisioner.start() → poll until no VM is BUILD → finish()), the way the deployment DAG's
provision task and its trigger drive it. The latency and the call counts come from the HTTP proxy between boto3
and moto (tests/_moto_fixtures.py). Runs alternate 1 VM / 50 VMs, median of 3, after a warm-up that fills the
per-process caches (client, instance types, image).

Prints `figure ec2_provision_50_over_1`, `figure ec2_api_calls_per_vm` (every EC2 request of the 50-VM pass ÷ 50),
the same ratio at IM's 5-at-a-time, and the waiting cost (one list call per poll for the whole group).
Run: .venv/bin/python bench/provision_ec2.py   (BENCH_REPS=1 for a quick look; LATENCY_S=0 for the overhead alone)
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TMP = tempfile.mkdtemp(prefix="dodas-bench-ec2-")
os.environ.update(AIRFLOW_HOME=f"{TMP}/airflow", DODAS_HOME=f"{TMP}/dodas", AIRFLOW__CORE__LOAD_EXAMPLES="False")
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from _moto_fixtures import UBUNTU_AMI, AwsProxy, MotoServer, ec2_connections  # noqa: E402

LATENCY_S = float(os.environ.get("LATENCY_S", "1.0"))
POLL_INTERVAL_S = 1.0  # ServersReadyTrigger's default
TEMPLATE = f"""
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  inputs:
    count: {{type: integer, default: 1}}
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
      capabilities:
        endpoint: {{properties: {{network_name: PUBLIC, ports: {{web: {{protocol: tcp, source: 8080}}}}}}}}
        scalable: {{properties: {{count: {{get_input: count}}}}}}
        host: {{properties: {{num_cpus: 1, mem_size: 512 MB}}}}
        os: {{properties: {{image: "aws://us-east-1/{UBUNTU_AMI}"}}}}
"""


def provision(count: int, proxy: AwsProxy, concurrency: int | None = None) -> tuple[float, Counter[str]]:
    """Seconds from start() to finish() for `count` VMs, and the EC2 calls made; then deletes them (untimed)."""
    from dodas_tasks.clouds.base import BUILD, get_driver
    from dodas_tasks.deploy import service
    from dodas_tasks.deploy.provision import GroupProvisioner
    from dodas_tasks.store import Store

    with Store() as store:
        deployment_id = service.submit(store, TEMPLATE, {"count": count}, cloud="ec2")
        driver = get_driver("ec2", max_concurrency=concurrency) if concurrency else None
        proxy.calls.clear()
        start = time.perf_counter()
        provisioner = GroupProvisioner(store, deployment_id, "vm", log=lambda _: None, driver=driver)
        pending = provisioner.start().pending
        while True:
            # like the trigger: a fresh provisioner (and driver) per poll
            statuses = GroupProvisioner(store, deployment_id, "vm", log=lambda _: None).poll(pending)
            if BUILD not in statuses.values():
                break
            time.sleep(POLL_INTERVAL_S)
        ready = provisioner.finish(pending)
        elapsed = time.perf_counter() - start
        calls = Counter(proxy.calls)
        assert len(ready) == count, ready
        service.request_undeploy(store, deployment_id)
        GroupProvisioner(store, deployment_id, "vm", log=lambda _: None).start()
    return elapsed, calls


def main() -> None:
    from dodas_tasks.clouds.base import DEFAULT_CONCURRENCY

    logging.disable(logging.INFO)
    moto = MotoServer().start()
    proxy = AwsProxy(moto.url).start()
    try:
        with ec2_connections(moto, proxy) as conns:
            os.environ["DODAS_EC2_CONN_ID"] = conns["proxy"]
            proxy.latency["RunInstances"] = LATENCY_S
            provision(1, proxy)  # warm-up: client, instance types and image are cached per process
            one, fifty, calls = [], [], Counter()
            for _ in range(int(os.environ.get("BENCH_REPS", "3"))):
                one.append(provision(1, proxy)[0])
                elapsed, calls = provision(50, proxy)
                fifty.append(elapsed)
            im_like = provision(50, proxy, concurrency=5)[0]
    finally:
        proxy.stop()
        moto.stop()
    a, b = statistics.median(one), statistics.median(fifty)
    per_vm = sum(calls.values()) / 50
    print(
        f"RunInstances latency {LATENCY_S} s: 1 VM {a:.2f} s, "
        f"50 VMs {b:.2f} s ({DEFAULT_CONCURRENCY} at a time), {im_like:.2f} s (5)"
    )
    print("calls for 50 VMs:", dict(sorted(calls.items())))
    print(f"figure ec2_provision_50_over_1 = {b / a:.2f}")
    print(f"figure ec2_api_calls_per_vm = {per_vm:.2f}")
    print(f"figure ec2_provision_50_over_1_at_5 = {im_like / a:.2f}")
    print(f"figure ec2_wait_calls_per_vm_per_min = {60 / POLL_INTERVAL_S / 50:.2f}")


if __name__ == "__main__":
    from dodas_tasks.devstack.interrupts import exit_on_signals

    with exit_on_signals():  # SIGTERM (a time limit), SIGINT, SIGHUP: main's finally blocks stop what it started
        main()
