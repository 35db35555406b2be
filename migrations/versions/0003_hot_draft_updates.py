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

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE = "chatpersist_messages"
INDEX = "ix_chatpersist_messages_status"


def upgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.create_index(INDEX, TABLE, ["status"])
    if op.get_bind().dialect.name == "postgresql":
        # Applies to pages written from now on; existing pages keep theirs.
        op.execute(f"ALTER TABLE {TABLE} SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {TABLE} RESET (fillfactor)")
    op.drop_index(INDEX, table_name=TABLE)
    op.create_index(INDEX, TABLE, ["status", "updated_at"])
