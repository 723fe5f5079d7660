"""Leak collection: find what DODAS left on a cloud and remove what no live deployment owns.

A resource is a leak when its deployment is unknown to the store or fully deleted, or when it is a server the store
does not record for a live deployment (a crash between create and record that no run adopted). Resources younger
than the grace period are left alone: they may belong to a creation in flight.

A site that acts as each deployment's owner has no single identity that sees everything: it is listed once per
owner known to the store (with the delegation of any of their deployments on that cloud, newest first), and what
such a listing finds is deleted as that owner. Resources no delegated owner can see (a deployment unknown to the
store, or whose owner's delegations are all gone) are listed with the site's service connection when it names one
(extra dodas_service_conn_id), else reported as not collectable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dodas_tasks.clouds.base import CloudDriver, CloudError, ProjectResource, get_driver, site_auth
from dodas_tasks.deploy.cloud_access import TokensFor, driver_for
from dodas_tasks.iam.errors import IamError
from dodas_tasks.store import DeploymentNotFoundError, DeploymentRecord, DeploymentStatus, Store

DEFAULT_GRACE = timedelta(minutes=15)
_SERVER_KINDS = {"server", "instance"}


@dataclass
class LeakReport:
    checked: int = 0
    removed: list[str] = field(default_factory=list)  # "cloud kind id (why)"
    kept_young: int = 0
    errors: list[str] = field(default_factory=list)
    not_collectable: list[str] = field(default_factory=list)  # what a site acting as the owners cannot list


def configured_clouds() -> list[str]:
    """DODAS_CLOUDS (comma-separated), else only the embedded local cloud."""
    return [c.strip() for c in os.environ.get("DODAS_CLOUDS", "local").split(",") if c.strip()]


def collect_leaks(
    store: Store,
    clouds: Iterable[str] | None = None,
    grace: timedelta = DEFAULT_GRACE,
    log: Callable[[str], None] = print,
    tokens_for: TokensFor | None = None,
) -> LeakReport:
    """One pass over `clouds` (default DODAS_CLOUDS); `tokens_for` gives a delegated deployment's owner tokens,
    for sites that act as the owners."""
    report = LeakReport()
    now = datetime.now(UTC)
    for cloud in clouds or configured_clouds():
        seen: set[tuple[str, str]] = set()
        for driver, resources in _listings(store, cloud, tokens_for, report):
            for resource in resources:
                if (resource.kind, resource.id) in seen:  # several owners may share a project
                    continue
                seen.add((resource.kind, resource.id))
                _collect(store, cloud, driver, resource, now, grace, log, report)
    return report


def _listings(
    store: Store, cloud: str, tokens_for: TokensFor | None, report: LeakReport
) -> list[tuple[CloudDriver, list[ProjectResource]]]:
    """Every listing of DODAS's resources on `cloud` this pass can make, each with the driver that made it."""
    try:
        auth = site_auth(cloud)
        if not auth.acts_as_owner:
            driver = get_driver(cloud)
            return [(driver, driver.list_project_resources())]
    except CloudError as exc:
        report.errors.append(f"{cloud}: cannot list resources: {exc}")
        return []
    listings = [listing for owner in _owners(store, cloud) if (listing := _as_owner(cloud, owner, tokens_for, report))]
    if auth.service_options is None:
        report.not_collectable.append(
            f"{cloud}: {auth.description}: resources of deployments no delegated owner can list (unknown to the "
            "store, or all their owner's delegations gone) are not collectable; name a service connection of the "
            "site in the connection's extra dodas_service_conn_id to collect them"
        )
        return listings
    try:
        driver = get_driver(cloud, **auth.service_options)
        listings.append((driver, driver.list_project_resources()))
    except CloudError as exc:
        report.errors.append(f"{cloud}: cannot list resources with the service connection: {exc}")
    return listings


def _owners(store: Store, cloud: str) -> list[list[DeploymentRecord]]:
    """The delegated deployments that ever used `cloud`, grouped by owner: live ones first (their delegation is kept
    alive by the token refresh DAG), newest first."""
    owners: dict[tuple[str, str], list[DeploymentRecord]] = {}
    for dep in reversed(store.list_deployments()):
        if dep.has_refresh_token and cloud in {dep.cloud, *dep.clouds}:
            owners.setdefault((dep.owner_issuer, dep.owner_subject), []).append(dep)
    return [sorted(deps, key=lambda d: d.status == DeploymentStatus.DELETE_COMPLETE) for deps in owners.values()]


def _as_owner(
    cloud: str, deployments: list[DeploymentRecord], tokens_for: TokensFor | None, report: LeakReport
) -> tuple[CloudDriver, list[ProjectResource]] | None:
    """One owner's listing, with the first of their delegations that still works."""
    reasons = []
    for dep in deployments:
        try:
            tokens = tokens_for(dep) if tokens_for is not None else None
        except Exception as exc:  # the IdP's connection missing or unreadable: say so, try the next
            tokens, reasons = None, [*reasons, f"{dep.id}: no token source: {exc}"]
        if tokens is None:
            continue
        try:
            driver = driver_for(dep, tokens, cloud)
            return driver, driver.list_project_resources()
        except (CloudError, IamError) as exc:
            reasons.append(f"{dep.id}: {exc}")
    who = f"{deployments[0].owner_subject} ({deployments[0].owner_issuer})"
    reasons = reasons or ["no token source was given for their deployments"]
    report.errors.append(f"{cloud}: cannot list the resources of {who}: {'; '.join(reasons)}")
    return None


def _collect(
    store: Store,
    cloud: str,
    driver: CloudDriver,
    resource: ProjectResource,
    now: datetime,
    grace: timedelta,
    log: Callable[[str], None],
    report: LeakReport,
) -> None:
    report.checked += 1
    why = _leak_reason(store, cloud, resource)
    if why is None:
        return
    if resource.created_at is not None and now - resource.created_at < grace:
        report.kept_young += 1
        return
    label = f"{cloud} {resource.kind} {resource.id} ({why})"
    try:
        driver.delete_resource(resource.kind, resource.id)
    except CloudError as exc:
        report.errors.append(f"{label}: {exc}")
        return
    report.removed.append(label)
    log(f"removed leaked {label}")
    if resource.deployment and _exists(store, resource.deployment):
        store.add_event(resource.deployment, "leak", f"removed leaked {label}")


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
