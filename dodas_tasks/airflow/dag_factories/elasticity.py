"""One elasticity DAG per elastic deployment (`dodas_elastic_<id8>`), generated from the stored plans.

Each runs continuously: its single task defers to a trigger that watches the framework's load in the triggerer
and wakes only when the policy decides; then it records the decision and runs the deployment DAG.
Parsing reads the store only (plans, options): no framework, cloud or SSH call.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, get_parsing_context

from dodas_tasks.airflow.dag_factories import service_dag
from dodas_tasks.airflow.operators.elasticity import ElasticityOperator
from dodas_tasks.elastic.settings import ElasticSettings, SettingError, resolve
from dodas_tasks.naming import deployment_dag_id, elastic_dag_id
from dodas_tasks.store import DeploymentRecord, Store


def doc_md(dep: DeploymentRecord, settings: ElasticSettings) -> str:
    elastic = dep.plan.elasticity
    return (
        f"### Elasticity of deployment `{dep.id}`\n\n"
        f"Grows and shrinks compute group **{elastic.group}** between {elastic.min_count} and "
        f"{elastic.max_count} nodes with the framework's load (switched on by {elastic.source}). "
        f"Decisions are recorded as `elastic` events and applied by `{deployment_dag_id(dep.id)}`.\n\n"
        "Settings come from the template, else the submit options, else the defaults:\n\n"
        f"{settings.markdown()}\n"
    )


def elastic_dags() -> dict[str, DAG]:
    """The elasticity DAG of every live deployment whose plan switches elasticity on (only the requested one on a
    worker)."""
    wanted = get_parsing_context().dag_id
    dags: dict[str, DAG] = {}
    with Store() as store:
        for dep in store.list_deployments(live_only=True):
            name = elastic_dag_id(dep.id)
            if wanted and wanted != name:
                continue
            try:
                elastic = dep.plan.elasticity
            except (KeyError, TypeError, ValueError):  # an unreadable plan: the deployment DAG factory reports it
                continue
            if not elastic.enabled or not elastic.group:
                continue
            try:
                settings = resolve(elastic.settings, dep.options)
            except SettingError:
                settings = ElasticSettings()  # the operator reports the error when it runs
            with service_dag(
                name,
                schedule="@continuous",  # a new run as soon as one ends: the watch never stops
                max_active_runs=1,
                tags=("elasticity",),
                doc_md=doc_md(dep, settings),
                # a failing watch is retried slowly, so a persistent error cannot spin the continuous schedule
                default_args={"retries": 3, "retry_delay": timedelta(seconds=30)},
            ) as dag:
                ElasticityOperator(task_id="watch_and_scale", deployment_id=dep.id)
            dags[name] = dag
    return dags
