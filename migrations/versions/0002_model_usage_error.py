"""model, token usage and error of an answer

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chatpersist_messages") as batch:
        batch.add_column(sa.Column("model", sa.String(255), nullable=True))
        batch.add_column(sa.Column("input_tokens", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("output_tokens", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chatpersist_messages") as batch:
        batch.drop_column("error")
        batch.drop_column("output_tokens")
        batch.drop_column("input_tokens")
        batch.drop_column("model")
