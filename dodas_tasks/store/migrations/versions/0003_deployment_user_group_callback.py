"""Deployments: the orchestrator's userGroup (shares a deployment with a group) and callback URL; listing indexes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN (SQLite supports it): batch mode would rebuild the table
    op.add_column("deployments", sa.Column("user_group", sa.String(length=255), nullable=True))
    op.add_column("deployments", sa.Column("callback", sa.Text(), nullable=True))
    op.create_index(op.f("ix_deployments_user_group"), "deployments", ["user_group"])
    op.create_index(op.f("ix_deployments_created_at"), "deployments", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_deployments_created_at"), "deployments")
    op.drop_index(op.f("ix_deployments_user_group"), "deployments")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("callback")
        batch.drop_column("user_group")
