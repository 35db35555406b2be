"""model, token usage and error of an answer

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chatpersist import _ddl

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


TABLE = "chatpersist_messages"


def upgrade() -> None:
    # Only the columns still missing (a run killed on MariaDB may have added some), in
    # one batch: SQLite's batch mode.
    with _ddl.migration(f"migration {revision}"):
        _ddl.add_columns_if_missing(
            op,
            TABLE,
            [
                sa.Column("model", sa.String(255), nullable=True),
                sa.Column("input_tokens", sa.Integer(), nullable=True),
                sa.Column("output_tokens", sa.Integer(), nullable=True),
                sa.Column("error", sa.Text(), nullable=True),
            ],
            batch=True,
        )


def downgrade() -> None:
    with _ddl.migration(f"downgrade of migration {revision}"):
        _ddl.drop_columns_if_exist(
            op, TABLE, ["error", "output_tokens", "input_tokens", "model"], batch=True
        )
