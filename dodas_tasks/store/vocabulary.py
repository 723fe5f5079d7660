"""Status words of deployments and nodes, in one place so every layer (DAGs, REST API, CLI) speaks the same."""

from __future__ import annotations

from enum import StrEnum


class DeploymentStatus(StrEnum):
    """INDIGO PaaS orchestrator vocabulary, kept verbatim so orchestrator clients keep working."""

    CREATE_IN_PROGRESS = "CREATE_IN_PROGRESS"
    CREATE_COMPLETE = "CREATE_COMPLETE"
    CREATE_FAILED = "CREATE_FAILED"
    UPDATE_IN_PROGRESS = "UPDATE_IN_PROGRESS"
    UPDATE_COMPLETE = "UPDATE_COMPLETE"
    UPDATE_FAILED = "UPDATE_FAILED"
    DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"
    DELETE_COMPLETE = "DELETE_COMPLETE"
    DELETE_FAILED = "DELETE_FAILED"
    UNKNOWN = "UNKNOWN"


class NodeState(StrEnum):
    """Life of one VM, from the record made before the cloud call to its deletion."""

    INITIAL = "INITIAL"
    CREATING = "CREATING"
    CREATED = "CREATED"
    CONFIGURING = "CONFIGURING"
    CONFIGURED = "CONFIGURED"
    STARTED = "STARTED"
    DELETING = "DELETING"
    DELETED = "DELETED"
    ERROR = "ERROR"


# A deployment in one of these states has nothing left at the cloud and needs no more reconciling.
FINISHED_STATUSES = frozenset({DeploymentStatus.DELETE_COMPLETE})


def parse_status(value: str) -> DeploymentStatus:
    """Validate a deployment status word, naming the allowed ones when it is wrong."""
    try:
        return DeploymentStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in DeploymentStatus)
        raise ValueError(f"unknown deployment status {value!r}; use one of: {allowed}") from None


def parse_node_state(value: str) -> NodeState:
    """Validate a node state word, naming the allowed ones when it is wrong."""
    try:
        return NodeState(value)
    except ValueError:
        allowed = ", ".join(s.value for s in NodeState)
        raise ValueError(f"unknown node state {value!r}; use one of: {allowed}") from None
