"""Pending delegations: an owner's IAM token delegated before the deployment exists, taken once by a submission.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_delegations",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("owner_subject", sa.String(length=255), nullable=False),
        sa.Column("owner_issuer", sa.String(length=512), nullable=False),
        sa.Column("owner_groups", sa.JSON(), nullable=False),
        sa.Column("refresh_token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_pending_delegations")),
    )
    op.create_index(op.f("ix_pending_delegations_expires_at"), "pending_delegations", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_pending_delegations_expires_at"), "pending_delegations")
    op.drop_table("pending_delegations")
