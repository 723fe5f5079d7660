"""The elasticity watch in the triggerer: polls one deployment's load and runs the policy, costing no worker slot.

The operator (operators/elasticity.py) defers to it at once; it hands back only decisions that change something.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from dodas_tasks.airflow.hooks.store import shared_store
from dodas_tasks.naming import deployment_dag_id


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
        from dodas_tasks.airflow.hooks.airflow_api import arest_client

        api = await arest_client()
        if api is None:
            return None
        try:
            run_id = await api.atrigger_dag(deployment_dag_id(self.deployment_id), note=note[:1000])
        except Exception as exc:  # the API is down or refuses: the task starts the run instead
            self.log.warning("%s: could not start the deployment run through the REST API: %s", self.deployment_id, exc)
            return None
        self.log.info("%s: started %s", self.deployment_id, run_id)
        return run_id
