"""draft flushes update no index: status index without updated_at; PostgreSQL fillfactor

Every flush sets `updated_at` (the draft's heartbeat). With `updated_at` in an index,
each flush also wrote an entry into every index of the table. Indexed on `status`
alone, a flush changes no indexed column, so PostgreSQL can update the row in place
(a HOT update) when its page has room, which a fillfactor of 70 leaves. Finding
streaming drafts stays an index lookup: they are few beside the complete messages.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from chatpersist import _ddl

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE = "chatpersist_messages"
INDEX = "ix_chatpersist_messages_status"


OLD = ["status", "updated_at"]
NEW = ["status"]


def upgrade() -> None:
    # The new index has the old one's name: drop it only while it is the old one (a run
    # killed on MariaDB after the create must not drop the new one).
    with _ddl.migration(f"migration {revision}"):
        _ddl.drop_index_if_exists(op, INDEX, TABLE, cols=OLD)
        _ddl.create_index_if_missing(op, INDEX, TABLE, NEW)
        if op.get_bind().dialect.name == "postgresql":
            # Applies to pages written from now on; existing pages keep theirs.
            # (Setting it again is harmless; PostgreSQL's DDL is transactional anyway.)
            op.execute(f"ALTER TABLE {TABLE} SET (fillfactor = 70)")


def downgrade() -> None:
    with _ddl.migration(f"downgrade of migration {revision}"):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"ALTER TABLE {TABLE} RESET (fillfactor)")
        _ddl.drop_index_if_exists(op, INDEX, TABLE, cols=NEW)
        _ddl.create_index_if_missing(op, INDEX, TABLE, OLD)
