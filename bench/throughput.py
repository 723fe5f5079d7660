"""Throughput: N deployments submitted at once, on LocalExecutor + SQLite and on CeleryExecutor + PostgreSQL with two
workers (docker-compose.yml's services as processes, as tests/test_celery_e2e.py runs them: the local cloud as a
service and one worker on hosts of their own, network namespaces, so root is needed), in one run.

Prints `figure celery_over_local_50`: wall time from the first submission until all N are CREATE_COMPLETE on the
Celery stack ÷ the same on the local stack (target ≤ 1), and `figure deployments_per_minute_celery` (and `_local`).
The template is light: 2 VMs on the local cloud with a 1 s boot (DODAS_LOCAL_BOOT_DELAY), no framework, so the run is
Airflow's work (parse, schedule, execute; 1 s boots are waited for in the task, not deferred) and the store's;
every framework that configures VMs over SSH here starts Spark or the Mesos doubles, which would measure those instead.
Both stacks have 4 task slots (parallelism 4; Celery: 2 workers × concurrency 2), the same scheduler and parsing
timing (the dev stack's QUICK_PICKUP), and their own store and cloud; each stack is stopped and its VMs deleted
before the next starts. Run: .venv/bin/python bench/throughput.py [N]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TMP = Path(tempfile.mkdtemp(prefix="dodas-bench-throughput-"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from _service_fixtures import celery_service, free_port  # noqa: E402

from dodas_tasks.devstack.local_airflow import QUICK_PICKUP, AirflowStack  # noqa: E402

BOOT = {"DODAS_LOCAL_BOOT_DELAY": "1"}
TEMPLATE = (REPO / "tests" / "data" / "two_vms.yaml").read_text()
DEADLINE_S = 3600.0


@contextmanager
def local_stack(root: Path) -> Iterator[AirflowStack]:
    """The dev stack (`dodas demo`'s): SQLite, LocalExecutor, 4 slots."""
    stack = AirflowStack(
        root / "home", REPO / "dags", REPO / "plugins", port=free_port(), parallelism=4,
        extra_env={**BOOT, "DODAS_HOME": str(root / "dodas")},
    )  # fmt: skip
    try:
        stack.start(timeout=400)
        yield stack
    finally:
        stack.stop()


def measure(name: str, started_stack: AbstractContextManager[AirflowStack], count: int) -> float:
    """Seconds from the first of `count` submissions until all are CREATE_COMPLETE; VMs deleted afterwards."""
    from dodas_tasks.clouds.local import LocalCloud
    from dodas_tasks.deploy import service
    from dodas_tasks.naming import TAG_PROJECT
    from dodas_tasks.settings import PROJECT_TAG
    from dodas_tasks.store import DeploymentStatus, Store

    with started_stack as stack:
        env = stack.env()
        os.environ.update(AIRFLOW__CORE__FERNET_KEY=env["AIRFLOW__CORE__FERNET_KEY"], DODAS_HOME=env["DODAS_HOME"])
        url = env.get("DODAS_DATABASE_URL") or f"sqlite:///{Path(env['DODAS_HOME']) / 'dodas.db'}"
        cloud = LocalCloud(home=env["DODAS_HOME"])
        try:
            with Store(url) as store:
                started = time.monotonic()
                ids = [service.submit(store, TEMPLATE, {}) for _ in range(count)]
                stack.rest.reparse_file_of("dodas_submit")  # the deployment DAGs appear at once, then start (@once)
                done = wait_all(lambda: [store.get_deployment(i).status for i in ids], DeploymentStatus.CREATE_COMPLETE)
                elapsed = time.monotonic() - started
            print(f"{name}: {count} deployments CREATE_COMPLETE in {elapsed:.1f} s ({done})", flush=True)
            return elapsed
        finally:
            for server in cloud.list_servers({TAG_PROJECT: PROJECT_TAG}):
                cloud.delete_server(server.id)


def wait_all(statuses: Callable[[], list[str]], wanted: str) -> str:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        now = statuses()
        failed = [s for s in now if s.endswith("FAILED")]
        if failed:
            raise SystemExit(f"{len(failed)} deployment(s) failed: {sorted(set(failed))}")
        if all(s == wanted for s in now):
            return f"{len(now)} × {wanted}"
        if time.monotonic() > deadline:
            raise SystemExit(f"not all {wanted} after {DEADLINE_S:.0f} s: {sorted(set(now))}")
        time.sleep(1.0)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    local = measure("LocalExecutor + SQLite", local_stack(TMP / "local"), count)
    same_timing = {**BOOT, **QUICK_PICKUP}  # the dev stack's scheduler and parsing timing, so executors are compared
    celery_stack = celery_service(TMP / "celery", extra_env=same_timing)
    celery = measure("CeleryExecutor + PostgreSQL, 2 workers", celery_stack, count)
    print(f"figure celery_over_local_{count} = {celery / local:.2f}")
    print(f"figure deployments_per_minute_celery = {count / celery * 60:.1f}")
    print(f"figure deployments_per_minute_local = {count / local * 60:.1f}")


if __name__ == "__main__":
    from dodas_tasks.devstack.interrupts import exit_on_signals

    with exit_on_signals():  # SIGTERM (a time limit), SIGINT, SIGHUP: main's finally blocks stop what it started
        main()
