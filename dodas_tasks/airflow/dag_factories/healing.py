"""The healing DAG: every DODAS_HEALING_INTERVAL_S seconds (default 30), every serving deployment is checked.

A node is healthy when the cloud says it runs, SSH answers and the framework counts it. One unhealthy beyond
its grace is marked ERROR and its deployment DAG runs to replace it; failing replacements back off.
Nothing is checked while the deployment's own run is queued or running.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Context, task

from dodas_tasks.airflow.dag_factories import service_dag
from dodas_tasks.airflow.hooks.store import shared_store
from dodas_tasks.elastic.settings import ElasticSettings
from dodas_tasks.naming import deployment_dag_id


def healing_dag() -> DAG:
    """dodas_healing: check → run_deployment_dags (one TriggerDagRunOperator per deployment to repair)."""
    interval_s = int(os.environ.get("DODAS_HEALING_INTERVAL_S", "30"))
    with service_dag(
        "dodas_healing",
        description="Replace unhealthy nodes of every deployment",
        schedule=timedelta(seconds=interval_s),
        max_active_runs=1,
        tags=("healing",),
        doc_md=(
            f"Checks every serving deployment every {interval_s} s (`DODAS_HEALING_INTERVAL_S`): cloud status, SSH "
            "banner, framework membership (Spark: worker ALIVE, master answering). A node unhealthy for longer than "
            "`grace` is marked ERROR and replaced by its deployment DAG; a lost master is replaced and the workers "
            "re-pointed. A VM the cloud reports gone, in ERROR or stopped is replaced at once, without the grace. "
            "Replacements that fail back off (`backoff` doubling up to `backoff_max`) with the reason "
            "in the deployment's status. Per-deployment settings come from the template, else the submit options; "
            f"defaults:\n\n{ElasticSettings().markdown()}\n"
        ),
    ) as dag:
        TriggerDagRunOperator.partial(task_id="run_deployment_dags").expand(trigger_dag_id=check())
    return dag


@task  # module level, so the callable's name is the task's; no docstring: TaskFlow would show it as the task's doc
def check(**context: object) -> list[str]:
    return heal(context, logging.getLogger("dodas.healing").info)  # type: ignore[arg-type]


def run_is_active(context: Context) -> Any:
    """A check, for healing, that a deployment's DAG has a run queued or running (asked through the Task SDK)."""
    ti = context["ti"]

    def active(deployment_id: str) -> bool:
        try:
            return ti.get_dr_count(dag_id=deployment_dag_id(deployment_id), states=["queued", "running"]) > 0
        except Exception:  # a DAG not parsed yet has no runs
            return False

    return active


def heal(context: Context, log: Any) -> list[str]:
    """The healing pass: every serving deployment checked; returns the deployment DAGs to run."""
    from dodas_tasks.airflow.hooks.iam import owner_tokens_for
    from dodas_tasks.elastic.health import check_all

    store = shared_store()
    reports = check_all(store, run_is_active(context), log=log, tokens_for=owner_tokens_for(store))
    for report in reports:
        if report.marked or report.notes:
            log(f"{report.deployment_id}: marked {report.marked or 'none'}; {'; '.join(report.notes)}")
    return [deployment_dag_id(r.deployment_id) for r in reports if r.trigger]
