"""add chatpersist's draft columns to an app's messages table

Revision ID: r0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from typing import Any

from alembic import op

from chatpersist import _ddl
from chatpersist._retrofit import FIRST_DRAFT_FIELDS
from chatpersist.retrofit import add_draft_columns, drop_draft_columns

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(table: Any) -> None:
    with _ddl.migration(f"migration {revision} on table {table.name}"):
        add_draft_columns(op, table, fields=FIRST_DRAFT_FIELDS)


def downgrade(table: Any) -> None:
    with _ddl.migration(f"downgrade of migration {revision} on table {table.name}"):
        drop_draft_columns(op, table, fields=FIRST_DRAFT_FIELDS)
