"""What the Deployments pages show, computed from the store's records: plain data that the templates lay out.

Live state only (status, nodes, outputs, events from the store), never a DAG's documentation. Secrets never get
here: inputs come REDACTED from the store, and secret values are blanked out of the template text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from dodas_tasks.deploy.service import AIRFLOW_ISSUER
from dodas_tasks.naming import deployment_dag_id, short_id
from dodas_tasks.store import (
    REDACTED,
    DeploymentRecord,
    DeploymentShape,
    DeploymentStatus,
    DeploymentSummary,
    EventRecord,
    NodeRecord,
    NodeState,
)

LINK_SCHEMES = ("http", "https")  # only these become links: never javascript:, data: or file: from an output


def tone(status: str) -> str:
    """The colour family of a deployment status or node state (a CSS class)."""
    if status in (DeploymentStatus.DELETE_COMPLETE, NodeState.DELETED):
        return "gone"
    if status.endswith("_FAILED") or status == NodeState.ERROR:
        return "failed"
    if status.endswith("_COMPLETE") or status in (NodeState.STARTED, NodeState.CONFIGURED):
        return "ok"
    if status.endswith("_IN_PROGRESS") or status in (NodeState.CREATING, NodeState.CONFIGURING, NodeState.DELETING):
        return "busy"
    return "idle"


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else ""


def owner_label(issuer: str, subject: str) -> str:
    """An Airflow user by name; an IAM identity as subject and issuer."""
    return f"{subject} (Airflow user)" if issuer == AIRFLOW_ISSUER else f"{subject} @ {issuer}"


def link_of(text: str) -> str | None:
    """The text itself if it is an http(s) URL with a host (safe as an href), else None."""
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        return None
    return text.strip() if parts.scheme.lower() in LINK_SCHEMES and parts.netloc else None


@dataclass(frozen=True)
class Piece:
    """One shown part of an output's value; `href` only for http(s) URLs."""

    text: str
    href: str | None = None


def output_pieces(value: Any) -> list[Piece]:
    """An output's value as pieces to show: each URL (alone or in a list, a mapping) clickable, the rest as text."""
    if isinstance(value, str):
        return [Piece(value, link_of(value))]
    if isinstance(value, list | tuple):
        return [piece for item in value for piece in output_pieces(item)]
    if isinstance(value, Mapping):
        out = []
        for key, item in value.items():
            out += [Piece(f"{key}: {p.text}", p.href) for p in output_pieces(item)]
        return out
    return [Piece(json.dumps(value))]


@dataclass(frozen=True)
class GroupSize:
    """VMs of one compute group: how many exist, how many are asked for."""

    name: str
    vms: int
    desired: int

    def label(self) -> str:
        return f"{self.name} {self.vms}" if self.vms == self.desired else f"{self.name} {self.vms}/{self.desired}"


def group_sizes(shape: DeploymentShape | None) -> list[GroupSize]:
    if shape is None:
        return []
    names = sorted(set(shape.vms) | set(shape.desired))
    return [GroupSize(n, shape.vms.get(n, 0), shape.desired.get(n, shape.vms.get(n, 0))) for n in names]


@dataclass(frozen=True)
class ListRow:
    """One line of the Deployments list."""

    id: str
    short_id: str
    description: str
    status: str
    status_reason: str
    tone: str
    cloud: str
    owner: str
    user_group: str
    created: str
    updated: str
    groups: list[GroupSize]


def list_rows(summaries: Iterable[DeploymentSummary], shapes: Mapping[str, DeploymentShape]) -> list[ListRow]:
    rows = []
    for d in summaries:
        shape = shapes.get(d.id)
        rows.append(
            ListRow(
                id=d.id,
                short_id=short_id(d.id),
                description=shape.description if shape else "",
                status=d.status,
                status_reason=d.status_reason or "",
                tone=tone(d.status),
                cloud=d.cloud,
                owner=owner_label(d.owner_issuer, d.owner_subject),
                user_group=d.user_group or "",
                created=when(d.created_at),
                updated=when(d.updated_at),
                groups=group_sizes(shape),
            )
        )
    return rows


