"""The user-facing request DAGs (dodas_submit, dodas_undeploy, dodas_scale) and their task bodies: params in,
store requests out."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowFailException

from dodas_tasks.airflow.dag_factories import service_dag
from dodas_tasks.airflow.hooks.airflow_api import API_CONN_ID, note_run, rest_client
from dodas_tasks.clouds.base import known_clouds
from dodas_tasks.naming import SCALE_DAG_ID, SUBMIT_DAG_ID, UNDEPLOY_DAG_ID, deployment_dag_id
from dodas_tasks.store import DeploymentIdError, Store
from dodas_tasks.store.ids import MIN_ID_PREFIX

log = logging.getLogger(__name__)
TEMPLATES_DIR = Path(__file__).resolve().parents[3] / "templates"
DAG_FILE_ANCHOR = SUBMIT_DAG_ID  # a DAG defined in the same file as the deployment DAGs


def submit_dag() -> DAG:
    """dodas_submit: register (validate, store) → publish (make the deployment DAG appear now)."""
    with service_dag(
        SUBMIT_DAG_ID,
        description="Deploy a cluster from a TOSCA template",
        schedule=None,
        # Every field has a default and a type that admits null: Airflow's trigger form stars (and requires a
        # value in) any field whose type does not, so the form submits as it opens (spark_local.yaml on local).
        params={
            "template": Param(
                "spark_local.yaml",
                type=["null", "string"],
                enum=[*template_choices(), None],
                values_display={"null": "(none: deploy the pasted template)"},
                title="Template",
                description="A ready template from templates/. A template pasted below wins over this choice.",
            ),
            "template_text": Param(
                None,
                type=["null", "string"],
                format="multiline",
                title="Or paste a TOSCA template",
                description="Optional. When given, this template is deployed and the choice above is ignored "
                "(the run's note says which one was deployed).",
            ),
            "inputs": Param({}, type=["null", "object"], title="Inputs", description='e.g. {"number_of_workers": 2}'),
            "cloud": Param(
                "local",
                type=["null", "string"],
                enum=[*known_clouds(), None],
                values_display={"null": "local (the default)"},
                title="Cloud",
            ),
            "failover_clouds": Param(
                [],
                type=["null", "array"],
                items={"type": "string"},
                title="Failover clouds",
                description="Optional. Clouds to try in this order if provisioning fails on the first "
                "(quota, timeout, errors)",
            ),
            "options": Param(
                {},
                type=["null", "object"],
                title="Options",
                description='Optional, e.g. {"on_partial": "keep", "min_ready": 0.8, "max_providers_retry": 2}',
            ),
            "delegation": Param(
                None,
                type=["null", "string"],
                title="Delegation (optional)",
                description="Makes the deployment yours, able to act for you for months: the handle that "
                "POST /dodas/orchestrator/delegations answers to your IAM access token (or `dodas submit "
                "--oidc-agent`). Valid once, for 15 minutes.",
            ),
            # An access token given here would stay in the run's conf, an Airflow table: runs carrying one are
            # refused when they are created (const: hidden in the form), before anything stores it.
            "access_token": Param(
                None,
                type=["null", "string"],  # admits null: the form requires nothing (the field is hidden: const)
                const=None,
                title="IAM access token (not accepted)",
                description="Not accepted in a run's conf: delegate it at POST /dodas/orchestrator/delegations "
                "and give the handle as `delegation`.",
            ),
        },
        doc_md=(
            "Submit a TOSCA template: it is validated, registered, and its deployment DAG starts by itself. "
            "The run's note names the new deployment and its DAG (or says why the submission was refused); "
            "the `register` task's XCom holds them as JSON (`deployment_id`, `dag_id`)."
        ),
    ) as dag:
        publish(register())
    return dag


def undeploy_dag() -> DAG:
    """dodas_undeploy: mark the deployment for deletion → run its deployment DAG (which deletes)."""
    with service_dag(
        UNDEPLOY_DAG_ID,
        description="Delete every resource of a deployment",
        schedule=None,
        params={"deployment_id": deployment_id_param()},
    ) as dag:
        mark() >> TriggerDagRunOperator(
            task_id="run_deployment_dag", trigger_dag_id="{{ ti.xcom_pull(task_ids='mark')['dag_id'] }}"
        )
    return dag


def scale_dag() -> DAG:
    """dodas_scale: record the desired count of a group → run the deployment DAG (which reconciles)."""
    with service_dag(
        SCALE_DAG_ID,
        description="Set the number of VMs of a compute group",
        schedule=None,
        params={
            "deployment_id": deployment_id_param(),
            "group": Param(type="string", title="Compute group (TOSCA node name)"),
            "count": Param(1, type="integer", minimum=0, title="Desired count"),
            "removal_list": Param(
                [], type=["null", "array"], items={"type": "string"}, title="Node ids or names to remove (optional)"
            ),
        },
    ) as dag:
        request() >> TriggerDagRunOperator(
            task_id="run_deployment_dag", trigger_dag_id="{{ ti.xcom_pull(task_ids='request')['dag_id'] }}"
        )
    return dag


# The tasks (module level, so each callable's name is the task's); no docstrings: TaskFlow would show them as docs.


@task
def register(params: dict, dag_run=None) -> dict:
    chose = "template" in (getattr(dag_run, "conf", None) or {})  # the form sends it; a REST caller may not
    with refusal_noted(dag_run):
        info = register_submission(params, getattr(dag_run, "triggering_user_name", None), template_chosen=chose)
    note_run(dag_run, f"deployment {info['deployment_id']} (DAG {info['dag_id']}) from {info['source']}")
    return info


@task
def publish(info: dict) -> dict:
    return publish_deployment_dag(info)


@task
def mark(params: dict, dag_run=None) -> dict:
    with refusal_noted(dag_run):
        info = undeploy(params["deployment_id"])
    note_run(dag_run, f"deployment {info['deployment_id']}: deletion requested; {info['dag_id']} deletes it")
    return info


@task
def request(params: dict, dag_run=None) -> dict:
    with refusal_noted(dag_run):
        info = scale(params["deployment_id"], params["group"], params["count"], params.get("removal_list") or [])
    note_run(
        dag_run,
        f"deployment {info['deployment_id']}: {params['group']} set to {params['count']}; {info['dag_id']} applies it",
    )
    return info


def deployment_id_param() -> Param:
    return Param(
        type="string",
        minLength=MIN_ID_PREFIX,
        maxLength=36,
        pattern="^[0-9a-fA-F-]+$",
        title="Deployment id",
        description=f"The full id or its first {MIN_ID_PREFIX}+ characters (the short id in the deployment's DAG name)",
    )


@contextmanager
def refusal_noted(dag_run: Any) -> Iterator[None]:
    """A refused request fails its task and says why on the run's note, where the UI and REST callers see it."""
    try:
        yield
    except AirflowFailException as exc:
        note_run(dag_run, f"Refused: {exc}")
        raise


