"""Leak collection: find what DODAS left on a cloud and remove what no live deployment owns.

A resource is a leak when its deployment is unknown to the store or fully deleted, or when it is a server the store
does not record for a live deployment (a crash between create and record that no run adopted). Resources younger
than the grace period are left alone: they may belong to a creation in flight.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dodas_tasks.clouds.base import CloudDriver, CloudError, ProjectResource, get_driver
from dodas_tasks.store import DeploymentNotFoundError, DeploymentStatus, Store

DEFAULT_GRACE = timedelta(minutes=15)
_SERVER_KINDS = {"server", "instance"}


@dataclass
class LeakReport:
    checked: int = 0
    removed: list[str] = field(default_factory=list)  # "cloud kind id (why)"
    kept_young: int = 0
    errors: list[str] = field(default_factory=list)


def configured_clouds() -> list[str]:
    """DODAS_CLOUDS (comma-separated), else only the embedded local cloud."""
    return [c.strip() for c in os.environ.get("DODAS_CLOUDS", "local").split(",") if c.strip()]


def collect_leaks(
    store: Store,
    clouds: Iterable[str] | None = None,
    grace: timedelta = DEFAULT_GRACE,
    log: Callable[[str], None] = print,
    driver_for: Callable[[str], CloudDriver] = get_driver,
) -> LeakReport:
    report = LeakReport()
    now = datetime.now(UTC)
    for cloud in clouds or configured_clouds():
        try:
            driver = driver_for(cloud)
            resources = driver.list_project_resources()
        except CloudError as exc:
            report.errors.append(f"{cloud}: cannot list resources: {exc}")
            continue
        for resource in resources:
            report.checked += 1
            why = _leak_reason(store, cloud, resource)
            if why is None:
                continue
            if resource.created_at is not None and now - resource.created_at < grace:
                report.kept_young += 1
                continue
            label = f"{cloud} {resource.kind} {resource.id} ({why})"
            try:
                driver.delete_resource(resource.kind, resource.id)
            except CloudError as exc:
                report.errors.append(f"{label}: {exc}")
                continue
            report.removed.append(label)
            log(f"removed leaked {label}")
            if resource.deployment and _exists(store, resource.deployment):
                store.add_event(resource.deployment, "leak", f"removed leaked {label}")
    return report


def _exists(store: Store, deployment_id: str) -> bool:
    try:
        store.get_deployment(deployment_id)
    except DeploymentNotFoundError:
        return False
    return True


def _leak_reason(store: Store, cloud: str, resource: ProjectResource) -> str | None:
    if not resource.deployment:
        return "no deployment tag"
    try:
        dep = store.get_deployment(resource.deployment)
    except DeploymentNotFoundError:
        return "deployment unknown to the store"
    if dep.status == DeploymentStatus.DELETE_COMPLETE:
        return "deployment deleted"
    if resource.kind in _SERVER_KINDS and dep.status != DeploymentStatus.DELETE_IN_PROGRESS:
        recorded = {n.cloud_id for n in store.list_nodes(dep.id)}
        if resource.id not in recorded and dep.cloud == cloud:
            return "server not recorded for its deployment"
    return None
