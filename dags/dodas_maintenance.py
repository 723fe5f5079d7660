"""Maintenance DAGs of DODAS on Airflow: leak collection on every configured cloud."""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, task

from dodas_tasks.airflow.dag_factory import START

with DAG(
    dag_id="dodas_leak_collector",
    description="Remove cloud resources no live deployment owns (after a grace period)",
    schedule=timedelta(minutes=30),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["dodas", "maintenance"],
    doc_md=(
        "Lists project-tagged resources on every cloud in `DODAS_CLOUDS` (default `local`) and removes those whose "
        "deployment is unknown or deleted, or servers a live deployment does not record, once older than "
        "`DODAS_LEAK_GRACE_S` seconds (default 900). Each removal is logged and, when the deployment exists, "
        "recorded as one of its events."
    ),
):

    @task
    def collect() -> dict:
        from dodas_tasks.deploy.leaks import collect_leaks
        from dodas_tasks.store import Store

        grace = timedelta(seconds=float(os.environ.get("DODAS_LEAK_GRACE_S", "900")))
        with Store() as store:
            report = collect_leaks(store, grace=grace, log=print)
        if report.errors:
            print("\n".join(report.errors))
        return {
            "checked": report.checked,
            "removed": report.removed,
            "kept_young": report.kept_young,
            "errors": report.errors,
        }

    collect()
