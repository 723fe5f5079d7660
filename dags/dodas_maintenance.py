"""Maintenance DAGs of DODAS on Airflow: leak collection on every configured cloud (dodas_leak_collector)."""

from __future__ import annotations

from dodas_tasks.airflow.dag_factories.maintenance import leak_collector_dag

dodas_leak_collector = leak_collector_dag()
