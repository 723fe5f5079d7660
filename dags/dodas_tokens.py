"""dodas_token_refresh: every 6 hours, keep each live deployment's refresh token alive and mark the dead ones."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

with DAG(
    dag_id="dodas_token_refresh",
    description="Refresh stored IAM refresh tokens; mark deployments whose token was revoked",
    schedule=timedelta(hours=6),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["dodas", "maintenance"],
    doc_md="Uses the `dodas_iam` connection. Returns counts only; per-deployment outcomes are deployment events.",
):

    @task(retries=2, retry_delay=timedelta(minutes=5))
    def refresh_tokens() -> dict[str, int]:
        from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSkipException

        from dodas_tasks.airflow.iam_hook import IamHook
        from dodas_tasks.iam.maintenance import refresh_all
        from dodas_tasks.store import Store

        try:
            client = IamHook().client
        except AirflowNotFoundException:
            raise AirflowSkipException("no `dodas_iam` connection: no IdP configured, no token to refresh") from None
        with Store() as store:
            return refresh_all(store, client).as_dict()

    refresh_tokens()
