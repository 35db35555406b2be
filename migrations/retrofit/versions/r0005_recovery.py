"""add completion after a crash (what to complete an answer with, and how many
recoveries claimed it) to an app's messages table

Revision ID: r0005
Revises: r0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Any

from alembic import op

from chatpersist import _ddl
from chatpersist.retrofit import add_draft_columns, drop_draft_columns

revision = "r0005"
down_revision = "r0004"
branch_labels = None
depends_on = None


def upgrade(table: Any) -> None:
    with _ddl.migration(f"migration {revision} on table {table.name}"):
        add_draft_columns(op, table, fields=["recover_with", "recoveries"])


def downgrade(table: Any) -> None:
    with _ddl.migration(f"downgrade of migration {revision} on table {table.name}"):
        drop_draft_columns(op, table, fields=["recover_with", "recoveries"])
