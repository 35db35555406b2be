"""The tables chatpersist reads and writes, named in one place.

Queries never name a table or column directly: they go through a `Layout`, so the
same engine can later be pointed at a host application's own messages table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects.postgresql import JSONB

STREAMING = "streaming"
COMPLETE = "complete"
STATUSES = (STREAMING, COMPLETE)

ID_LENGTH = 255
WRITER_LENGTH = 64
MODEL_LENGTH = 255
REASON_LENGTH = 64
RECOVER_LENGTH = 255
#: The largest token count an INTEGER column holds on every supported database.
MAX_INT = 2**31 - 1
#: The writer token of texts sent whole by a client (`ChatStore.save_partial`).
CLIENT_WRITER = "client"

# MySQL's TEXT stops at 64 KiB; a long answer needs LONGTEXT.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
# Microseconds matter for ordering and for heartbeats; MySQL drops them unless asked.
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# The parts of a structured answer (see `_parts`): JSONB on PostgreSQL, JSON on MySQL
# and MariaDB, JSON text on SQLite. Bound and read as JSON text by chatpersist.
PartsJSON = sa.JSON().with_variant(JSONB(), "postgresql")

MYSQL_TABLE_ARGS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def exact_collation(conn: Any) -> str:
    """The binary, no-pad collation of utf8mb4 on this MariaDB / MySQL server: ids are
    compared as the bytes they are ("a" != "A", "cafe" != "café", "x" != "x ")."""
    version = str(conn.exec_driver_sql("SELECT VERSION()").scalar() or "")
    if "mariadb" in version.lower():
        return "utf8mb4_nopad_bin"
    major = int(version.split(".")[0] or 0) if version[:1].isdigit() else 0
    return "utf8mb4_0900_bin" if major >= 8 else "utf8mb4_bin"


def is_exact(collation: str | None) -> bool:
    """Whether a column's collation compares ids exactly (binary, no padding)."""
    return collation is None or collation in ("utf8mb4_nopad_bin", "utf8mb4_0900_bin", "binary")


metadata = sa.MetaData()

