"""The maintenance DAGs: leak collection on every configured cloud, and keeping stored IAM refresh tokens alive."""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, task

from dodas_tasks.airflow.dag_factories import service_dag


def leak_collector_dag() -> DAG:
    """dodas_leak_collector: every 30 minutes, remove cloud resources no live deployment owns."""
    with service_dag(
        "dodas_leak_collector",
        description="Remove cloud resources no live deployment owns (after a grace period)",
        schedule=timedelta(minutes=30),
        max_active_runs=1,
        tags=("maintenance",),
        doc_md=(
            "Lists project-tagged resources on every cloud in `DODAS_CLOUDS` (default `local`) and removes those "
            "whose deployment is unknown or deleted, or servers a live deployment does not record, once older than "
            "`DODAS_LEAK_GRACE_S` seconds (default 900). Each removal is logged and, when the deployment exists, "
            "recorded as one of its events."
        ),
    ) as dag:
        collect()
    return dag


@task  # no docstring: TaskFlow would show it as the task's doc
def collect() -> dict:
    # one leak collection pass over every configured cloud; returns its counts and errors
    from dodas_tasks.airflow.hooks.iam import owner_tokens_for
    from dodas_tasks.deploy.leaks import collect_leaks
    from dodas_tasks.store import Store

    grace = timedelta(seconds=float(os.environ.get("DODAS_LEAK_GRACE_S", "900")))
    with Store() as store:
        report = collect_leaks(store, grace=grace, log=print, tokens_for=owner_tokens_for(store))
    if report.errors or report.not_collectable:
        print("\n".join(report.errors + report.not_collectable))
    return {
        "checked": report.checked,
        "removed": report.removed,
        "kept_young": report.kept_young,
        "errors": report.errors,
        "not_collectable": report.not_collectable,
    }


def token_refresh_dag() -> DAG:
    """dodas_token_refresh: every 6 hours, keep each live deployment's refresh token alive and mark the dead ones."""
    with service_dag(
        "dodas_token_refresh",
        description="Refresh stored IAM refresh tokens; mark deployments whose token was revoked",
        schedule=timedelta(hours=6),
        max_active_runs=1,
        tags=("maintenance",),
        doc_md="Uses the `dodas_iam` connection. Returns counts only; per-deployment outcomes are deployment events.",
    ) as dag:
        refresh_tokens()
    return dag


@task(retries=2, retry_delay=timedelta(minutes=5))
def refresh_tokens() -> dict[str, int]:
    # every live deployment's stored token refreshed; skipped when no IdP is configured
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSkipException

    from dodas_tasks.airflow.hooks.iam import IamHook
    from dodas_tasks.iam.maintenance import refresh_all
    from dodas_tasks.store import Store

    try:
        client = IamHook().client
    except AirflowNotFoundException:
        raise AirflowSkipException("no `dodas_iam` connection: no IdP configured, no token to refresh") from None
    with Store() as store:
        return refresh_all(store, client).as_dict()
