"""The elasticity watch as a task: it defers to the elasticity trigger at once, carries out the decision the
trigger hands back and, when needed, runs the deployment DAG."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Context

from dodas_tasks.airflow.hooks.store import shared_store
from dodas_tasks.airflow.triggers.elasticity import ElasticityTrigger
from dodas_tasks.naming import deployment_dag_id


class ElasticityOperator(TriggerDagRunOperator):
    """Waits (deferred) for the policy's next decision, carries it out and, when needed, runs the deployment DAG.

    A run requested while the deployment DAG is busy queues behind it (max_active_runs=1): never refused.
    """

    ui_color = "#fdf9e8"

    def __init__(self, *, deployment_id: str, **kwargs: Any) -> None:
        super().__init__(trigger_dag_id=deployment_dag_id(deployment_id), **kwargs)
        self.deployment_id = deployment_id

    def execute(self, context: Context) -> None:
        from dodas_tasks.elastic.actions import load_state

        state = load_state(shared_store(), self.deployment_id)
        self.defer(
            trigger=ElasticityTrigger(self.deployment_id, state.to_dict()), method_name="execute_complete_decision"
        )

    def execute_complete_decision(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        from dodas_tasks.elastic.actions import apply, summary
        from dodas_tasks.elastic.observe import Target
        from dodas_tasks.elastic.policy import Decision, PolicyState

        if event.get("action") == "stop":
            self.log.info("%s", event.get("reason"))
            return {"action": "stop"}
        store = shared_store()
        target = Target.of(store.get_deployment(self.deployment_id))
        decision = Decision.from_dict(event["decision"])
        needs_run = event.get("needs_run")
        if needs_run is None:  # a scale-in: draining talks SSH, done here rather than in the triggerer
            needs_run = apply(store, target, decision, PolicyState.from_dict(event["state"]), log=self.log.info)
        else:
            self.log.info("%s (recorded by the trigger): %s", decision.action, decision.reason)
        if needs_run and event.get("run_id"):
            self.log.info("the trigger started %s run %s to apply it", self.trigger_dag_id, event["run_id"])
        elif needs_run:
            self.log.info("running %s to apply it", self.trigger_dag_id)
            super().execute(context)  # raises DagRunTriggerException: the task runner creates the run
        return summary(decision, target)
