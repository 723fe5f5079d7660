"""One elasticity DAG per elastic deployment (`dodas_elastic_<id8>`), generated from the stored plans."""

from __future__ import annotations

from dodas_tasks.airflow.dag_factories.elasticity import elastic_dags

globals().update(elastic_dags())