def template_choices() -> list[str]:
    return sorted(p.name for p in TEMPLATES_DIR.glob("*.yaml"))


def register_submission(params: dict[str, Any], user: str | None, template_chosen: bool = True) -> dict[str, str]:
    """Validate and register a submission; a bad template or input fails the task with the full report.

    A pasted template wins over the template choice (said in `source` when one was `template_chosen`). With a
    `delegation` (the handle of an IAM token delegated at the API) the deployment is owned by the token's subject
    and acts for them for months; the run's conf never holds an access token.
    """
    delegation = params.get("delegation") or None
    if delegation:
        from airflow.sdk.log import mask_secret

        mask_secret(delegation)  # until this task takes it, it names the owner's delegation
    text = (params.get("template_text") or "").strip()
    name = params.get("template") or ""
    if text:
        source = "pasted template"
        origin = source + (f" (the template choice {name!r} was ignored)" if name and template_chosen else "")
    else:
        if name not in template_choices():
            raise AirflowFailException(
                f"template {name!r} is not in templates/: choose one of {', '.join(template_choices())} or paste one"
                if name
                else f"no template: choose one of {', '.join(template_choices())} or paste one"
            )
        text = (TEMPLATES_DIR / name).read_text()
        source = origin = f"templates/{name}"
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
                delegation=delegation,
                failover_clouds=list(params.get("failover_clouds") or []),
                options=dict(params.get("options") or {}),
            )
        except DodasTemplateError as exc:
            log.error("%s", exc.report())
            raise AirflowFailException(exc.report()) from None
        except IamError as exc:  # unknown or used delegation: nothing was created; no secret in the message
            raise AirflowFailException(f"IAM: {exc}") from None
    log.info("registered deployment %s: its DAG is %s", deployment_id, deployment_dag_id(deployment_id))
    return {"deployment_id": deployment_id, "dag_id": deployment_dag_id(deployment_id), "source": origin}


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
    """Mark a deployment (full id or prefix) for deletion; a refusal fails the task with the reason."""
    from dodas_tasks.deploy import service

    with Store() as store:
        try:
            deployment_id = service.request_undeploy(store, deployment_id)
        except (DeploymentIdError, service.RequestRefused) as exc:
            raise AirflowFailException(str(exc)) from None
    return {"deployment_id": deployment_id, "dag_id": deployment_dag_id(deployment_id)}


def scale(deployment_id: str, group: str, count: int, removal_list: list[str]) -> dict[str, str]:
    """Record the desired count of a group (full id or prefix); a refusal fails the task with the reason."""
    from dodas_tasks.deploy import service

    with Store() as store:
        try:
            deployment_id = service.request_scale(
                store, deployment_id, group, count, removal_list, reason="requested by user"
            )
        except (DeploymentIdError, service.RequestRefused) as exc:
            raise AirflowFailException(str(exc)) from None
    return {"deployment_id": deployment_id, "dag_id": deployment_dag_id(deployment_id)}
