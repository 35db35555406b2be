"""add chatpersist's draft columns to an app's messages table

Revision ID: r0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from typing import Any

from alembic import op

from chatpersist.retrofit import add_draft_columns, drop_draft_columns

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(table: Any) -> None:
    add_draft_columns(op, table)


def downgrade(table: Any) -> None:
    drop_draft_columns(op, table)
