"""chatpersist: draft columns on chat_messages (additive; existing rows read as complete)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

from chatpersist.retrofit import add_draft_columns, drop_draft_columns
from examples.retrofit_ws.models import MESSAGES

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_draft_columns(op, MESSAGES)


def downgrade() -> None:
    drop_draft_columns(op, MESSAGES)
