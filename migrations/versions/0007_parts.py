"""the parts of structured answers

Reasoning, tool calls and tool results are stored in order in `parts` (JSONB on
PostgreSQL, JSON elsewhere), as a log of segments a flush appends to. The answer's
text stays in `content`. Existing rows get NULL (an answer of text only).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chatpersist import _ddl
from chatpersist._schema import PartsJSON

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


TABLE = "chatpersist_messages"


def upgrade() -> None:
    with _ddl.migration(f"migration {revision}"):
        _ddl.add_columns_if_missing(
            op, TABLE, [sa.Column("parts", PartsJSON, nullable=True)], batch=True
        )


def downgrade() -> None:
    with _ddl.migration(f"downgrade of migration {revision}"):
        _ddl.drop_columns_if_exist(op, TABLE, ["parts"], batch=True)
