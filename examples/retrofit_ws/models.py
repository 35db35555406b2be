"""The app's tables, shared by before.py, after.py and the app's alembic history."""

from __future__ import annotations

import sqlalchemy as sa

from chatpersist.retrofit import MessagesTable, SessionsTable

metadata = sa.MetaData()

chats = sa.Table(
    "chats",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("updated", sa.DateTime(), nullable=False),
)

chat_messages = sa.Table(
    "chat_messages",
    metadata,
    sa.Column("msg_id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("chat", sa.Integer(), sa.ForeignKey("chats.id"), nullable=False, index=True),
    sa.Column("author", sa.String(16), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("sent_at", sa.DateTime(), nullable=False),
    sqlite_autoincrement=True,
)

# chatpersist: the one definition of the table, used by after.py, by the alembic
# revision that adds the draft columns (and env.py), and by the command line:
#   chatpersist history --table examples.retrofit_ws.models:MESSAGES CHAT_ID
MESSAGES = MessagesTable(
    "chat_messages",
    columns={
        "id": "msg_id",
        "session_id": "chat",
        "role": "author",
        "content": "body",
        "created_at": "sent_at",
    },
    int_ids=True,
    int_session_ids=True,
    sessions=SessionsTable("chats", updated_at="updated"),
)
