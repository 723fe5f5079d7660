"""Apply a caller's field changes to a row: check names and values, encrypt secrets, record state events."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from dodas_tasks import crypto
from dodas_tasks.store.models import Deployment, Event, Node, utcnow
from dodas_tasks.store.vocabulary import parse_node_state, parse_status
from dodas_tasks.tosca.plan import Plan

DEPLOYMENT_FIELDS = frozenset(
    {
        "owner_groups", "template", "inputs", "secret_inputs", "plan", "status", "status_reason",
        "desired_counts", "removal_list", "outputs", "cloud", "clouds", "options", "refresh_token",
        "ssh_private_key", "ssh_public_key", "known_hosts",
    }
)  # fmt: skip
JSON_FIELDS = frozenset(
    {"owner_groups", "plan", "desired_counts", "removal_list", "outputs", "clouds", "options", "known_hosts"}
)
NODE_FIELDS = frozenset(
    {
        "cloud", "cloud_id", "private_ip", "public_ip", "ssh_port", "applied", "state", "state_reason",
        "last_healthy_at", "unhealthy_since",
    }
)  # fmt: skip


def check_field_names(given: Iterable[str], allowed: frozenset[str], what: str) -> None:
    """Refuse unknown field names with the list of the known ones."""
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(f"unknown {what} field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(allowed))}")


def encrypt_inputs(inputs: Mapping[str, Any], secret_names: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """Inputs as stored: values of the secret ones replaced by Fernet tokens (of their JSON, to keep the type)."""
    inputs = json_copy(dict(inputs), "inputs")
    secret = sorted(set(secret_names) & set(inputs))
    stored = {name: (crypto.encrypt(json.dumps(value)) if name in secret else value) for name, value in inputs.items()}
    return stored, secret


def apply_deployment_changes(row: Deployment, changes: Mapping[str, Any]) -> list[Event]:
    """Set the given fields on row; return the events to record (a status change makes one)."""
    check_field_names(changes, DEPLOYMENT_FIELDS, "deployment")
    events: list[Event] = []
    values = dict(changes)
    if "secret_inputs" in values and "inputs" not in values:
        raise ValueError("secret_inputs can only be changed together with inputs (pass both, values in clear)")
    if "inputs" in values:
        secret_names = values.pop("secret_inputs", row.secret_inputs)
        row.inputs, row.secret_inputs = encrypt_inputs(_mapping(values.pop("inputs"), "inputs"), secret_names)
    if "status" in values:
        new_status = parse_status(values.pop("status")).value
        reason = values.pop("status_reason", None)
        if new_status != row.status:
            events.append(_event(row.id, "status", _transition(row.status, new_status, reason)))
        row.status, row.status_reason = new_status, reason
    if "desired_counts" in values:
        values["desired_counts"] = check_desired_counts(values["desired_counts"])
    if "plan" in values:
        values["plan"] = stored_plan(values["plan"])
    for secret_field in ("refresh_token", "ssh_private_key"):
        if secret_field in values:
            clear = values.pop(secret_field)
            if clear is None and secret_field == "ssh_private_key":
                raise ValueError("ssh_private_key cannot be removed, only replaced")
            setattr(row, secret_field, None if clear is None else crypto.encrypt(clear))
    for name, value in values.items():
        setattr(row, name, json_copy(value, f"deployment field {name}") if name in JSON_FIELDS else value)
    row.updated_at = utcnow()
    return events


def apply_node_changes(row: Node, changes: Mapping[str, Any]) -> list[Event]:
    """Set the given fields on a node row; return the events to record (a state change makes one)."""
    check_field_names(changes, NODE_FIELDS, "node")
    events: list[Event] = []
    values = dict(changes)
    if "state" in values:
        new_state = parse_node_state(values.pop("state")).value
        reason = values.pop("state_reason", None)
        if new_state != row.state:
            message = f"{row.name} ({row.group}[{row.index}]): {_transition(row.state, new_state, reason)}"
            events.append(_event(row.deployment_id, "node_state", message, node_id=row.id))
        row.state, row.state_reason = new_state, reason
    for name in ("last_healthy_at", "unhealthy_since"):
        if values.get(name) is not None and not isinstance(values[name], datetime):
            raise ValueError(f"node field {name} must be a timezone-aware datetime, got {type(values[name]).__name__}")
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    return events


def stored_plan(plan: Any) -> dict[str, Any]:
    """A Plan as the store keeps it: its JSON dict (records decode it back, see DeploymentRecord.plan)."""
    if not isinstance(plan, Plan):
        raise ValueError(f"plan must be a tosca Plan, got {type(plan).__name__}")
    return json_copy(plan.to_dict(), "plan")


def check_desired_counts(counts: Any) -> dict[str, int]:
    """desired_counts must map group names to whole numbers ≥ 0."""
    counts = _mapping(counts, "desired_counts")
    for group, count in counts.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"desired_counts[{group!r}] must be a whole number ≥ 0, got {count!r}")
    return dict(counts)


def new_event(deployment_id: str, kind: str, message: str, node_id: str | None = None) -> Event:
    """An event row stamped now."""
    if not kind or len(kind) > 32:
        raise ValueError(f"event kind must be 1–32 characters, got {kind!r}")
    return _event(deployment_id, kind, message, node_id=node_id)


def _event(deployment_id: str, kind: str, message: str, node_id: str | None = None) -> Event:
    return Event(time=utcnow(), deployment_id=deployment_id, node_id=node_id, kind=kind, message=message)


def _transition(old: str | None, new: str, reason: str | None) -> str:
    text = f"{old or '(new)'} → {new}"
    return f"{text}: {reason}" if reason else text


def json_copy(value: Any, what: str) -> Any:
    """A deep copy through JSON: proves the value can be stored and detaches it from the caller's object."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must be JSON-serialisable: {error}") from None


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping (JSON object), got {type(value).__name__}")
    return dict(value)
