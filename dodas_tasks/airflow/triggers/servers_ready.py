"""Deferrable waits: the triggerer polls the cloud while no worker slot is held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from dodas_tasks.clouds.base import BUILD


class ServersReadyTrigger(BaseTrigger):
    """Fires when none of the given nodes is still BUILD at the cloud (ACTIVE or ERROR, the operator decides), or
    at once when the deployment is being deleted (`deleting` in the event): its VMs are then the deletion's."""

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

    def _poll(self) -> dict[str, str] | None:
        """The nodes' cloud statuses, or None when the deployment is being deleted."""
        from dodas_tasks.airflow.hooks.iam import owner_access_tokens
        from dodas_tasks.deploy.provision import GroupProvisioner
        from dodas_tasks.store import DeploymentStatus, Store

        with Store() as store:
            dep = store.get_deployment(self.deployment_id)
            if dep.status == DeploymentStatus.DELETE_IN_PROGRESS:
                return None
            # sites acting as the owner need the owner's tokens
            tokens = owner_access_tokens(store, self.deployment_id) if dep.has_refresh_token else None
            return GroupProvisioner(store, self.deployment_id, self.group, tokens=tokens).poll(self.node_ids)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            statuses = await asyncio.to_thread(self._poll)
            if statuses is None:
                self.log.info("%s: the deployment is being deleted; no longer waiting for its servers", self.group)
                yield TriggerEvent({"statuses": {}, "deleting": True})
                return
            waiting = [node for node, status in statuses.items() if status == BUILD]
            if not waiting:
                yield TriggerEvent({"statuses": statuses})
                return
            self.log.info("%s: %d of %d server(s) still booting", self.group, len(waiting), len(statuses))
            await asyncio.sleep(self.poll_interval)
