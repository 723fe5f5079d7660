"""Plain snapshots handed out by the store: safe to keep, pass between processes and serialise (no live ORM)."""

from __future__ import annotations

import dataclasses
from copy import deepcopy as _deepcopy
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from dodas_tasks.store.models import Deployment, Event, Node
from dodas_tasks.tosca.plan import Plan

REDACTED = "******"  # shown in place of a secret input's value


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


# Records deep-copy JSON values: a caller mutating a nested value must not silently change the ORM row's
# loaded state (that would make the store see "no change" and skip the write).


def _same(value: Any) -> Any:
    return value


class _Serialisable:
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (datetimes as ISO 8601 strings)."""
        return {field.name: _jsonable(getattr(self, field.name)) for field in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class DeploymentRecord(_Serialisable):
    """A deployment without its secrets: secret inputs read REDACTED; tokens/keys only via Store methods.

    `plan` is the typed Plan, decoded from the stored JSON on first use and kept: listings that never look at
    plans (most of them) pay nothing, and one unreadable plan fails where it is used, not every listing.
    """

    id: str
    owner_subject: str
    owner_issuer: str
    owner_groups: list[str]
    template: str
    inputs: dict[str, Any]
    secret_inputs: list[str]
    stored_plan: dict[str, Any] = dataclasses.field(repr=False)  # the plan as the store keeps it (JSON); read `plan`
    status: str
    status_reason: str | None
    desired_counts: dict[str, int]
    removal_list: list[str]
    outputs: dict[str, Any]
    cloud: str
    clouds: list[str]
    options: dict[str, Any]
    has_refresh_token: bool
    ssh_public_key: str
    known_hosts: dict[str, str]
    created_at: datetime
    updated_at: datetime
    version: int
    user_group: str | None = None  # members of this group share the deployment (orchestrator userGroup)
    callback: str | None = None  # URL told of each final state (orchestrator callback)

    @cached_property
    def plan(self) -> Plan:
        return Plan.from_dict(self.stored_plan)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (datetimes as ISO 8601 strings), the plan as its stored dict under "plan"."""
        data = super().to_dict()
        data["plan"] = data.pop("stored_plan")
        return data

    @classmethod
    def from_row(cls, row: Deployment, copy: bool = True) -> DeploymentRecord:
        """`copy=False` is for rows the caller discards right away (listings): no aliasing, no copying cost."""
        deepcopy = _deepcopy if copy else _same
        secret = set(row.secret_inputs or [])
        inputs = {name: (REDACTED if name in secret else deepcopy(value)) for name, value in (row.inputs or {}).items()}
        return cls(
            id=row.id,
            owner_subject=row.owner_subject,
            owner_issuer=row.owner_issuer,
            owner_groups=deepcopy(row.owner_groups or []),
            template=row.template,
            inputs=inputs,
            secret_inputs=sorted(secret),
            stored_plan=deepcopy(row.plan or {}),
            status=row.status,
            status_reason=row.status_reason,
            desired_counts=deepcopy(row.desired_counts or {}),
            removal_list=deepcopy(row.removal_list or []),
            outputs=deepcopy(row.outputs or {}),
            cloud=row.cloud,
            clouds=deepcopy(row.clouds or []),
            options=deepcopy(row.options or {}),
            has_refresh_token=row.refresh_token is not None,
            ssh_public_key=row.ssh_public_key,
            known_hosts=deepcopy(row.known_hosts or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
            version=row.version,
            user_group=row.user_group,
            callback=row.callback,
        )


@dataclass(frozen=True)
class NodeRecord(_Serialisable):
    """One VM as last recorded."""

    id: str
    deployment_id: str
    group: str
    index: int
    cloud: str | None
    cloud_id: str | None
    name: str
    private_ip: str | None
    public_ip: str | None
    ssh_port: int | None
    applied: dict[str, str]
    state: str
    state_reason: str | None
    last_healthy_at: datetime | None
    unhealthy_since: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def from_row(cls, row: Node) -> NodeRecord:
        values = {field.name: getattr(row, field.name) for field in dataclasses.fields(cls)}
        values["applied"] = dict(values["applied"] or {})
        return cls(**values)


@dataclass(frozen=True)
class EventRecord(_Serialisable):
    """One line of a deployment's history."""

    id: int
    time: datetime
    deployment_id: str
    node_id: str | None
    kind: str
    message: str

    @classmethod
    def from_row(cls, row: Event) -> EventRecord:
        return cls(**{field.name: getattr(row, field.name) for field in dataclasses.fields(cls)})


@dataclass(frozen=True)
class PendingDelegationRecord:
    """A delegation taken from the store for a new deployment: its owner and refresh token (repr hides it)."""

    owner_issuer: str
    owner_subject: str
    owner_groups: tuple[str, ...]
    refresh_token: str = field(repr=False)
