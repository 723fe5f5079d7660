"""The healing DAG: every DODAS_HEALING_INTERVAL_S seconds (default 30), every serving deployment is checked.

A node is healthy when the cloud says it runs, SSH answers and the framework counts it. One unhealthy beyond
its grace is marked ERROR and its deployment DAG runs to replace it; failing replacements back off.
Nothing is checked while the deployment's own run is queued or running.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, task

from dodas_tasks.airflow.dag_factory import START
from dodas_tasks.elastic.settings import ElasticSettings

INTERVAL_S = int(os.environ.get("DODAS_HEALING_INTERVAL_S", "30"))

with DAG(
    dag_id="dodas_healing",
    description="Replace unhealthy nodes of every deployment",
    schedule=timedelta(seconds=INTERVAL_S),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["dodas", "healing"],
    doc_md=(
        f"Checks every serving deployment every {INTERVAL_S} s (`DODAS_HEALING_INTERVAL_S`): cloud status, SSH "
        "banner, framework membership (Spark: worker ALIVE, master answering). A node unhealthy for longer than "
        "`grace` is marked ERROR and replaced by its deployment DAG; a lost master is replaced and the workers "
        "re-pointed. A VM the cloud reports gone, in ERROR or stopped is replaced at once, without the grace. "
        "Replacements that fail back off (`backoff` doubling up to `backoff_max`) with the reason "
        "in the deployment's status. Per-deployment settings come from the template, else the submit options; "
        f"defaults:\n\n{ElasticSettings().markdown()}\n"
    ),
):

    @task
    def check(**context: object) -> list[str]:
        import logging

        from dodas_tasks.airflow.elastic import heal

        return heal(context, logging.getLogger("dodas.healing").info)  # type: ignore[arg-type]

    TriggerDagRunOperator.partial(task_id="run_deployment_dags").expand(trigger_dag_id=check())
