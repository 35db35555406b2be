"""AsyncChatStore: an awaitable twin of every public ChatStore call, on the same
store (engine, writer, clock), that never blocks the event loop."""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from chatpersist import COMPLETE, AsyncChatStore, AsyncDraft, ChatStore, MessageConflict

#: ChatStore's own async helpers, which the twin replaces with plain names.
OLD_ASYNC = {"draft_async", "aget_message"}


def public(cls: type) -> dict[str, object]:
    return {n: v for n, v in vars(cls).items() if not n.startswith("_") and n not in OLD_ASYNC}


def test_every_public_store_call_has_a_twin_with_the_same_parameters() -> None:
    sync = public(ChatStore) | {n: getattr(ChatStore, n) for n in (
        "sessions", "interrupted", "audit_stats", "sweep")}  # fmt: skip
    twin = public(AsyncChatStore)
    assert set(sync) <= set(twin), set(sync) - set(twin)
    for name, func in sync.items():
        if isinstance(func, property):
            assert isinstance(twin[name], property), name
            continue
        theirs = inspect.signature(func)  # type: ignore[arg-type]
        ours = inspect.signature(twin[name])  # type: ignore[arg-type]
        assert list(ours.parameters) == list(theirs.parameters), name
        for p in theirs.parameters.values():
            assert ours.parameters[p.name].default == p.default, (name, p.name)
            assert ours.parameters[p.name].kind == p.kind, (name, p.name)
        expect_coroutine = name != "draft"
        assert inspect.iscoroutinefunction(twin[name]) == expect_coroutine, name


def test_the_twin_does_what_the_store_does(store: ChatStore) -> None:
    astore = AsyncChatStore(store)

    async def run() -> None:
        sid = await astore.create_session("async")
        await astore.add_message(sid, "user", "hi")
        d = astore.draft(sid, every_chunks=2)
        assert isinstance(d, AsyncDraft)
        async with d:
            for piece in ("one ", "two ", "three"):
                d.append(piece)
        m = await astore.get_message(d.message_id)
        assert (m.content, m.status) == ("one two three", COMPLETE)
        assert [x.content for x in await astore.history(sid)] == ["hi", "one two three"]
        assert (await astore.history_for_model(sid))[-1] == {
            "role": "assistant", "content": "one two three"}  # fmt: skip
        # the same rows through the sync store: one implementation underneath
        assert store.get_message(d.message_id) == m
        assert [s.id for s in await astore.sessions()] == [s.id for s in store.sessions()]
        applied, saved = await astore.save_partial(sid, "client-1", "partial", 1)
        assert applied and saved.content == "partial"
        # a complete answer is never overwritten, through either door
        refused, kept = await astore.save_partial(sid, d.message_id, "x", 99)
        assert not refused and kept.content == "one two three"
        with pytest.raises(MessageConflict):
            await astore.add_message(sid, "user", "again", message_id=d.message_id)
        restarted = await astore.restart(d.message_id)
        assert restarted.content == "" and restarted.finish_reason == "regenerating"
        assert await astore.sweep() == 0
        assert await astore.interrupted() == store.interrupted()
        assert await astore.audit_stats() == store.audit_stats()

    asyncio.run(run())


def test_the_event_loop_keeps_running_while_the_database_is_busy(tmp_path: Path) -> None:
    """A SQLite write lock held elsewhere for 0.6 s: the twin's write waits for it in a
    worker thread while the loop goes on ticking."""
    url = f"sqlite:///{tmp_path / 'busy.db'}"

    async def run(astore: AsyncChatStore) -> tuple[int, float]:
        sid = await astore.create_session()
        holder = sa.create_engine(url)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        with holder.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.exec_driver_sql("INSERT INTO chatpersist_sessions (id, created_at, updated_at)"
                                 " VALUES ('x', '2024-01-01', '2024-01-01')")  # fmt: skip
            task = asyncio.create_task(ticker())
            started = time.monotonic()
            write = asyncio.create_task(astore.add_message(sid, "user", "waits for the lock"))
            await asyncio.sleep(0.6)
            conn.rollback()
        await write
        took = time.monotonic() - started
        task.cancel()
        holder.dispose()
        return ticks, took

    async def main() -> tuple[int, float]:
        async with AsyncChatStore(url) as astore:
            await astore.migrate()
            return await run(astore)

    ticks, took = asyncio.run(main())
    assert took >= 0.55  # the write really waited for the lock
    assert ticks >= 30  # and the loop ticked all along (60 at 10 ms; a blocked loop: 0)


def test_options_go_to_the_store_not_to_a_wrapper(store: ChatStore) -> None:
    with pytest.raises(TypeError):
        AsyncChatStore(store, every_chunks=3)
