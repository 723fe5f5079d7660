"""The orchestrator's `callback`: when a run leaves a deployment in a final state, its JSON is POSTed to the URL given
at submission.

The task defers to the triggerer for the POST (triggers/callback.py). The outcome is recorded as a deployment
event; a delivery that fails in the end never fails the run.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowSkipException

from dodas_tasks.airflow.hooks.airflow_api import rest_client
from dodas_tasks.airflow.operators.deployment import DeploymentOperator
from dodas_tasks.airflow.triggers.callback import CallbackTrigger
from dodas_tasks.deploy.orchestrator_view import API_PREFIX, FINAL_STATUSES, deployment_resource
from dodas_tasks.store import Store

EVENT_KIND = "callback"


def api_base_url() -> str | None:
    """The orchestrator API's address for the links in the body: DODAS_API_URL, else this Airflow's (dodas_api)."""
    explicit = os.environ.get("DODAS_API_URL")
    if explicit:
        return explicit.rstrip("/")
    api = rest_client()
    return f"{api.base_url}{API_PREFIX}" if api is not None else None


class NotifyOperator(DeploymentOperator):
    """Last task of a run of a deployment with a callback: tells the callback URL of the final state reached."""

    ui_color = "#fdfde8"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)

    def execute(self, context: Context) -> None:
        with Store() as store:
            dep = store.get_deployment(self.deployment_id)
        if not dep.callback or dep.status not in FINAL_STATUSES:
            raise AirflowSkipException(f"{dep.status} is not a final state: nothing to tell")
        payload = deployment_resource(dep, api_base_url()).model_dump(mode="json", exclude_none=True)
        self.log.info("telling %s that the deployment is %s", dep.callback, dep.status)
        self.defer(
            trigger=CallbackTrigger(dep.callback, payload),
            method_name="execute_complete",
            timeout=timedelta(minutes=10),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        with Store() as store:
            dep = store.get_deployment(self.deployment_id)
            verdict = "delivered" if event["delivered"] else "NOT delivered"
            tries = f"{event['detail']}, {event['attempts']} attempt(s)"
            message = f"{event['status']} {verdict} to {dep.callback} ({tries})"
            store.add_event(self.deployment_id, EVENT_KIND, message)
        self.log.info("callback %s", message)
        return event
