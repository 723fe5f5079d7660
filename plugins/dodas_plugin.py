"""DODAS on Airflow's plugin: the INDIGO PaaS orchestrator REST API under /dodas/orchestrator of the api-server.

Thin on purpose: the API lives in dodas_tasks/api/ (tested on its own); plugin routes are open by default in
Airflow, so the API authenticates every deployment route itself (IAM or Airflow tokens).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dodas_tasks.api.in_airflow import OnFirstRequest
from dodas_tasks.deploy.orchestrator_view import API_PREFIX  # the callback's links point here too


class DodasPlugin(AirflowPlugin):
    name = "dodas"
    fastapi_apps = [  # noqa: RUF012 - Airflow's declared form
        {"app": OnFirstRequest(), "url_prefix": API_PREFIX, "name": "DODAS orchestrator API (INDIGO PaaS compatible)"}
    ]
