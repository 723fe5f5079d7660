"""The healing DAG (dodas_healing): replaces unhealthy nodes of every deployment; see its factory."""

from __future__ import annotations

from dodas_tasks.airflow.dag_factories.healing import healing_dag

dodas_healing = healing_dag()
