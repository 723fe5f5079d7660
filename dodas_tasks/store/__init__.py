"""The deployment store: deployments, nodes and events (SQLAlchemy + alembic; SQLite or PostgreSQL)."""

from dodas_tasks.store.changes import DEPLOYMENT_FIELDS, NODE_FIELDS
from dodas_tasks.store.ids import AmbiguousDeploymentId, DeploymentIdError, MalformedDeploymentId
from dodas_tasks.store.listing import (
    DeploymentFilter,
    DeploymentPage,
    DeploymentShape,
    DeploymentSummary,
    Visibility,
)
from dodas_tasks.store.records import REDACTED, DeploymentRecord, EventRecord, NodeRecord
from dodas_tasks.store.retry import ConcurrentUpdateError
from dodas_tasks.store.store import DeploymentNotFoundError, NodeNotFoundError, Store
from dodas_tasks.store.vocabulary import DeploymentStatus, NodeState

__all__ = [
    "DEPLOYMENT_FIELDS",
    "NODE_FIELDS",
    "REDACTED",
    "AmbiguousDeploymentId",
    "ConcurrentUpdateError",
    "DeploymentFilter",
    "DeploymentIdError",
    "DeploymentNotFoundError",
    "DeploymentPage",
    "DeploymentRecord",
    "DeploymentShape",
    "DeploymentStatus",
    "DeploymentSummary",
    "EventRecord",
    "MalformedDeploymentId",
    "NodeNotFoundError",
    "NodeRecord",
    "NodeState",
    "Store",
    "Visibility",
]
