"""chats and chat_messages

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chats",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "chat_messages",
        sa.Column("msg_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("chat", sa.Integer(), sa.ForeignKey("chats.id"), nullable=False),
        sa.Column("author", sa.String(16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_chat_messages_chat", "chat_messages", ["chat"])


def downgrade() -> None:
    op.drop_index("ix_chat_messages_chat", table_name="chat_messages")
    op.drop_table("chat_messages")
    op.drop_table("chats")
