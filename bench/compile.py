"""Compile cost against tosca-parser alone, and growth with template size.

Prints `figure compile_ratio = X`: time to compile the CMS-HTCondor DODAS template with its inputs (text to Plan)
divided by the time tosca-parser alone takes to parse the same template from its file (imports pointed at the same
type library): the median of the ratios of 40 interleaved pairs.
Then compile times for synthetic templates of 100/200/400 nodes.
Run: .venv/bin/python bench/compile.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from toscaparser.tosca_template import ToscaTemplate  # noqa: E402

from dodas_tasks.tosca.compiler import compile  # noqa: E402
from dodas_tasks.tosca.loader import INDIGO_TYPES  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus" / "indigo"
URL = "https://raw.githubusercontent.com/indigo-dc/tosca-types/dodas_roll/custom_types.yaml"
INPUTS = {"number_of_slaves": 4, "marathon_password": "bench-secret", "mesos_password": "bench-secret"}


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def synthetic(nodes: int) -> str:
    """Half Compute groups, half Mesos agents hosted on them: `nodes` node templates in all."""
    lines = [
        "tosca_definitions_version: tosca_simple_yaml_1_0",
        "imports:",
        f"  - indigo: {URL}",
        "topology_template:",
        "  inputs:",
        "    size: {type: integer, default: 2}",
        "  node_templates:",
    ]
    for i in range(nodes // 2):
        lines += [
            f"    server{i}:",
            "      type: tosca.nodes.indigo.Compute",
            "      capabilities:",
            "        scalable: {properties: {count: {get_input: size}}}",
            "        host: {properties: {num_cpus: 2, mem_size: 4 GB}}",
            f"    agent{i}:",
            "      type: tosca.nodes.indigo.MesosSlave",
            "      properties:",
            "        master_ips: {get_attribute: [server0, private_address]}",
            "        front_end_ip: {get_attribute: [server0, private_address, 0]}",
            "      requirements:",
            f"        - host: server{i}",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    text = (CORPUS / "dodas__CMS-HTCondor-dodas.yaml").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "cms.yaml"
        local.write_text(text.replace(URL, str(INDIGO_TYPES)))

        def ours() -> None:
            compile(text, INPUTS)

        def parser_alone() -> None:
            ToscaTemplate(path=str(local), parsed_params=INPUTS)

        ours(), parser_alone()  # warm caches and imports for both
        a, b = [], []
        for _ in range(40):  # interleaved pairs: drift in machine speed hits both sides of each pair alike
            a += timed(ours, 1)
            b += timed(parser_alone, 1)
    ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
    print(
        f"compile CMS-HTCondor: ours {statistics.median(a) * 1000:.1f} ms, "
        f"tosca-parser alone {statistics.median(b) * 1000:.1f} ms"
    )
    print(f"figure compile_ratio = {ratio:.3f}")
    times = {}
    for n in (100, 200, 400):
        tpl = synthetic(n)
        compile(tpl, None)
        times[n] = statistics.median(timed(lambda tpl=tpl: compile(tpl, None), 3))
        print(f"figure compile_{n}_nodes_s = {times[n]:.3f}")
    print(f"figure compile_growth_200_over_100 = {times[200] / times[100]:.2f}")
    print(f"figure compile_growth_400_over_200 = {times[400] / times[200]:.2f}")


if __name__ == "__main__":
    from dodas_tasks.devstack.interrupts import exit_on_signals

    with exit_on_signals():  # SIGTERM (a time limit), SIGINT, SIGHUP: main's finally blocks stop what it started
        main()
