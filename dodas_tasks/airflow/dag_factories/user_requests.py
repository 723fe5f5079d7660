"""The user-facing request DAGs (dodas_submit, dodas_undeploy, dodas_scale) and their task bodies: params in,
store requests out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowFailException

from dodas_tasks.airflow.dag_factories import START
from dodas_tasks.airflow.hooks.airflow_api import API_CONN_ID, rest_client
from dodas_tasks.clouds.base import known_clouds
from dodas_tasks.naming import deployment_dag_id
from dodas_tasks.store import DeploymentNotFoundError, Store

log = logging.getLogger(__name__)
TEMPLATES_DIR = Path(__file__).resolve().parents[3] / "templates"
DAG_FILE_ANCHOR = "dodas_submit"  # a DAG defined in the same file as the deployment DAGs


def submit_dag() -> DAG:
    """dodas_submit: register (validate, store) → publish (make the deployment DAG appear now)."""
    with DAG(
        dag_id="dodas_submit",
        description="Deploy a cluster from a TOSCA template",
        schedule=None,
        start_date=START,
        catchup=False,
        is_paused_upon_creation=False,
        tags=["dodas"],
        params={
            "template": Param(
                "spark_local.yaml",
                type="string",
                enum=template_choices(),
                title="Template",
                description="A ready template from templates/ (ignored if one is pasted)",
            ),
            "template_text": Param("", type="string", format="multiline", title="Or paste a TOSCA template"),
            "inputs": Param({}, type="object", title="Inputs", description='e.g. {"number_of_workers": 2}'),
            "cloud": Param("local", type="string", enum=known_clouds(), title="Cloud"),
            "failover_clouds": Param(
                [],
                type="array",
                items={"type": "string"},
                title="Failover clouds",
                description="Clouds to try in this order if provisioning fails on the first (quota, timeout, errors)",
            ),
            "options": Param(
                {},
                type="object",
                title="Options",
                description='e.g. {"on_partial": "keep", "min_ready": 0.8, "max_providers_retry": 2}',
            ),
            # "access_token" is in Airflow's sensitive names: the masker hides it in conf and logs
            "access_token": Param(
                None,
                type=["null", "string"],
                title="IAM access token (optional)",
                description="Your INDIGO IAM access token: the deployment becomes yours and can act for you for months",
            ),
        },
        doc_md="Submit a TOSCA template: it is validated, registered, and its deployment DAG starts by itself.",
    ) as dag:
        publish(register())
    return dag


def undeploy_dag() -> DAG:
    """dodas_undeploy: mark the deployment for deletion → run its deployment DAG (which deletes)."""
    with DAG(
        dag_id="dodas_undeploy",
        description="Delete every resource of a deployment",
        schedule=None,
        start_date=START,
        catchup=False,
        is_paused_upon_creation=False,
        tags=["dodas"],
        params={"deployment_id": Param(type="string", minLength=36, maxLength=36, title="Deployment id")},
    ) as dag:
        mark() >> TriggerDagRunOperator(
            task_id="run_deployment_dag", trigger_dag_id="{{ ti.xcom_pull(task_ids='mark')['dag_id'] }}"
        )
    return dag


def scale_dag() -> DAG:
    """dodas_scale: record the desired count of a group → run the deployment DAG (which reconciles)."""
    with DAG(
        dag_id="dodas_scale",
        description="Set the number of VMs of a compute group",
        schedule=None,
        start_date=START,
        catchup=False,
        is_paused_upon_creation=False,
        tags=["dodas"],
        params={
            "deployment_id": Param(type="string", minLength=36, maxLength=36, title="Deployment id"),
            "group": Param(type="string", title="Compute group (TOSCA node name)"),
            "count": Param(1, type="integer", minimum=0, title="Desired count"),
            "removal_list": Param([], type="array", items={"type": "string"}, title="Node ids or names to remove"),
        },
    ) as dag:
        request() >> TriggerDagRunOperator(
            task_id="run_deployment_dag", trigger_dag_id="{{ ti.xcom_pull(task_ids='request')['dag_id'] }}"
        )
    return dag


# The tasks (module level, so each callable's name is the task's); no docstrings: TaskFlow would show them as docs.


@task
def register(params: dict, dag_run=None) -> dict:
    return register_submission(params, getattr(dag_run, "triggering_user_name", None))


@task
def publish(info: dict) -> dict:
    return publish_deployment_dag(info)


@task
def mark(params: dict) -> dict:
    return undeploy(params["deployment_id"])


@task
def request(params: dict) -> dict:
    return scale(params["deployment_id"], params["group"], params["count"], params["removal_list"])


def template_choices() -> list[str]:
    return sorted(p.name for p in TEMPLATES_DIR.glob("*.yaml"))


def register_submission(params: dict[str, Any], user: str | None) -> dict[str, str]:
    """Validate and register a submission; a bad template or input fails the task with the full report.

    With an IAM `access_token` the deployment is delegated: owned by the token's subject, refreshed for hours.
    """
    token = params.get("access_token") or None
    iam = None
    if token:
        from airflow.sdk.log import mask_secret

        mask_secret(token)  # before anything can log it
        from dodas_tasks.airflow.hooks.iam import IamHook

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
                owner=service.Owner(subject=user or "airflow-user", issuer=service.AIRFLOW_ISSUER),
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


def publish_deployment_dag(info: dict[str, str]) -> dict[str, str]:
    """Make the new deployment DAG appear now (re-parse its file) instead of at the next periodic parse."""
    api = rest_client()
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
