"""DODAS on Airflow: the submit/undeploy/scale DAGs and one DAG per deployment, generated from the store.

They share this file on purpose: re-parsing it on demand (after a submission) is what makes a new deployment DAG
appear at once, and a file is only re-parsed on demand once Airflow knows a DAG in it (dodas_submit).
"""

from __future__ import annotations

from dodas_tasks.airflow.dag_factories.deployment import deployment_dags
from dodas_tasks.airflow.dag_factories.user_requests import scale_dag, submit_dag, undeploy_dag

dodas_submit = submit_dag()
dodas_undeploy = undeploy_dag()
dodas_scale = scale_dag()
globals().update(deployment_dags())
