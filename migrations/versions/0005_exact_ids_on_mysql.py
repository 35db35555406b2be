"""ids compared exactly on MariaDB / MySQL

With the default collation, "CaseAbc" and "caseabc", "cafe" and "café", "sp1" and
"sp1 " were the same message (or session) id. The id columns get a binary collation
without padding (`utf8mb4_nopad_bin` on MariaDB, `utf8mb4_0900_bin` on MySQL 8), so ids
compare as the bytes they are, as on SQLite and PostgreSQL. Re-running it after a crash
is harmless (a MODIFY to the same definition changes nothing).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chatpersist import _ddl
from chatpersist._schema import exact_collation

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (table, column, nullable): the foreign key and the keys it points at change together.
IDS = (
    ("chatpersist_sessions", "id", False),
    ("chatpersist_messages", "id", False),
    ("chatpersist_messages", "session_id", False),
)


# The name MariaDB / MySQL gave the key in 0001: kept, even when a crash lost it.
FK = "chatpersist_messages_ibfk_1"


def _modify(collation: str | None) -> None:
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return
    target = exact_collation(bind) if collation is None else None
    collate = f" COLLATE {target}" if target else ""
    # The foreign key refuses a change to either side: drop it, change both, put it back.
    # Each step checks first, so a run killed between two of them is finished by the next.
    fks = [
        fk["name"]
        for fk in sa.inspect(bind).get_foreign_keys("chatpersist_messages")
        if fk["referred_table"] == "chatpersist_sessions" and fk["name"]
    ]
    if not fks:
        _ddl._found("foreign key", "already dropped", "chatpersist_messages.session_id")
    for name in fks:
        op.execute(f"ALTER TABLE chatpersist_messages DROP FOREIGN KEY {name}")
    for table, column, nullable in IDS:
        if target and _collation(bind, table, column) == target:
            _ddl._found("column", "already converted", f"{table}.{column}")
        null = "NULL" if nullable else "NOT NULL"
        op.execute(
            f"ALTER TABLE {table} MODIFY {column} VARCHAR(255) "
            f"CHARACTER SET utf8mb4{collate} {null}"
        )
    op.execute(
        f"ALTER TABLE chatpersist_messages ADD CONSTRAINT {FK} FOREIGN KEY (session_id) "
        "REFERENCES chatpersist_sessions (id) ON DELETE CASCADE"
    )


def _collation(bind: sa.Connection, table: str, column: str) -> str | None:
    found = bind.execute(
        sa.text(
            "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE "
            "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND COLUMN_NAME = :c"
        ),
        {"t": table, "c": column},
    ).scalar()
    return None if found is None else str(found)


def upgrade() -> None:
    with _ddl.migration(f"migration {revision}"):
        _modify(None)


def downgrade() -> None:
    with _ddl.migration(f"downgrade of migration {revision}"):
        _modify("")  # back to the table's default collation
