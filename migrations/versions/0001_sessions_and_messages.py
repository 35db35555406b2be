"""sessions and messages with draft status

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from chatpersist import _ddl

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the types at the time of this revision.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    # Each step checks the live schema first: on MariaDB/MySQL a migration killed
    # halfway leaves its first steps done (see chatpersist/_ddl.py).
    with _ddl.migration(f"migration {revision}"):
        _upgrade()


def _upgrade() -> None:
    _ddl.create_table_if_missing(
        op,
        "chatpersist_sessions",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        **MYSQL,
    )
    _ddl.create_table_if_missing(
        op,
        "chatpersist_messages",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column(
            "session_id",
            sa.String(255),
            sa.ForeignKey("chatpersist_sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("content", LongText, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="complete"),
        sa.Column("finish_reason", sa.String(64), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.CheckConstraint(
            "status IN ('streaming', 'complete')", name="chatpersist_messages_status"
        ),
        **MYSQL,
    )
    _ddl.create_index_if_missing(
        op, "ix_chatpersist_messages_session", "chatpersist_messages", ["session_id", "created_at"]
    )
    _ddl.create_index_if_missing(
        op, "ix_chatpersist_messages_status", "chatpersist_messages", ["status", "updated_at"]
    )


def downgrade() -> None:
    # The indexes go with the table (MySQL refuses to drop one a foreign key uses).
    with _ddl.migration(f"downgrade of migration {revision}"):
        _ddl.drop_table_if_exists(op, "chatpersist_messages")
        _ddl.drop_table_if_exists(op, "chatpersist_sessions")
