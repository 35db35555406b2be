"""Renaming and deleting sessions: `rename_session` and `delete_session`, their async
twins, and a draft still writing into a session that is deleted under it (it stops
writing and never brings the rows back)."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from chatpersist import (
    AsyncChatStore,
    ChatStore,
    MessagesTable,
    NoSessionsTable,
    UnknownMessage,
    UnknownSession,
)


def rows_of(store: ChatStore, session_id: str) -> int:
    L = store.layout
    with store.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(L.session_id == L.session_key(session_id))
        return int(conn.execute(query).scalar() or 0)


def test_rename_keeps_the_order_of_activity(store: ChatStore) -> None:
    old = store.create_session("first")
    new = store.create_session("second")
    store.rename_session(old, "Why save drafts?")
    by_id = {s.id: s for s in store.sessions()}
    assert by_id[old].title == "Why save drafts?"
    assert [s.id for s in store.sessions()] == [new, old]  # renaming is not activity
    store.rename_session(old, "Why save drafts?")  # the same title again: fine
    store.rename_session(old, None)
    assert {s.id: s for s in store.sessions()}[old].title is None


def test_rename_and_delete_refuse_unknown_sessions(store: ChatStore) -> None:
    with pytest.raises(UnknownSession):
        store.rename_session("nope", "x")
    with pytest.raises(UnknownSession):
        store.delete_session("nope")
    sid = store.create_session()
    with pytest.raises(TypeError):
        store.rename_session(sid, 42)  # type: ignore[arg-type]


def test_delete_removes_the_session_and_only_its_messages(store: ChatStore) -> None:
    doomed = store.create_session("doomed")
    kept = store.create_session("kept")
    for sid in (doomed, kept):
        store.add_message(sid, "user", "hi")
        store.add_message(sid, "assistant", "hello")
    assert store.delete_session(doomed) == 2
    assert [s.id for s in store.sessions()] == [kept]
    assert rows_of(store, doomed) == 0 and rows_of(store, kept) == 2
    with pytest.raises(UnknownSession):
        store.history(doomed)
    with pytest.raises(UnknownSession):
        store.delete_session(doomed)  # once
    assert store.delete_session(store.create_session()) == 0  # an empty one


def test_a_draft_writing_into_a_deleted_session_stops_and_leaves_nothing(
    store: ChatStore,
) -> None:
    sid = store.create_session("doomed")
    store.add_message(sid, "user", "tell me")
    with store.draft(sid) as d:
        d.append("written ")
        d.flush()
        assert store.get_message(d.message_id).content == "written "
        assert store.delete_session(sid) == 2
        d.append("after the delete ")
        d.flush()  # finds no row: the draft stops writing
        assert d.deleted
        d.append("kept in memory only")
        assert d.text == "written after the delete kept in memory only"
    # ...and its final flush, at the end of the block, writes nothing back either.
    assert rows_of(store, sid) == 0
    assert sid not in [s.id for s in store.sessions()]
    with pytest.raises(UnknownMessage):
        store.get_message(d.message_id)
    assert store.stats.deleted == 1
    with pytest.raises(UnknownSession):  # nor can a new draft open there
        with store.draft(sid) as again:
            again.append("x")


def test_the_async_twins(store: ChatStore) -> None:
    async def run() -> None:
        astore = AsyncChatStore(store)
        sid = await astore.create_session("before")
        await astore.add_message(sid, "user", "hi")
        await astore.rename_session(sid, "after")
        assert [s.title for s in await astore.sessions()] == ["after"]
        assert await astore.delete_session(sid) == 1
        assert await astore.sessions() == []
        with pytest.raises(UnknownSession):
            await astore.rename_session(sid, "gone")

    asyncio.run(run())


def test_an_apps_own_table_keeps_its_sessions_itself(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/app.db"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE chat_messages (id VARCHAR(64) PRIMARY KEY, session_id VARCHAR(64) "
            "NOT NULL, role VARCHAR(16) NOT NULL, content TEXT NOT NULL, created_at DATETIME)"
        )
    engine.dispose()
    with ChatStore(url, table=MessagesTable("chat_messages")) as store:
        with pytest.raises(NoSessionsTable):
            store.rename_session("s1", "x")
        with pytest.raises(NoSessionsTable):
            store.delete_session("s1")
