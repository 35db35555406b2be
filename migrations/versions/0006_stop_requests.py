"""stop requests recorded on the row

A user's Stop may reach any worker: it records the time on the message
(`stop_requested`), and the worker that writes the draft reads it and ends the answer
'stopped'. Existing rows get NULL (no request).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chatpersist import _ddl
from chatpersist._schema import Timestamp

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


TABLE = "chatpersist_messages"


def upgrade() -> None:
    with _ddl.migration(f"migration {revision}"):
        _ddl.add_columns_if_missing(
            op, TABLE, [sa.Column("stop_requested", Timestamp, nullable=True)], batch=True
        )


def downgrade() -> None:
    with _ddl.migration(f"downgrade of migration {revision}"):
        _ddl.drop_columns_if_exist(op, TABLE, ["stop_requested"], batch=True)
