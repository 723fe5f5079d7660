"""Task bodies of the user-facing DAGs (dodas_submit, dodas_undeploy, dodas_scale): params in, store requests out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from dodas_tasks.airflow.rest import API_CONN_ID, AirflowApi
from dodas_tasks.naming import SUBMIT_DAG_ID, deployment_dag_id
from dodas_tasks.store import DeploymentNotFoundError, Store

log = logging.getLogger(__name__)
TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
DAG_FILE_ANCHOR = SUBMIT_DAG_ID  # a DAG defined in the same file as the deployment DAGs


def template_choices() -> list[str]:
    return sorted(p.name for p in TEMPLATES_DIR.glob("*.yaml"))


def register(params: dict[str, Any], user: str | None) -> dict[str, str]:
    """Validate and register a submission; a bad template or input fails the task with the full report.

    With an IAM `access_token` the deployment is delegated: owned by the token's subject, refreshed for hours.
    """
    token = params.get("access_token") or None
    iam = None
    if token:
        from airflow.sdk.log import mask_secret

        mask_secret(token)  # before anything can log it
        from dodas_tasks.airflow.iam_hook import IamHook

        iam = IamHook().client
    text = (params.get("template_text") or "").strip()
    source = "pasted template"
    if not text:
        name = params.get("template") or ""
        if name not in template_choices():
            raise AirflowFailException(f"template {name!r} is not in templates/: choose one of {template_choices()}")
        text = (TEMPLATES_DIR / name).read_text()
        source = f"templates/{name}"
    from dodas_tasks.deploy import service  # compiler and tosca-parser load in the task, not at DAG parse
    from dodas_tasks.iam import IamError
    from dodas_tasks.tosca.errors import DodasTemplateError

    inputs = params.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise AirflowFailException('inputs must be a JSON object such as {"number_of_workers": 2}')
    with Store() as store:
        try:
            deployment_id = service.submit(
                store,
                text,
                inputs,
                cloud=params.get("cloud") or "local",
                owner=service.Owner(subject=user or "airflow-user", issuer="airflow"),
                source=source,
                access_token=token,
                iam=iam,
                failover_clouds=list(params.get("failover_clouds") or []),
                options=dict(params.get("options") or {}),
            )
        except DodasTemplateError as exc:
            log.error("%s", exc.report())
            raise AirflowFailException(exc.report()) from None
        except IamError as exc:  # invalid/expired token, IdP down: nothing was created; no token in the message
            raise AirflowFailException(f"IAM: {exc}") from None
    log.info("registered deployment %s: its DAG is %s", deployment_id, deployment_dag_id(deployment_id))
    return {"deployment_id": deployment_id, "dag_id": deployment_dag_id(deployment_id)}


def publish(info: dict[str, str]) -> dict[str, str]:
    """Make the new deployment DAG appear now (re-parse its file) instead of at the next periodic parse."""
    api = AirflowApi.connect()
    if api is None:
        log.info("no %r connection: %s appears at the next periodic parse of the DAG folder", API_CONN_ID, info)
        return info
    api.reparse_file_of(DAG_FILE_ANCHOR)
    log.info("asked the DAG processor to parse the deployment DAGs again: %s appears in a moment", info["dag_id"])
    return info


def undeploy(deployment_id: str) -> dict[str, str]:
    from dodas_tasks.deploy import service

    with Store() as store:
        try:
            service.request_undeploy(store, deployment_id)
        except (DeploymentNotFoundError, service.RequestRefused) as exc:
            raise AirflowFailException(str(exc)) from None
    return {"deployment_id": deployment_id, "dag_id": deployment_dag_id(deployment_id)}


def scale(deployment_id: str, group: str, count: int, removal_list: list[str]) -> dict[str, str]:
    from dodas_tasks.deploy import service

    with Store() as store:
        try:
            service.request_scale(store, deployment_id, group, count, removal_list, reason="requested by user")
        except (DeploymentNotFoundError, service.RequestRefused) as exc:
            raise AirflowFailException(str(exc)) from None
    return {"deployment_id": deployment_id, "dag_id": deployment_dag_id(deployment_id)}
