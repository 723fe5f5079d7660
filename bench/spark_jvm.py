"""The local cloud's JVM options: the CPU it costs to start a Spark cluster and verify it.

bench/demo.py's direct steps (3 local-cloud VMs, the master, 2 workers, SparkPi over SSH) with HotSpot's default tiered
compilation (C1 then C2) and with C1 only (runtime.JVM_OPTIONS), alternating, median of N each. CPU is the machine's
(all cores, /proc/stat), so run it on a quiet machine. Prints `figure spark_cluster_cpu_c1_over_default` and
`figure spark_cluster_wall_c1_over_default`.
Run: .venv/bin/python bench/spark_jvm.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from demo import direct  # same folder: bench/demo.py

from dodas_tasks import runtime

DEFAULT_TIERED = "-XX:-UsePerfData"  # what JVM_OPTIONS was before C1 only


def busy_cpu_s() -> float:
    """CPU seconds the machine has spent busy (all cores) since boot."""
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def with_options(options: str) -> Callable[[], dict[str, str]]:
    return lambda: {**runtime.spark_env(), "JAVA_TOOL_OPTIONS": options}


def measure(options: str) -> tuple[float, float]:
    """(machine CPU seconds, wall seconds) of one cluster start + SparkPi with these JVM options."""
    cpu, wall = busy_cpu_s(), time.perf_counter()
    direct(with_options(options))
    return busy_cpu_s() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    variants = {"default": DEFAULT_TIERED, "c1": runtime.JVM_OPTIONS}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for i in range(runs):
        for name, options in variants.items():
            cpu, wall = measure(options)
            results[name].append((cpu, wall))
            print(f"run {i + 1} {name:7}: {cpu:6.1f} CPU-s  {wall:5.1f} s wall  ({options})", flush=True)
    cpu = {name: statistics.median(c for c, _ in r) for name, r in results.items()}
    wall = {name: statistics.median(w for _, w in r) for name, r in results.items()}
    print(f"figure spark_cluster_cpu_c1_over_default = {cpu['c1'] / cpu['default']:.2f}")
    print(f"figure spark_cluster_wall_c1_over_default = {wall['c1'] / wall['default']:.2f}")


if __name__ == "__main__":
    main()
