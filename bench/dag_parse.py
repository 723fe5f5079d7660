"""DAG parsing: the factory file with 1,000 stored deployments against a static file declaring the same 1,000 DAGs.

Prints `figure dag_parse_ratio` (factory ÷ static, same DAG shapes, each parsed by Airflow's DagBag in a fresh
interpreter, alternating, median of 3) and `figure dag_parse_1000_s` (the factory's absolute parse time).
Run: .venv/bin/python bench/dag_parse.py [N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PARSE = """
import sys, time
from airflow.dag_processing.dagbag import DagBag
start = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - start
assert not bag.import_errors, bag.import_errors
print(len(bag.dags), elapsed)
"""


def populate(count: int) -> list[str]:
    """`count` deployments of the local Spark template (1 master + 2 workers), registered without a cloud."""
    from dodas_tasks.configure import generate_keypair
    from dodas_tasks.store import Store
    from dodas_tasks.tosca.compiler import compile

    plan = compile((REPO / "templates" / "spark_local.yaml").read_text(), {"number_of_workers": 2})
    keys = generate_keypair()
    ids = []
    with Store() as store:
        for _ in range(count):
            ids.append(
                store.create_deployment(
                    template=(REPO / "templates" / "spark_local.yaml").read_text(),
                    plan=plan,
                    owner_subject="bench",
                    owner_issuer="bench",
                    ssh_private_key=keys.private_openssh,
                    ssh_public_key=keys.public_openssh,
                    desired_counts={g.name: g.count for g in plan.groups},
                )
            )
    return ids


def static_file(path: Path, ids: list[str]) -> None:
    """The same DAGs written out literally: no store read, no Plan decoding."""
    lines = [
        "from airflow.sdk import DAG",
        "from dodas_tasks.airflow.dag_factories import START",
        "from dodas_tasks.airflow.operators.deployment import (BeginOperator, ComponentOperator, FinalizeOperator,",
        "    ProvisionGroupOperator, VerifyOperator)",
        "from datetime import timedelta",
    ]
    for i, dep in enumerate(ids):
        lines += [
            f"with DAG(dag_id='static_{i}', schedule='@once', start_date=START, catchup=False, max_active_runs=1,",
            "         is_paused_upon_creation=False, tags=['dodas'], doc_md='static') as d:",
            f"    c = {{'deployment_id': '{dep}'}}",
            "    b = BeginOperator(task_id='begin', **c)",
            "    pm = ProvisionGroupOperator(task_id='provision.m', group='spark-master-server', retries=2,",
            "        retry_delay=timedelta(seconds=5), **c)",
            "    pw = ProvisionGroupOperator(task_id='provision.w', group='spark-worker-server', retries=2,",
            "        retry_delay=timedelta(seconds=5), **c)",
            "    m = ComponentOperator(task_id='deploy.spark_master', component='spark_master', **c)",
            "    w = ComponentOperator(task_id='deploy.spark_worker', component='spark_worker', **c)",
            "    b >> [pm, pw]; pm >> m; pw >> w; m >> w",
            "    w >> VerifyOperator(task_id='verify', **c) >> FinalizeOperator(task_id='finalize', **c)",
            f"globals()['static_{i}'] = d",
        ]
    path.write_text("\n".join(lines) + "\n")


def parse(path: Path, env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PARSE, str(path)], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[-1])


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory(prefix="dodas-bench-") as tmp:
        env = {**os.environ, "AIRFLOW_HOME": f"{tmp}/airflow", "DODAS_HOME": f"{tmp}/dodas"}
        env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        os.environ.update({k: env[k] for k in ("AIRFLOW_HOME", "DODAS_HOME")})
        ids = populate(count)
        static = Path(tmp) / "static_dags.py"
        static_file(static, ids)
        factory = REPO / "dags" / "dodas.py"
        f_times, s_times = [], []
        for _ in range(3):
            f_times.append(parse(factory, env))
            s_times.append(parse(static, env))
    f, s = statistics.median(f_times), statistics.median(s_times)
    print(f"factory {f:.2f} s, static {s:.2f} s for {count} deployment DAGs")
    print(f"figure dag_parse_ratio = {f / s:.3f}")
    print(f"figure dag_parse_{count}_s = {f:.3f}")


if __name__ == "__main__":
    from dodas_tasks.devstack.interrupts import exit_on_signals

    with exit_on_signals():  # SIGTERM (a time limit), SIGINT, SIGHUP: main's finally blocks stop what it started
        main()