sessions = sa.Table(
    "chatpersist_sessions",
    metadata,
    sa.Column("id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("title", sa.Text(), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    **MYSQL_TABLE_ARGS,
)


@dataclass(frozen=True)
class Field:
    """One field of a message row. `FIELDS` is the one declaration the table, the
    select list, the flush and upsert statements, the retrofit columns and the rows
    read back are all built from."""

    name: str
    type: Any
    nullable: bool = True
    #: Server default (existing rows of an app's table read with it).
    default: str | None = None
    #: In an app's own table: the column it already has (`host`), else the column the
    #: additive migration adds under this default name.
    host: bool = False
    draft_column: str | None = None
    #: Set by a writer once known (model, usage, error); a flush's None keeps what is
    #: stored, so each fact is written once and never erased.
    fact: bool = False
    #: Part of `Message` (the writer token is not: it is the writers' business).
    read: bool = True
    #: The retrofit migration that adds it to an app's table.
    since: str = "r0001"


FIELDS: tuple[Field, ...] = (
    Field("id", sa.String(ID_LENGTH), nullable=False, host=True),
    Field("session_id", sa.String(ID_LENGTH), nullable=False, host=True),
    Field("role", sa.String(32), nullable=False, host=True),
    Field("content", LongText, nullable=False, host=True),
    Field("status", sa.String(16), nullable=False, default=COMPLETE, draft_column="status"),
    Field("finish_reason", sa.String(REASON_LENGTH), draft_column="finish_reason"),
    Field("seq", sa.Integer(), nullable=False, default="0", draft_column="draft_seq"),
    Field("created_at", Timestamp, nullable=False, host=True),
    # Doubles as the writer's heartbeat while the message is streaming.
    Field("updated_at", Timestamp, nullable=False, draft_column="draft_heartbeat_at"),
    Field("model", sa.String(MODEL_LENGTH), draft_column="draft_model", fact=True),
    Field("input_tokens", sa.Integer(), draft_column="draft_input_tokens", fact=True),
    Field("output_tokens", sa.Integer(), draft_column="draft_output_tokens", fact=True),
    Field("error", sa.Text(), draft_column="draft_error", fact=True),
    # The fencing token of the draft's current writer: every write is guarded by it.
    Field("writer", sa.String(WRITER_LENGTH), draft_column="draft_writer", read=False,
          since="r0002"),
    # When a user asked to stop the answer (from any worker); its writer reads it.
    Field("stop_requested", Timestamp, draft_column="draft_stop_requested", read=False,
          since="r0003"),
    # Reasoning, tool calls and tool results in order, as a log of segments (`_parts`);
    # NULL for an answer of text only.
    Field("parts", PartsJSON, draft_column="draft_parts", since="r0004"),
    # Opted in to completion after a crash: what the app's provider factory builds the
    # provider from (`recovery.Recoverer`); and how many recoveries claimed it so far.
    Field("recover_with", sa.String(RECOVER_LENGTH), draft_column="draft_recover_with",
          since="r0005"),
    Field("recoveries", sa.Integer(), nullable=False, default="0",
          draft_column="draft_recoveries", since="r0005"),
)  # fmt: skip
FIELD = {f.name: f for f in FIELDS}
#: The facts a writer learns along the way, by name.
FACTS = tuple(f.name for f in FIELDS if f.fact)
#: What a `Message` is read from, in order.
READ = tuple(f.name for f in FIELDS if f.read)


def _column(f: Field) -> sa.Column[Any]:
    extra: list[Any] = []
    if f.name == "session_id":
        extra.append(sa.ForeignKey("chatpersist_sessions.id", ondelete="CASCADE"))
    return sa.Column(
        f.name, f.type, *extra, primary_key=f.name == "id",
        nullable=False if f.name == "id" else f.nullable, server_default=f.default,
    )  # fmt: skip


messages = sa.Table(
    "chatpersist_messages",
    metadata,
    *[_column(f) for f in FIELDS],
    sa.CheckConstraint("status IN ('streaming', 'complete')", name="chatpersist_messages_status"),
    sa.Index("ix_chatpersist_messages_session", "session_id", "created_at"),
    # Not on updated_at, which every flush sets: a flush then touches no index
    # (migration 0003, which also gives the table a fillfactor of 70 on PostgreSQL).
    sa.Index("ix_chatpersist_messages_status", "status"),
    # The writers' stop check reads the pending stop requests (migration 0009).
    sa.Index(
        "ix_chatpersist_messages_stop", "stop_requested",
        postgresql_where=sa.text("stop_requested IS NOT NULL AND finish_reason IS NULL"),
        sqlite_where=sa.text("stop_requested IS NOT NULL AND finish_reason IS NULL"),
    ),
    **MYSQL_TABLE_ARGS,
)


@dataclass(frozen=True)
class Layout:
    """Where each logical field lives. All SQL is built from these columns."""

    messages: sa.Table
    id: sa.Column[Any]
    session_id: sa.Column[Any]
    role: sa.Column[str]
    content: sa.Column[str]
    status: sa.Column[str]
    finish_reason: sa.Column[str | None]
    seq: sa.Column[int]
    created_at: sa.Column[datetime] | None
    updated_at: sa.Column[datetime]
    model: sa.Column[str | None]
    input_tokens: sa.Column[int | None]
    output_tokens: sa.Column[int | None]
    error: sa.Column[str | None]
    writer: sa.Column[str | None]
    stop_requested: sa.Column[datetime | None]
    parts: sa.Column[Any]
    recover_with: sa.Column[str | None]
    recoveries: sa.Column[int]
    #: Our own sessions table (create_session works), else None.
    sessions: sa.Table | None = None
    #: A table whose `id` a session id must exist in, and its column to touch once per draft.
    session_check: sa.Column[Any] | None = None
    session_touch: sa.Column[Any] | None = None
    #: Integer message / session ids (autoincrement message ids) instead of strings.
    int_ids: bool = False
    int_session_ids: bool = False
    #: Extra values for the host's own NOT NULL columns when a draft row is inserted.
    insert_defaults: tuple[tuple[str, Any], ...] = ()

    @property
    def extras(self) -> tuple[sa.Column[Any], ...]:
        """Facts about an answer that a writer sets once known (None keeps what is stored)."""
        return tuple(self.column(name) for name in FACTS)

    def column(self, name: str) -> sa.Column[Any]:
        """The column of a field (see `FIELDS`); `created_at` may be None."""
        col: sa.Column[Any] = getattr(self, name)
        return col

    def read_columns(self) -> list[sa.ColumnElement[Any]]:
        """The select list a `Message` is read from, each labelled with its field name."""
        return [(sa.null() if getattr(self, n) is None else self.column(n)).label(n) for n in READ]

    def row(self, **values: Any) -> dict[str, Any]:
        """Values by field name as a row keyed by column key (facts default to None)."""
        out = {self.column(n).key: None for n in FACTS}
        out.update({self.column(n).key: v for n, v in values.items()})
        return out

    def msg_key(self, message_id: str | int) -> Any:
        """A message id as the database wants it bound."""
        return int(message_id) if self.int_ids else str(message_id)

    def session_key(self, session_id: str | int) -> Any:
        return int(session_id) if self.int_session_ids else str(session_id)

    def new_row(self, now: datetime) -> dict[str, Any]:
        """Values every inserted row gets besides the draft's own (keyed by column key)."""
        row = {k: (v() if callable(v) else v) for k, v in self.insert_defaults}
        if self.created_at is not None:
            row[self.created_at.key] = now
        return row

    def order(self) -> tuple[sa.Column[Any], ...]:
        return (self.id,) if self.created_at is None else (self.created_at, self.id)

    @classmethod
    def default(cls) -> Layout:
        by_field: dict[str, Any] = {f.name: messages.c[f.name] for f in FIELDS}
        return cls(
            messages=messages,
            sessions=sessions,
            session_check=sessions.c.id,
            session_touch=sessions.c.updated_at,
            **by_field,
        )
