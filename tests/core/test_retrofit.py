"""chatpersist on an app's existing messages table, with one additive migration."""

from __future__ import annotations

import hashlib
import textwrap
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from support import fresh_database

from chatpersist import COMPLETE, ChatStore, MessagesTable, NotMigrated, _migrate
from chatpersist.retrofit import include_object_for

ROWS = 100_000


def legacy_table(md: sa.MetaData, name: str = "messages", schema: str | None = None) -> sa.Table:
    """A desktop chat app's messages table, as such apps have it."""
    return sa.Table(
        name,
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(64), nullable=False, index=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("tool_calls", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("role IN ('user', 'assistant', 'system')", name="role_check"),
        schema=schema,
    )


def int_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "messages_int",
        md,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def fill(engine: sa.Engine, table: sa.Table, n: int, int_ids: bool = False) -> None:
    t0 = datetime(2024, 1, 1)
    rows: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for i in range(n):
            row: dict[str, Any] = {
                "session_id": i // 10 if int_ids else f"s{i // 10}",
                "role": "user" if i % 2 == 0 else "assistant",
                "content": f"message {i} ünïcødé 😀 " * (1 + i % 3),
                "created_at": t0 + timedelta(seconds=i),
            }
            if not int_ids:
                row["id"] = f"m{i:07d}"
                row["tool_calls"] = None
            rows.append(row)
            if len(rows) == 10_000:
                conn.execute(sa.insert(table), rows)
                rows = []
        if rows:
            conn.execute(sa.insert(table), rows)


def snapshot(engine: sa.Engine, name: str, schema: str | None = None) -> dict[str, Any]:
    """The table's reflected schema, comparable before and after."""
    i = sa.inspect(engine)
    return {
        "columns": [
            (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
            for c in i.get_columns(name, schema=schema)
        ],
        "pk": i.get_pk_constraint(name, schema=schema)["constrained_columns"],
        "indexes": sorted(
            (x["name"], tuple(x["column_names"])) for x in i.get_indexes(name, schema=schema)
        ),
        "checks": sorted(str(c["sqltext"]) for c in i.get_check_constraints(name, schema=schema)),
    }


def fingerprint(engine: sa.Engine, table: sa.Table) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    with engine.connect() as conn:
        for row in conn.execute(sa.select(table.c.id, table.c.content).order_by(table.c.id)):
            h.update(f"{row[0]}\x00{row[1]}\x01".encode())
            n += 1
    return n, h.hexdigest()


@pytest.mark.slow
def test_string_id_table_with_100k_rows(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    md = sa.MetaData()
    table = legacy_table(md)
    md.create_all(engine)
    fill(engine, table, ROWS)
    before_schema = snapshot(engine, "messages")
    before = fingerprint(engine, table)

    store = ChatStore(engine, table="messages")
    with pytest.raises(NotMigrated, match="lacks the columns"), store.draft("s1"):
        pass
    store.migrate()
    assert fingerprint(engine, table) == before == (ROWS, before[1])
    with engine.connect() as conn:
        not_complete = conn.execute(
            sa.text("SELECT COUNT(*) FROM messages WHERE status <> 'complete'")
        ).scalar()
    assert not_complete == 0
    old = store.history("s7")
    assert [m.content for m in old] == [
        f"message {i} ünïcødé 😀 " * (1 + i % 3) for i in range(70, 80)
    ]
    assert all(m.status == COMPLETE and not m.interrupted for m in old)

    # An interrupted draft on the app's table.
    with store.draft("s7", message_id="draft-1") as d:
        d.append("half an answer")
        d.stop("disconnected")
    last = store.history("s7")[-1]
    assert (last.id, last.content, last.interrupted) == ("draft-1", "half an answer", True)

    # The app's own INSERT, which knows nothing of the new columns, still works.
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO messages (id, session_id, role, content, created_at) "
                "VALUES ('host-1', 's7', 'user', 'plain insert', :now)"
            ),
            {"now": datetime(2030, 1, 1)},
        )
    assert store.get_message("host-1").status == COMPLETE

    # The app's save on finish with the draft's id completes that row.
    with store.draft("s7", message_id="draft-2") as d:
        d.append("streamed")
        d.stop("disconnected")
    store.add_message("s7", "assistant", "streamed and finished", message_id="draft-2")
    ids = [m.id for m in store.history("s7")]
    assert ids.count("draft-2") == 1
    assert store.get_message("draft-2").status == COMPLETE
    assert _migrate.current(engine, store.table) == "r0005"
    store.close()

    _migrate.downgrade(engine, "base", MessagesTable("messages"))
    assert snapshot(engine, "messages") == before_schema
    engine.dispose()


def test_integer_id_table(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    md = sa.MetaData()
    table = int_table(md)
    md.create_all(engine)
    fill(engine, table, 1000, int_ids=True)
    before_schema = snapshot(engine, "messages_int")
    before = fingerprint(engine, table)
    target = MessagesTable("messages_int", int_ids=True, int_session_ids=True)
    with ChatStore(engine, table=target) as store:
        store.migrate()
        assert fingerprint(engine, table) == before
        with pytest.raises(RuntimeError), store.draft(42) as d:
            d.append("cut by an error")
            raise RuntimeError
        assert int(d.message_id) > 1000  # chosen by the database
        hist = store.history(42)
        assert [m.content for m in hist][-1] == "cut by an error"
        assert hist[-1].interrupted and hist[-1].session_id == 42  # the app's own type
        with store.draft(42) as d2:
            d2.append("complete answer")
        assert store.get_message(int(d2.message_id)).status == COMPLETE
    _migrate.downgrade(engine, "base", target)
    assert snapshot(engine, "messages_int") == before_schema
    engine.dispose()


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    yield from fresh_database("postgresql", tmp_path)


def test_postgres_schema_other_than_public(pg_url: str) -> None:
    db_url = pg_url
    schema = f"app_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        md = sa.MetaData()
        table = legacy_table(md, schema=schema)
        md.create_all(engine)
        fill(engine, table, 100)
        target = MessagesTable("messages", schema=schema)
        with ChatStore(engine, table=target) as store:
            store.migrate()
            with store.draft("s1") as d:
                d.append("in another schema")
            assert store.history("s1")[-1].content == "in another schema"
        assert _migrate.current(engine, target) == "r0005"
        cols = {c["name"] for c in sa.inspect(engine).get_columns("messages", schema=schema)}
        assert {"status", "finish_reason", "draft_seq"} <= cols
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def test_names_are_validated() -> None:
    for bad in ("messages; DROP TABLE x", "", "a" * 64, "mes sages", 'x"y'):
        with pytest.raises(ValueError):
            MessagesTable(bad)
    with pytest.raises(ValueError, match="unknown field"):
        MessagesTable("messages", columns={"sessionid": "x"})
    with pytest.raises(ValueError, match="identifier"):
        MessagesTable("messages", columns={"session_id": "conv id"})
    with pytest.raises(ValueError, match="same column"):
        MessagesTable("messages", columns={"status": "content"})


HOST_ENV = """
from alembic import context
from chatpersist.retrofit import include_object_for
from support import fresh_database
import host_models

config = context.config
engine = config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=host_models.metadata,
        include_object=include_object_for("messages") if config.attributes.get("ours") else None,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
"""

HOST_V1 = """
import sqlalchemy as sa
from alembic import op
import host_models
revision = "h1"
down_revision = None

def upgrade():
    host_models.metadata.create_all(op.get_bind())

def downgrade():
    op.drop_table("messages")
"""

HOST_V2 = """
from alembic import op
from chatpersist.retrofit import add_draft_columns, drop_draft_columns
revision = "h2"
down_revision = "h1"

def upgrade():
    add_draft_columns(op, "messages")

def downgrade():
    drop_draft_columns(op, "messages")
"""


@pytest.fixture
def host_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "versions").mkdir()
    (tmp_path / "env.py").write_text(HOST_ENV)
    (tmp_path / "versions" / "h1.py").write_text(HOST_V1)
    (tmp_path / "versions" / "h2.py").write_text(HOST_V2)
    (tmp_path / "host_models.py").write_text(
        textwrap.dedent(
            """
            import sqlalchemy as sa
            metadata = sa.MetaData()
            messages = sa.Table(
                "messages", metadata,
                sa.Column("id", sa.String(64), primary_key=True),
                sa.Column("session_id", sa.String(64), nullable=False),
                sa.Column("role", sa.String(16), nullable=False),
                sa.Column("content", sa.Text(), nullable=False),
                sa.Column("created_at", sa.DateTime(), nullable=False),
            )
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path


def test_host_alembic_history_and_autogenerate(host_project: Path, db_url: str) -> None:
    import host_models  # type: ignore[import-not-found]

    engine = sa.create_engine(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(host_project))
    cfg.attributes["engine"] = engine
    command.upgrade(cfg, "head")
    cols = {c["name"] for c in sa.inspect(engine).get_columns("messages")}
    assert {"status", "finish_reason", "draft_seq", "draft_heartbeat_at"} <= cols

    def diffs(include: Any) -> list[Any]:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"include_object": include})
            return list(compare_metadata(ctx, host_models.metadata))

    assert diffs(include_object_for("messages")) == []
    removed = {d[3].name for d in diffs(None) if d[0] == "remove_column"}
    assert "status" in removed  # what the host would be told without our helper

    with ChatStore(engine, table="messages") as store:
        with store.draft("s1") as d:
            d.append("drafted in the host's table")
        assert store.get_message(d.message_id).status == COMPLETE
    command.downgrade(cfg, "h1")
    assert {c["name"] for c in sa.inspect(engine).get_columns("messages")} == {
        "id",
        "session_id",
        "role",
        "content",
        "created_at",
    }
    engine.dispose()


def test_app_sessions_table_is_checked_and_touched(db_url: str) -> None:
    from chatpersist import SessionsTable, UnknownSession

    engine = sa.create_engine(db_url)
    md = sa.MetaData()
    legacy_table(md)
    chats = sa.Table(
        "chats",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(chats).values(id="c1", updated_at=None))
    target = MessagesTable("messages", sessions=SessionsTable("chats", updated_at="updated_at"))
    with ChatStore(engine, table=target) as store:
        store.migrate()
        with pytest.raises(UnknownSession), store.draft("nope"):
            pass
        with store.draft("c1") as d:
            d.append("ok")
        with engine.connect() as conn:
            assert conn.execute(sa.select(chats.c.updated_at)).scalar() is not None
        assert store.history("c1")[0].content == "ok"
    engine.dispose()
