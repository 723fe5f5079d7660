"""Parallel provisioning on OpenStack: 50 VMs against 1 VM through GroupProvisioner.start() + poll/finish
(the library under the deployment DAG's provision task), against the HTTP double with 1 s of latency injected on
every server create call, default driver concurrency (`DEFAULT_CONCURRENCY` in dodas_tasks/clouds/base.py).

Prints:
- `figure provision_50_over_1`: wall time (start → all ACTIVE and recorded) of 50 VMs ÷ the same for 1 VM, with a
  negligible boot time so the create calls dominate (IM's 5 at a time would give ≈ 10 here); median of 3 each,
  runs alternating.
- `figure api_calls_per_vm`: HTTP calls the double received during a 50-VM provisioning, per VM (auth, lookups,
  key pair, security groups, creates, polls, finish).
- `figure api_calls_per_vm_per_minute_waiting`: calls per VM per minute while 50 VMs sit in BUILD for
  BOOT_S seconds (poll every second, like ServersReadyTrigger).
- `figure undeploy_api_calls_per_vm`: calls per VM to delete them all, key pair and security groups included.

Run: .venv/bin/python bench/provision_openstack.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TMP = tempfile.mkdtemp(prefix="dodas-bench-openstack-")
os.environ.update(AIRFLOW_HOME=f"{TMP}/airflow", DODAS_HOME=f"{TMP}/dodas", DODAS_OPENSTACK_CONN_ID="os_bench")
sys.path.insert(0, str(REPO))

CREATE_LATENCY_S = 1.0
BOOT_S = float(os.environ.get("BENCH_BOOT_S", "20"))
POLL_S = 1.0  # ServersReadyTrigger's poll interval
TEMPLATE = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  inputs:
    count: {type: integer, default: 1}
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: {get_input: count}}}
        host: {properties: {num_cpus: 1, mem_size: 512 MB}}
"""


def provision(double, count: int) -> tuple[float, str, dict[str, float]]:
    """Seconds from start() to finish() for `count` VMs; the deployment id; call counts by phase."""
    from dodas_tasks.clouds.base import BUILD
    from dodas_tasks.deploy import service
    from dodas_tasks.deploy.provision import GroupProvisioner
    from dodas_tasks.store import Store

    with Store() as store:
        deployment = service.submit(store, TEMPLATE, {"count": count}, cloud="openstack")
        double.reset_calls()
        began = time.monotonic()
        provisioner = GroupProvisioner(store, deployment, "vm", log=lambda _: None)
        pending = provisioner.start().pending
        started, calls_started = time.monotonic(), double.calls()
        while BUILD in GroupProvisioner(store, deployment, "vm", log=lambda _: None).poll(pending).values():
            time.sleep(POLL_S)  # the trigger builds a provisioner per poll, as here
        waited, calls_waiting = time.monotonic() - started, double.calls() - calls_started
        ready = provisioner.finish(pending)
        elapsed = time.monotonic() - began
        assert len(ready) == count, ready
        counts = {"total": double.calls(), "waiting": calls_waiting, "waited_s": waited}
    return elapsed, deployment, counts


def undeploy(double, deployment: str) -> int:
    from dodas_tasks.deploy import service
    from dodas_tasks.deploy.provision import GroupProvisioner
    from dodas_tasks.naming import key_pair_name
    from dodas_tasks.store import Store

    double.reset_calls()
    with Store() as store:
        service.request_undeploy(store, deployment)
        provisioner = GroupProvisioner(store, deployment, "vm", log=lambda _: None)
        provisioner.start()
        provisioner.driver.delete_key_pair(key_pair_name(deployment))  # as finalize does after the last group
    return double.calls()


def main() -> None:
    from tests.openstack_double import OpenStackDouble

    with OpenStackDouble() as double:
        os.environ["AIRFLOW_CONN_OS_BENCH"] = double.connection_json("password", default_image="ubuntu-22.04")
        double.faults.latency["compute.servers.create"] = CREATE_LATENCY_S
        double.behaviour.build_seconds = 0.0
        double.behaviour.delete_seconds = 0.0
        undeploy(double, provision(double, 1)[1])  # warm-up: imports, token, flavors, networks
        times: dict[int, list[float]] = {1: [], 50: []}
        calls_50, undeploy_50 = [], []
        for _ in range(3):
            for count in (1, 50):
                elapsed, deployment, counts = provision(double, count)
                times[count].append(elapsed)
                if count == 50:
                    calls_50.append(counts["total"] / count)
                    undeploy_50.append(undeploy(double, deployment) / count)
                else:
                    undeploy(double, deployment)
        one, fifty = statistics.median(times[1]), statistics.median(times[50])
        print(f"1 VM: {one:.2f} s (runs {[round(t, 2) for t in times[1]]})")
        print(f"50 VMs: {fifty:.2f} s (runs {[round(t, 2) for t in times[50]]})")

        double.behaviour.build_seconds = BOOT_S  # waiting: 50 VMs booting for BOOT_S seconds
        _, deployment, counts = provision(double, 50)
        per_vm_minute = counts["waiting"] / 50 / (counts["waited_s"] / 60)
        print(f"waiting {counts['waited_s']:.1f} s: {counts['waiting']} calls for 50 VMs")
        undeploy(double, deployment)
        assert double.inventory() == dict.fromkeys(double.inventory(), 0), double.inventory()

        print(f"figure provision_50_over_1 = {fifty / one:.2f}")
        print(f"figure api_calls_per_vm = {statistics.median(calls_50):.2f}")
        print(f"figure api_calls_per_vm_per_minute_waiting = {per_vm_minute:.2f}")
        print(f"figure undeploy_api_calls_per_vm = {statistics.median(undeploy_50):.2f}")


if __name__ == "__main__":
    from dodas_tasks.devstack.interrupts import exit_on_signals

    with exit_on_signals():  # SIGTERM (a time limit), SIGINT, SIGHUP: main's finally blocks stop what it started
        main()
