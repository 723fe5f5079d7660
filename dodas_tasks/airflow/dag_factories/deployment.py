"""One Airflow DAG per live deployment, its shape read from the stored Plan (never from the template).

Parsing reads the store only: no tosca-parser, no cloud call. On a worker, only the DAG being run is built.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, get_parsing_context

from dodas_tasks.airflow.operators.deployment import (
    BeginOperator,
    ComponentOperator,
    FailoverOperator,
    FinalizeOperator,
    OutcomeOperator,
    ProvisionGroupOperator,
    VerifyOperator,
)
from dodas_tasks.naming import deployment_dag_id, short_id
from dodas_tasks.store import DeploymentRecord, DeploymentStatus, Store
from dodas_tasks.tosca.plan import CONFIGURE, DEPLOY, Plan

log = logging.getLogger(__name__)
_ORDERING = {"HostedOn", "DependsOn", "ConnectsTo"}
# configure/deploy steps are idempotent: a try that failed for a reason that may pass (a dropped SSH session, a task
# killed with its worker) is run again; permanent failures (a script that exits non-zero) fail at once
STEP_RETRIES = 2
STEP_RETRY_DELAY = timedelta(seconds=5)


def build_deployment_dag(dep: DeploymentRecord) -> DAG:
    """begin → provision.<group> (all groups at once) → configure/deploy.<component> (plan edges) → verify →
    finalize → failover (runs only when a failed creation moved to the next cloud) → outcome (the run's state)"""
    plan = dep.plan
    # Everything below depends on the plan and on what the submission fixed, never on live state (status, counts,
    # outputs, current cloud): a change of those must not make a new DAG version.
    with DAG(
        dag_id=deployment_dag_id(dep.id),
        # the first run starts by itself, dated when the deployment was submitted; later runs (scale, heal,
        # undeploy) are triggered
        schedule="@once",
        start_date=dep.created_at,
        catchup=False,
        max_active_runs=1,  # changes to one deployment queue up instead of racing
        is_paused_upon_creation=False,
        tags=["dodas", "deployment", *dep.clouds],
        doc_md=doc_md(dep, plan),
        default_args={"retries": 0},
    ) as dag:
        common: dict[str, Any] = {"deployment_id": dep.id}
        begin = BeginOperator(task_id="begin", **common)
        provision = {  # failed boots are replaced inside the task (backfill); retries are for anything else
            g.name: ProvisionGroupOperator(
                task_id=f"provision.{g.name}",
                group=g.name,
                retries=2,
                retry_delay=timedelta(seconds=5),
                **common,
            )
            for g in plan.groups
        }
        begin >> list(provision.values())
        stages = {
            c.name: ComponentOperator(
                task_id=f"{c.stage}.{c.name}",
                component=c.name,
                retries=STEP_RETRIES,
                retry_delay=STEP_RETRY_DELAY,
                **common,
            )
            for c in plan.components
            if c.stage in (CONFIGURE, DEPLOY)
        }
        for comp in plan.components:
            task = stages.get(comp.name)
            if task is None:
                continue
            if comp.host_group in provision:
                provision[comp.host_group] >> task
            for edge in plan.edges:
                if edge.source == comp.name and edge.kind in _ORDERING:
                    upstream = stages.get(edge.target) or provision.get(edge.target)
                    if upstream is not None:
                        upstream >> task
            if not task.upstream_list:
                begin >> task
        # frameworks deploy onto a finished cluster: every deploy task waits for every configure task
        configure = [stages[c.name] for c in plan.components if c.stage == CONFIGURE and c.name in stages]
        for comp in plan.components:
            if comp.stage == DEPLOY and comp.name in stages and configure:
                configure >> stages[comp.name]
        verify = VerifyOperator(task_id="verify", **common)
        leaves = [t for t in stages.values() if not t.downstream_list] or list(provision.values()) or [begin]
        leaves >> verify
        finalize = FinalizeOperator(task_id="finalize", **common)
        verify >> finalize
        failover = FailoverOperator(task_id="failover", trigger_dag_id=deployment_dag_id(dep.id), **common)
        finalize >> failover >> OutcomeOperator(task_id="outcome", **common)
        if dep.callback:  # a leaf beside outcome: the run's state still follows outcome
            from dodas_tasks.airflow.operators.callback import NotifyOperator

            finalize >> NotifyOperator(task_id="notify", **common)
    return dag


def doc_md(dep: DeploymentRecord, plan: Plan) -> str:
    """What the DAG page shows: what was submitted (description, groups, inputs with secrets hidden, template).
    Live state is read from the store where it is shown, so that it never changes the DAG's serialized form."""
    inputs = "\n".join(f"| {k} | `{v}` |" for k, v in sorted(dep.inputs.items()) if "." not in k) or "| - | - |"
    groups = (
        ", ".join(
            f"{g.name} ×{g.count}" + (f" ({g.min_count}–{g.max_count})" if g.min_count != g.max_count else "")
            for g in plan.groups
        )
        or "-"
    )
    return (
        f"### DODAS deployment `{dep.id}`\n\n"
        f"{plan.description}\n\n"
        f"**Clouds:** {', '.join(dep.clouds)} · **Owner:** {dep.owner_subject} · **Groups as submitted:** {groups}\n\n"
        f"Status, nodes, outputs and events are live: `dodas status {short_id(dep.id)}`, the Deployments page, "
        "and the notes of this DAG's runs.\n\n"
        f"#### Inputs\n| name | value |\n|---|---|\n{inputs}\n\n"
        f"#### Template\n```yaml\n{dep.template}\n```\n"
    )


def deployment_dags(store: Store | None = None, now: datetime | None = None) -> dict[str, DAG]:
    """DAGs for every deployment not fully deleted, and for those deleted less than DODAS_DAG_RETIRE_S seconds ago
    (default 600: the run that deleted them must finish its last tasks); only the requested one on a worker."""
    wanted = get_parsing_context().dag_id
    own = store is None
    store = store or Store()
    retire_before = (now or datetime.now(UTC)) - timedelta(seconds=float(os.environ.get("DODAS_DAG_RETIRE_S", "600")))
    try:
        dags = {}
        for dep in store.list_deployments():
            name = deployment_dag_id(dep.id)
            if wanted and wanted != name:
                continue
            if dep.status == DeploymentStatus.DELETE_COMPLETE and not wanted and dep.updated_at < retire_before:
                continue  # retired
            try:
                dags[name] = build_deployment_dag(dep)
            except (KeyError, TypeError, ValueError) as exc:  # one broken record must not hide every other DAG
                log.error("deployment %s: cannot build its DAG from the stored plan: %s", dep.id, exc)
        return dags
    finally:
        if own:
            store.close()
