"""DODAS on Airflow's plugin: the INDIGO PaaS orchestrator REST API under /dodas/orchestrator of the api-server, and
the Deployments pages under /dodas/ui, shown in Airflow's navigation and as a "Deployment" tab of each DAG.

Thin on purpose: the API lives in dodas_tasks/api/, the pages in dodas_tasks/ui/ (tested on their own); plugin
routes are open by default in Airflow, so both authenticate every request themselves (IAM or Airflow tokens).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dodas_tasks.api.in_airflow import OnFirstRequest
from dodas_tasks.deploy.orchestrator_view import API_PREFIX  # the callback's links point here too
from dodas_tasks.ui.in_airflow import UI_PREFIX, airflow_ui_app


class DodasPlugin(AirflowPlugin):
    name = "dodas"
    fastapi_apps = [  # noqa: RUF012 - Airflow's declared form
        {"app": OnFirstRequest(), "url_prefix": API_PREFIX, "name": "DODAS orchestrator API (INDIGO PaaS compatible)"},
        {"app": OnFirstRequest(airflow_ui_app), "url_prefix": UI_PREFIX, "name": "DODAS deployments pages"},
    ]
    # Shown by Airflow's UI in a frame: the nav entry at /plugin/deployments, the tab at /dags/<dag>/plugin/deployment.
    external_views = [  # noqa: RUF012 - Airflow's declared form
        {
            "name": "Deployments",
            "href": f"{UI_PREFIX}/deployments",
            "destination": "nav",
            "url_route": "deployments",
            "nav_top_level": True,
            "icon": f"{UI_PREFIX}/static/icon.svg",
        },
        {
            "name": "Deployment",
            "href": f"{UI_PREFIX}/dags/{{DAG_ID}}",
            "destination": "dag",
            "url_route": "deployment",
        },
    ]
