"""DODAS on Airflow: the submit/undeploy/scale DAGs and one DAG per deployment, generated from the store.

They share this file on purpose: re-parsing it on demand (after a submission) is what makes a new deployment DAG
appear at once, and a file is only re-parsed on demand once Airflow knows a DAG in it (dodas_submit).
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, task

from dodas_tasks.airflow import requests
from dodas_tasks.airflow.dag_factory import START, deployment_dags
from dodas_tasks.clouds.base import known_clouds
from dodas_tasks.naming import SCALE_DAG_ID, SUBMIT_DAG_ID, UNDEPLOY_DAG_ID

with DAG(
    dag_id=SUBMIT_DAG_ID,
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
            enum=requests.template_choices(),
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
):

    @task
    def register(params: dict, dag_run=None) -> dict:
        return requests.register(params, getattr(dag_run, "triggering_user_name", None))

    @task
    def publish(info: dict) -> dict:
        return requests.publish(info)

    publish(register())

with DAG(
    dag_id=UNDEPLOY_DAG_ID,
    description="Delete every resource of a deployment",
    schedule=None,
    start_date=START,
    catchup=False,
    is_paused_upon_creation=False,
    tags=["dodas"],
    params={"deployment_id": Param(type="string", minLength=36, maxLength=36, title="Deployment id")},
):

    @task
    def mark(params: dict) -> dict:
        return requests.undeploy(params["deployment_id"])

    mark() >> TriggerDagRunOperator(
        task_id="run_deployment_dag", trigger_dag_id="{{ ti.xcom_pull(task_ids='mark')['dag_id'] }}"
    )

with DAG(
    dag_id=SCALE_DAG_ID,
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
):

    @task
    def request(params: dict) -> dict:
        return requests.scale(params["deployment_id"], params["group"], params["count"], params["removal_list"])

    request() >> TriggerDagRunOperator(
        task_id="run_deployment_dag", trigger_dag_id="{{ ti.xcom_pull(task_ids='request')['dag_id'] }}"
    )

globals().update(deployment_dags())
