"""Nodes: the SSH port the cloud gave, and the digest of each component's configuration applied on the node.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN (SQLite supports it): batch mode would rebuild the table and drop the partial index
    op.add_column("nodes", sa.Column("ssh_port", sa.Integer(), nullable=True))
    op.add_column("nodes", sa.Column("applied", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("applied")
        batch.drop_column("ssh_port")