@dataclass(frozen=True)
class NodeRow:
    id: str
    name: str
    group: str
    index: int
    state: str
    state_reason: str
    tone: str
    private_ip: str
    public_ip: str
    updated: str


@dataclass(frozen=True)
class EventRow:
    time: str
    kind: str
    message: str


@dataclass(frozen=True)
class InputRow:
    name: str
    value: str
    secret: bool
    given: bool


@dataclass(frozen=True)
class ScaleGroup:
    """A compute group as the scale form offers it: its count asked for, bounds, and the VMs one may remove."""

    name: str
    desired: int
    min_count: int
    max_count: int
    nodes: list[tuple[str, str]]  # (node id, name)


@dataclass(frozen=True)
class DeploymentView:
    """Everything a deployment's page shows."""

    id: str
    short_id: str
    dag_id: str
    description: str
    status: str
    status_reason: str
    tone: str
    cloud: str
    failover_clouds: list[str]
    owner: str
    user_group: str
    created: str
    updated: str
    nodes: list[NodeRow]
    outputs: list[tuple[str, list[Piece]]]
    events: list[EventRow]
    inputs: list[InputRow]
    template: str
    groups: list[ScaleGroup]
    default_group: str  # the group the scale form offers first: the elastic one, else the one with most VMs asked

    @property
    def deleted(self) -> bool:
        return self.status == DeploymentStatus.DELETE_COMPLETE


def deployment_view(
    dep: DeploymentRecord,
    nodes: Sequence[NodeRecord],
    events: Sequence[EventRecord],
    secret_values: Iterable[Any],
) -> DeploymentView:
    """`events` oldest first (as the store lists them; shown newest first); `secret_values` are blanked out of the
    template text."""
    plan = dep.plan
    node_rows = [
        NodeRow(
            id=n.id,
            name=n.name,
            group=n.group,
            index=n.index,
            state=n.state,
            state_reason=n.state_reason or "",
            tone=tone(n.state),
            private_ip=n.private_ip or "",
            public_ip=n.public_ip or "",
            updated=when(n.updated_at),
        )
        for n in nodes
    ]
    inputs = [
        InputRow(i.name, _input_value(i.secret, i.given or i.has_default, i.value), i.secret, i.given)
        for i in plan.inputs
    ]
    groups = [
        ScaleGroup(
            name=g.name,
            desired=dep.desired_counts.get(g.name, g.count),
            min_count=g.min_count,
            max_count=g.max_count,
            nodes=[(n.id, n.name) for n in nodes if n.group == g.name],
        )
        for g in plan.groups
    ]
    return DeploymentView(
        id=dep.id,
        short_id=short_id(dep.id),
        dag_id=deployment_dag_id(dep.id),
        description=plan.description.strip(),
        status=dep.status,
        status_reason=dep.status_reason or "",
        tone=tone(dep.status),
        cloud=dep.cloud,
        failover_clouds=[c for c in dep.clouds if c != dep.cloud],
        owner=owner_label(dep.owner_issuer, dep.owner_subject),
        user_group=dep.user_group or "",
        created=when(dep.created_at),
        updated=when(dep.updated_at),
        nodes=node_rows,
        outputs=[(name, output_pieces(value)) for name, value in sorted(dep.outputs.items())],
        events=[EventRow(when(e.time), e.kind, e.message) for e in reversed(events)],
        inputs=inputs,
        template=without_secrets(dep.template, secret_values),
        groups=groups,
        default_group=plan.elasticity.group or _most_asked(groups),
    )


def without_secrets(text: str, secret_values: Iterable[Any]) -> str:
    """`text` with every secret value (as a whole word) replaced by REDACTED."""
    for value in sorted({str(v) for v in secret_values if v not in (None, "")}, key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", REDACTED, text)
    return text


def _most_asked(groups: Sequence[ScaleGroup]) -> str:
    """The group with the most VMs asked for (the first of them on a tie), '' for none."""
    return max(groups, key=lambda g: g.desired).name if groups else ""


def _input_value(secret: bool, has_value: bool, value: Any) -> str:
    if secret:
        return REDACTED if has_value else ""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)
