"""an index of pending stop requests

Each store's writer asks every `stop_poll` seconds which answers a user asked to stop
(`_writer/_stops.py`): one query naming no ids, whose cost does not grow with the open
drafts, served by this index (partial where the database has partial indexes: it
holds only the few pending requests).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chatpersist import _ddl

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


TABLE = "chatpersist_messages"
INDEX = "ix_chatpersist_messages_stop"
PENDING = sa.text("stop_requested IS NOT NULL AND finish_reason IS NULL")


def upgrade() -> None:
    with _ddl.migration(f"migration {revision}"):
        _ddl.create_index_if_missing(
            op, INDEX, TABLE, ["stop_requested"], postgresql_where=PENDING, sqlite_where=PENDING
        )


def downgrade() -> None:
    with _ddl.migration(f"downgrade of migration {revision}"):
        _ddl.drop_index_if_exists(op, INDEX, TABLE)
