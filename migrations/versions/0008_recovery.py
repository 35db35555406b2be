"""completion after a crash

An answer opted in to completion after a crash records what to complete it with
(`recover_with`, NULL: not opted in) and how many recoveries claimed it
(`recoveries`, 0 for existing rows).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chatpersist import _ddl
from chatpersist._schema import RECOVER_LENGTH

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


TABLE = "chatpersist_messages"


def upgrade() -> None:
    with _ddl.migration(f"migration {revision}"):
        _ddl.add_columns_if_missing(
            op,
            TABLE,
            [
                sa.Column("recover_with", sa.String(RECOVER_LENGTH), nullable=True),
                sa.Column("recoveries", sa.Integer(), nullable=False, server_default="0"),
            ],
            batch=True,
        )


def downgrade() -> None:
    with _ddl.migration(f"downgrade of migration {revision}"):
        _ddl.drop_columns_if_exist(op, TABLE, ["recover_with", "recoveries"], batch=True)
