"""Deployments as users list and name them: who may see which, pages filtered and sorted in SQL, ids by prefix.

A listing reads only the few columns a summary needs (never plans or templates), so a page of a thousand
deployments costs two small queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select
from sqlalchemy.orm import Session

from dodas_tasks.store.ids import MAX_CANDIDATES, id_prefix
from dodas_tasks.store.models import Deployment, Node
from dodas_tasks.store.vocabulary import DeploymentStatus, NodeState


@dataclass(frozen=True)
class Visibility:
    """Whose deployments someone may see and act on: their own, those shared with one of their groups, or all."""

    issuer: str
    subject: str
    groups: tuple[str, ...] = ()
    everyone: bool = False

    def admits(self, owner_issuer: str, owner_subject: str, user_group: str | None) -> bool:
        """The same rule as the SQL condition, for one deployment already read."""
        return (
            self.everyone
            or (owner_issuer, owner_subject) == (self.issuer, self.subject)
            or (user_group is not None and user_group in self.groups)
        )

    def condition(self) -> ColumnElement[bool]:
        if self.everyone:
            return Deployment.id.is_not(None)
        own = and_(Deployment.owner_issuer == self.issuer, Deployment.owner_subject == self.subject)
        shared = Deployment.user_group.in_(self.groups) if self.groups else false()
        return or_(own, shared)


@dataclass(frozen=True)
class DeploymentFilter:
    """Which deployments a listing holds; DELETE_COMPLETE ones only when asked."""

    visibility: Visibility | None = None
    owner: tuple[str, str] | None = None  # (issuer, subject)
    user_group: str | None = None
    include_deleted: bool = False
    statuses: frozenset[str] | None = None  # only these statuses (DELETE_COMPLETE needs include_deleted too)

    def conditions(self) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        if self.visibility is not None:
            out.append(self.visibility.condition())
        if self.owner is not None:
            out += [Deployment.owner_issuer == self.owner[0], Deployment.owner_subject == self.owner[1]]
        if self.user_group is not None:
            out.append(Deployment.user_group == self.user_group)
        if not self.include_deleted:
            out.append(Deployment.status != DeploymentStatus.DELETE_COMPLETE.value)
        if self.statuses is not None:
            out.append(Deployment.status.in_(sorted(self.statuses)))
        return out


@dataclass(frozen=True)
class DeploymentSummary:
    """What a listing shows of one deployment."""

    id: str
    owner_subject: str
    owner_issuer: str
    status: str
    status_reason: str | None
    outputs: dict[str, Any]
    cloud: str
    user_group: str | None
    callback: str | None
    created_at: datetime
    updated_at: datetime


SUMMARY_COLUMNS = [getattr(Deployment, f.name) for f in fields(DeploymentSummary)]
SORTABLE = frozenset({"created_at", "updated_at", "status", "id", "cloud"})


@dataclass(frozen=True)
class DeploymentPage:
    """One page (0-based ``number``) of ``size`` summaries out of ``total`` matching deployments."""

    items: list[DeploymentSummary]
    total: int
    number: int
    size: int


def page_of(
    session: Session, where: DeploymentFilter, sort: Sequence[tuple[str, bool]], number: int, size: int
) -> DeploymentPage:
    """``sort``: (field, descending) pairs among SORTABLE; ties are broken by id so pages never overlap."""
    unknown = [name for name, _ in sort if name not in SORTABLE]
    if unknown:
        raise ValueError(f"cannot sort by {', '.join(unknown)}; sortable: {', '.join(sorted(SORTABLE))}")
    if number < 0 or size < 1:
        raise ValueError(f"page number must be 0 or more and size 1 or more, got page={number} size={size}")
    conditions = where.conditions()
    total = session.scalar(select(func.count()).select_from(Deployment).where(*conditions)) or 0
    order = [getattr(Deployment, name).desc() if desc else getattr(Deployment, name) for name, desc in sort]
    query = (
        select(*SUMMARY_COLUMNS).where(*conditions).order_by(*order, Deployment.id).offset(number * size).limit(size)
    )
    items = [DeploymentSummary(*row) for row in session.execute(query)]
    return DeploymentPage(items=items, total=total, number=number, size=size)


@dataclass(frozen=True)
class DeploymentShape:
    """What a deployments page shows beside a summary: the template's description, and per compute group the VMs
    that exist (not deleted) and the count asked for."""

    description: str
    vms: dict[str, int]
    desired: dict[str, int]


def shapes_of(session: Session, ids: Sequence[str]) -> dict[str, DeploymentShape]:
    """Shapes of the given deployments in two small queries (the description read out of the plan in SQL)."""
    rows = session.execute(
        select(Deployment.id, Deployment.plan["description"].as_string(), Deployment.desired_counts).where(
            Deployment.id.in_(ids)
        )
    )
    vms: dict[str, dict[str, int]] = {}
    counted = (
        select(Node.deployment_id, Node.group, func.count())
        .where(Node.deployment_id.in_(ids), Node.state != NodeState.DELETED.value)
        .group_by(Node.deployment_id, Node.group)
    )
    for deployment_id, group, count in session.execute(counted):
        vms.setdefault(deployment_id, {})[group] = count
    return {
        deployment_id: DeploymentShape((description or "").strip(), vms.get(deployment_id, {}), dict(desired or {}))
        for deployment_id, description, desired in rows
    }


def matching_ids(session: Session, reference: str, where: DeploymentFilter | None = None) -> list[str]:
    """Ids of the deployments whose id starts with ``reference`` (dashes ignored), at most MAX_CANDIDATES + 1."""
    prefix = id_prefix(reference)
    conditions = where.conditions() if where is not None else []
    query = (
        select(Deployment.id)
        .where(func.replace(Deployment.id, "-", "").startswith(prefix, autoescape=True), *conditions)
        .order_by(Deployment.id)
        .limit(MAX_CANDIDATES + 1)
    )
    return list(session.scalars(query))
