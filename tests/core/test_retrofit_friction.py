"""Retrofit mistakes a newcomer makes get errors that name the table and the fix."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from chatpersist import ChatStore, MessagesTable, NotMigrated
from chatpersist._errors import TableMismatch


def _table(engine: sa.Engine, int_ids: bool, updated_at: bool = False) -> None:
    md = sa.MetaData()
    id_type = sa.Integer() if int_ids else sa.String(64)
    cols: list[sa.Column[Any]] = [
        sa.Column("id", id_type, primary_key=True, autoincrement=int_ids),
        sa.Column("session_id", id_type, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    ]
    if updated_at:
        cols.append(sa.Column("updated_at", sa.DateTime(), nullable=True))
    sa.Table("messages", md, *cols)
    md.create_all(engine)


def test_not_migrated_names_the_table_and_the_command(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    _table(engine, int_ids=False)
    with ChatStore(engine, table=MessagesTable("messages")) as store:
        with pytest.raises(NotMigrated) as info:
            store.history("s1")
    text = str(info.value)
    assert "'messages' lacks chatpersist's draft columns" in text
    assert "chatpersist migrate --db URL --table messages" in text
    engine.dispose()


def test_forgetting_int_ids_is_a_clear_error(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    _table(engine, int_ids=True)
    with ChatStore(engine, table=MessagesTable("messages")) as store:
        store.migrate()
        with pytest.raises(TableMismatch, match=r"int_ids=True"):
            with store.draft("7") as d:
                d.append("x")
    engine.dispose()


def test_reuse_needs_no_column_mapping(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    _table(engine, int_ids=False, updated_at=True)
    table = MessagesTable("messages", reuse={"updated_at"})  # as documented
    assert table.column("updated_at") == "updated_at"
    with ChatStore(engine, table=table) as store:
        store.migrate()
        with store.draft("s1") as d:
            d.append("beat")
    with engine.connect() as conn:
        (beat,) = conn.execute(sa.text("SELECT updated_at FROM messages")).one()
    assert beat is not None and abs(
        (datetime.fromisoformat(str(beat)) - datetime.now(UTC).replace(tzinfo=None)).total_seconds()
    ) < 60
    engine.dispose()


def test_integer_ids_come_back_as_integers(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    _table(engine, int_ids=True)
    table = MessagesTable("messages", int_ids=True, int_session_ids=True)
    with ChatStore(engine, table=table) as store:
        store.migrate()
        with store.draft(7) as d:
            d.append("x")
        (m,) = store.history(7)
        assert (m.id, m.session_id) == (int(d.message_id), 7)
        assert type(m.id) is int and type(m.session_id) is int
        assert store.get_message(m.id).id == m.id
    engine.dispose()
