"""The pages inside Airflow's api-server: the same store, IAM client and run starter as the orchestrator API there,
Airflow's own tokens (the UI's cookie) accepted; built at the first request (see api/in_airflow.py)."""

from __future__ import annotations

from typing import Any

UI_PREFIX = "/dodas/ui"  # where the plugin mounts the pages


def airflow_ui_app() -> Any:
    from dodas_tasks.airflow.hooks.store import shared_store
    from dodas_tasks.api.in_airflow import iam_client
    from dodas_tasks.api.runs import AirflowRuns
    from dodas_tasks.ui.app import create_ui_app

    return create_ui_app(store=shared_store, iam=iam_client, runs=AirflowRuns(), airflow_tokens=True)
