"""Airflow glue for elasticity and healing: a trigger that watches the load in the triggerer, the operator that
acts on its decision and runs the deployment DAG, and the healing task body.

The watch costs no worker slot: the operator defers at once and the trigger polls the framework every
poll_interval, handing back only decisions that change something.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Context
from airflow.triggers.base import BaseTrigger, TriggerEvent

from dodas_tasks.naming import deployment_dag_id
from dodas_tasks.store import Store


@functools.cache
def shared_store() -> Store:
    """One store (engine, pool) per process: the triggerer polls hundreds of deployments every few seconds."""
    return Store()


class ElasticityTrigger(BaseTrigger):
    """Polls one deployment's load and runs the policy; fires with the first decision that does something.

    Decisions without SSH work (scale-out, backoff, retry, drop failed nodes) are recorded in the store by the
    trigger itself, which also starts the deployment run through the REST API when it can (`dodas_api`): the
    reaction waits for no worker slot; the task then only logs it (or starts the run, without the connection).
    """

    def __init__(self, deployment_id: str, state: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.deployment_id = deployment_id
        self.state = dict(state or {})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"deployment_id": self.deployment_id, "state": self.state},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from dodas_tasks.elastic.actions import apply
        from dodas_tasks.elastic.observe import Target, observe
        from dodas_tasks.elastic.policy import NONE, SCALE_IN, PolicyState, decide

        store = shared_store()
        target = await asyncio.to_thread(lambda: Target.of(store.get_deployment(self.deployment_id)))
        state = PolicyState.from_dict(self.state)
        said = ""
        while True:
            seen = await asyncio.to_thread(observe, store, target, time.time())
            if seen.gone:
                yield TriggerEvent({"action": "stop", "reason": "the deployment is deleted"})
                return
            if seen.observation is None:
                decision_reason = seen.hold
            else:
                decision, state = decide(state, seen.observation, target.settings)
                if decision.action != NONE:
                    event = {"decision": decision.to_dict(), "state": state.to_dict()}
                    if decision.action != SCALE_IN:  # recorded now, here: no wait for a worker slot
                        event["needs_run"] = await asyncio.to_thread(
                            apply, store, target, decision, state, self.log.info
                        )
                        if event["needs_run"]:
                            event["run_id"] = await self._start_run(f"{decision.action}: {decision.reason}")
                    yield TriggerEvent(event)
                    return
                decision_reason = decision.reason
            if decision_reason != said:  # log changes only: hundreds of these run in one triggerer
                self.log.info("%s: %s", self.deployment_id, decision_reason)
                said = decision_reason
            await asyncio.sleep(target.settings.poll_interval)

    async def _start_run(self, note: str) -> str | None:
        """The deployment run, created here through the REST API; None leaves it to the task."""
        from dodas_tasks.airflow.rest import AirflowApi

        api = await AirflowApi.aconnect()
        if api is None:
            return None
        try:
            run_id = await api.atrigger_run(deployment_dag_id(self.deployment_id), note[:1000])
        except Exception as exc:  # the API is down or refuses: the task starts the run instead
            self.log.warning("%s: could not start the deployment run through the REST API: %s", self.deployment_id, exc)
            return None
        self.log.info("%s: started %s", self.deployment_id, run_id)
        return run_id


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


def run_is_active(context: Context) -> Any:
    """A check, for healing, that a deployment's DAG has a run queued or running (asked through the Task SDK)."""
    ti = context["ti"]

    def active(deployment_id: str) -> bool:
        try:
            return ti.get_dr_count(dag_id=deployment_dag_id(deployment_id), states=["queued", "running"]) > 0
        except Exception:  # a DAG not parsed yet has no runs
            return False

    return active


def heal(context: Context, log: Any) -> list[str]:
    """The healing pass: every serving deployment checked; returns the deployment DAGs to run."""
    from dodas_tasks.elastic.health import check_all

    reports = check_all(shared_store(), run_is_active(context), log=log)
    for report in reports:
        if report.marked or report.notes:
            log(f"{report.deployment_id}: marked {report.marked or 'none'}; {'; '.join(report.notes)}")
    return [deployment_dag_id(r.deployment_id) for r in reports if r.trigger]
