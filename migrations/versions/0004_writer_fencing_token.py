"""the fencing token of a draft's writer

A takeover (a second writer opening an interrupted draft) gives the row a new
`writer` token and every write is guarded by it, so an older writer, however late,
can never change the row again. Existing rows get NULL: complete rows need no token,
and a streaming row without one can be taken over like any interrupted draft.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chatpersist import _ddl

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


TABLE = "chatpersist_messages"


def upgrade() -> None:
    with _ddl.migration(f"migration {revision}"):
        _ddl.add_columns_if_missing(
            op, TABLE, [sa.Column("writer", sa.String(64), nullable=True)], batch=True
        )


def downgrade() -> None:
    with _ddl.migration(f"downgrade of migration {revision}"):
        _ddl.drop_columns_if_exist(op, TABLE, ["writer"], batch=True)
