"""The orchestrator API inside a real Airflow api-server (plugin mounted), against Airflow's own REST API on the
same stack, in one run.

Prints `figure api_list_over_airflow`: p95 of `GET /dodas/orchestrator/deployments` (default page, newest first)
with 1,000 deployments in the store ÷ p95 of Airflow's `GET /api/v2/dags?limit=100` with 1,000 DAGs, both with the
same Airflow admin token, 200 calls each, interleaved. Target ≤ 1.
Prints `figure api_submit_p95_ms`: p95 of `POST /deployments` → 201 for the CMS-HTCondor corpus template (compiled,
the user's IAM token delegated at the test OpenID provider, stored), 40 submissions. Target ≤ 300 ms.
Also prints the page of 100 deployments and the medians, for context.
Run: .venv/bin/python bench/api.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TMP = Path(tempfile.mkdtemp(prefix="dodas-bench-api-"))
os.environ["DODAS_HOME"] = str(TMP / "dodas")
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import httpx  # noqa: E402
from _api_fixtures import free_port  # noqa: E402
from oidc_provider.fixture import running_provider  # noqa: E402

from dodas_tasks.deploy.orchestrator_view import API_PREFIX  # noqa: E402
from dodas_tasks.devstack.local_airflow import AirflowStack  # noqa: E402

DEPLOYMENTS = 1000
CALLS = 200
SUBMISSIONS = 40
CMS = REPO.parent / "shared" / "corpus" / "indigo" / "dodas__CMS-HTCondor-dodas.yaml"
CMS_INPUTS = {"number_of_slaves": 4, "marathon_password": "bench-secret", "mesos_password": "bench-secret"}
AIRFLOW_DAGS = """
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from dodas_tasks.airflow.dag_factories import START

for i in range({count}):
    with DAG(dag_id=f"bench_{{i:04d}}", schedule=None, start_date=START, tags=["bench"]) as dag:
        EmptyOperator(task_id="noop")
    globals()[dag.dag_id] = dag
"""


def populate(count: int) -> None:
    """`count` deployments of the local Spark template, owned by ten users, recorded without a cloud."""
    from dodas_tasks.configure import generate_keypair
    from dodas_tasks.store import Store
    from dodas_tasks.tosca.compiler import compile

    text = (REPO / "templates" / "spark_local.yaml").read_text()
    plan, keys = compile(text, {"number_of_workers": 2}), generate_keypair()
    with Store() as store:
        for i in range(count):
            store.create_deployment(
                template=text, plan=plan, owner_subject=f"user{i % 10}", owner_issuer="bench",
                ssh_private_key=keys.private_openssh, ssh_public_key=keys.public_openssh,
                desired_counts={g.name: g.count for g in plan.groups}, user_group=f"group{i % 3}",
            )  # fmt: skip


def timed(call: Callable[[], httpx.Response], expected: int) -> float:
    start = time.perf_counter()
    answer = call()
    elapsed = (time.perf_counter() - start) * 1000
    assert answer.status_code == expected, answer.text[:500]
    return elapsed


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def wait_for_dags(stack: AirflowStack, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while stack.rest.api("GET", "/api/v2/dags", params={"limit": 1})["total_entries"] < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} bench DAGs parsed after {timeout} s")
        time.sleep(1)


def main() -> None:
    populate(DEPLOYMENTS)
    dags = TMP / "dags"
    dags.mkdir()
    (dags / "bench_dags.py").write_text(AIRFLOW_DAGS.format(count=DEPLOYMENTS))
    with running_provider(3600) as provider:
        iam = {
            "conn_type": "http", "host": provider.issuer, "login": provider.client_id,
            "password": provider.client_secret, "extra": {"audience": "dodas"},
        }  # fmt: skip
        stack = AirflowStack(
            TMP / "airflow", dags, REPO / "plugins", port=free_port(), parallelism=2,
            extra_env={"DODAS_HOME": os.environ["DODAS_HOME"], "AIRFLOW_CONN_DODAS_IAM": json.dumps(iam)},
        )  # fmt: skip
        stack.start(components=("api-server", "dag-processor"))
        try:
            wait_for_dags(stack, DEPLOYMENTS)
            username, password = stack.admin_credentials()
            login = httpx.post(f"{stack.ui_url()}/auth/token", json={"username": username, "password": password})
            admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
            with httpx.Client(base_url=stack.ui_url(), headers=admin, timeout=60) as http:
                ours = lambda: http.get(f"{API_PREFIX}/deployments")  # noqa: E731
                theirs = lambda: http.get("/api/v2/dags", params={"limit": 100})  # noqa: E731
                hundred = lambda: http.get(f"{API_PREFIX}/deployments", params={"size": 100})  # noqa: E731
                assert ours().json()["page"]["totalElements"] == DEPLOYMENTS
                for _ in range(20):  # warm both paths (first request builds the plugin's app)
                    timed(ours, 200), timed(theirs, 200), timed(hundred, 200)
                list_ms, airflow_ms, hundred_ms = [], [], []
                for _ in range(CALLS):
                    list_ms.append(timed(ours, 200))
                    airflow_ms.append(timed(theirs, 200))
                    hundred_ms.append(timed(hundred, 200))
            user = {"Authorization": f"Bearer {provider.login('bench', aud='dodas')}"}
            body = {"template": CMS.read_text(), "parameters": CMS_INPUTS}
            with httpx.Client(base_url=f"{stack.ui_url()}{API_PREFIX}", headers=user, timeout=60) as http:
                submit = lambda: http.post("/deployments", json=body)  # noqa: E731
                timed(submit, 201)  # warm: the compiler's first use in the api-server
                submit_ms = [timed(submit, 201) for _ in range(SUBMISSIONS)]
        finally:
            stack.stop()
    print(
        f"GET /deployments (page of 10 of {DEPLOYMENTS}): p95 {p95(list_ms):.1f} ms, median "
        f"{statistics.median(list_ms):.1f} ms; page of 100: p95 {p95(hundred_ms):.1f} ms; "
        f"Airflow GET /api/v2/dags?limit=100 ({DEPLOYMENTS} DAGs): p95 {p95(airflow_ms):.1f} ms, median "
        f"{statistics.median(airflow_ms):.1f} ms"
    )
    print(f"POST /deployments (CMS-HTCondor): median {statistics.median(submit_ms):.1f} ms")
    print(f"figure api_list_over_airflow = {p95(list_ms) / p95(airflow_ms):.3f}")
    print(f"figure api_submit_p95_ms = {p95(submit_ms):.1f}")


if __name__ == "__main__":
    from dodas_tasks.devstack.interrupts import exit_on_signals

    with exit_on_signals():  # SIGTERM (a time limit), SIGINT, SIGHUP: main's finally blocks stop what it started
        main()
