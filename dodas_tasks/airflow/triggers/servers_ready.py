"""Deferrable waits: the triggerer polls the cloud while no worker slot is held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from dodas_tasks.clouds.base import BUILD


class ServersReadyTrigger(BaseTrigger):
    """Fires when none of the given nodes is still BUILD at the cloud (ACTIVE or ERROR, the operator decides)."""

    def __init__(self, deployment_id: str, group: str, node_ids: list[str], poll_interval: float = 1.0) -> None:
        super().__init__()
        self.deployment_id = deployment_id
        self.group = group
        self.node_ids = list(node_ids)
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "deployment_id": self.deployment_id,
                "group": self.group,
                "node_ids": self.node_ids,
                "poll_interval": self.poll_interval,
            },
        )

    def _poll(self) -> dict[str, str]:
        from dodas_tasks.airflow.hooks.iam import owner_access_tokens
        from dodas_tasks.deploy.provision import GroupProvisioner
        from dodas_tasks.store import Store

        with Store() as store:
            delegated = store.get_deployment(self.deployment_id).has_refresh_token
            tokens = owner_access_tokens(store, self.deployment_id) if delegated else None  # sites acting as owner
            return GroupProvisioner(store, self.deployment_id, self.group, tokens=tokens).poll(self.node_ids)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            statuses = await asyncio.to_thread(self._poll)
            waiting = [node for node, status in statuses.items() if status == BUILD]
            if not waiting:
                yield TriggerEvent({"statuses": statuses})
                return
            self.log.info("%s: %d of %d server(s) still booting", self.group, len(waiting), len(statuses))
            await asyncio.sleep(self.poll_interval)
