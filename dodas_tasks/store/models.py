"""ORM tables of the store. Alembic migrations (migrations/versions) must match these; a test checks it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, MetaData, String, Text, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Named constraints let alembic alter them later (SQLite batch mode needs names).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The row a retried provisioning adopts: one live node per (deployment, group, index).
LIVE_NODE_CONDITION = "state != 'DELETED'"


def utcnow() -> datetime:
    """Timezone-aware now, the only kind of time the store writes."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite drops the zone; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store only accepts timezone-aware datetimes (use datetime.now(UTC))")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base bound to the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Deployment(Base):
    """One TOSCA submission and everything needed to reconcile it."""

    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_subject: Mapped[str] = mapped_column(String(255))
    owner_issuer: Mapped[str] = mapped_column(String(512))
    owner_groups: Mapped[list[str]] = mapped_column(JSON)
    template: Mapped[str] = mapped_column(Text)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)  # secret values are Fernet tokens
    secret_inputs: Mapped[list[str]] = mapped_column(JSON)  # names of the inputs stored encrypted
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(32))
    status_reason: Mapped[str | None] = mapped_column(Text)
    desired_counts: Mapped[dict[str, int]] = mapped_column(JSON)
    removal_list: Mapped[list[str]] = mapped_column(JSON)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    cloud: Mapped[str] = mapped_column(String(64))
    clouds: Mapped[list[str]] = mapped_column(JSON)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    refresh_token: Mapped[str | None] = mapped_column(Text)  # encrypted
    ssh_private_key: Mapped[str] = mapped_column(Text)  # encrypted
    ssh_public_key: Mapped[str] = mapped_column(Text)
    known_hosts: Mapped[dict[str, str]] = mapped_column(JSON)
    # the orchestrator's userGroup: members of this group may see and act on the deployment
    user_group: Mapped[str | None] = mapped_column(String(255))
    callback: Mapped[str | None] = mapped_column(Text)  # URL POSTed the deployment when it reaches a final state
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's declared form
    __table_args__ = (
        Index(None, "status"),
        Index(None, "owner_subject", "owner_issuer"),
        Index(None, "user_group"),
        Index(None, "created_at"),
    )


class Node(Base):
    """One VM of a deployment, recorded before the cloud call so that retries adopt it."""

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    group: Mapped[str] = mapped_column(String(128))
    index: Mapped[int] = mapped_column(Integer)
    cloud: Mapped[str | None] = mapped_column(String(64))
    cloud_id: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    private_ip: Mapped[str | None] = mapped_column(String(64))
    public_ip: Mapped[str | None] = mapped_column(String(64))
    ssh_port: Mapped[int | None] = mapped_column(Integer)
    # component name -> digest of the configuration applied on this node (configure only what changed)
    applied: Mapped[dict[str, str] | None] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(32))
    state_reason: Mapped[str | None] = mapped_column(Text)
    last_healthy_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    unhealthy_since: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's declared form
    __table_args__ = (
        Index(None, "deployment_id"),
        # Partial unique index: two workers inserting the same live slot cannot both succeed.
        Index(
            "uq_nodes_live_slot",
            "deployment_id",
            "group",
            "index",
            unique=True,
            sqlite_where=text(LIVE_NODE_CONDITION),
            postgresql_where=text(LIVE_NODE_CONDITION),
        ),
    )


class Event(Base):
    """What happened to a deployment, for people reading its history."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UtcDateTime())
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    node_id: Mapped[str | None] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index(None, "deployment_id", "id"),)


class PendingDelegation(Base):
    """An owner's delegation made before its deployment exists (the IAM token delegated at the API's door), found
    by the digest of the one-time handle given to the owner, taken once by the submission that names it."""

    __tablename__ = "pending_delegations"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the handle, never the handle
    owner_subject: Mapped[str] = mapped_column(String(255))
    owner_issuer: Mapped[str] = mapped_column(String(512))
    owner_groups: Mapped[list[str]] = mapped_column(JSON)
    refresh_token: Mapped[str] = mapped_column(Text)  # encrypted
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index(None, "expires_at"),)
