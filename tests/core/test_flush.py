"""When drafts are written: chunk counts, timers, and every way a stream can end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator

import pytest
from support import wait_until

from chatpersist import COMPLETE, STREAMING, ChatStore
from chatpersist.testing import ManualClock


def stored(store: ChatStore, message_id: str) -> str:
    return store.get_message(message_id).content


def test_flush_every_n_chunks(make_store: Callable[..., ChatStore]) -> None:
    clock = ManualClock()  # never advanced: only the chunk count can trigger a flush
    store = make_store(every_chunks=5, every_seconds=2.0, clock=clock)
    sid = store.create_session()
    with store.draft(sid) as d:
        for i in range(5):
            d.append(f"c{i} ")
        wait_until(lambda: stored(store, d.message_id) == "c0 c1 c2 c3 c4 ", what="first flush")
        for i in range(5, 9):
            d.append(f"c{i} ")
        time.sleep(0.5)
        assert stored(store, d.message_id) == "c0 c1 c2 c3 c4 "  # 4 chunks: not due yet
        assert store.get_message(d.message_id).live
        d.append("c9 ")
        wait_until(lambda: stored(store, d.message_id).endswith("c9 "), what="second flush")
    m = store.get_message(d.message_id)
    assert (m.status, m.finish_reason, m.content) == (COMPLETE, "stop", d.text)


def test_timer_flushes_a_stalled_stream(make_store: Callable[..., ChatStore]) -> None:
    clock = ManualClock()
    store = make_store(every_chunks=1000, every_seconds=2.0, clock=clock)
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("only chunk")  # ...and the model goes silent
        clock.advance(1.9)
        time.sleep(0.6)
        assert stored(store, d.message_id) == ""
        clock.advance(0.2)
        wait_until(lambda: stored(store, d.message_id) == "only chunk", what="timed flush")
        assert store.get_message(d.message_id).status == STREAMING


def test_timer_is_real_with_the_system_clock(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid, every_chunks=1000, every_seconds=0.2) as d:
        d.append("stalled")
        wait_until(lambda: stored(store, d.message_id) == "stalled", timeout=3, what="flush")


def test_timer_counts_from_the_first_unflushed_chunk(make_store: Callable[..., ChatStore]) -> None:
    clock = ManualClock()
    store = make_store(every_chunks=1000, every_seconds=2.0, clock=clock)
    sid = store.create_session()
    with store.draft(sid) as d:
        clock.advance(5)  # time with nothing buffered does not count
        d.append("a")
        time.sleep(0.5)
        assert stored(store, d.message_id) == ""
        clock.advance(2)
        wait_until(lambda: stored(store, d.message_id) == "a", what="flush")


def test_normal_end_is_complete_with_all_text(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid, every_chunks=7) as d:
        for i in range(100):
            d.append(f"{i},")
        d.finish_reason = "length"
    m = store.get_message(d.message_id)
    assert m.content == "".join(f"{i}," for i in range(100))
    assert (m.status, m.finish_reason, m.interrupted, m.live) == (COMPLETE, "length", False, False)
    assert m.display_content == m.content


def test_exception_saves_text_and_propagates(store: ChatStore) -> None:
    sid = store.create_session()
    with pytest.raises(ConnectionError), store.draft(sid, every_chunks=1000) as d:
        d.append("partial ")
        d.append("answer")
        raise ConnectionError("provider went away")
    m = store.get_message(d.message_id)
    assert (m.content, m.status, m.finish_reason) == ("partial answer", STREAMING, "error")
    assert m.interrupted and not m.live
    assert m.display_content == "partial answer\n\n(response interrupted)"


def test_keyboard_interrupt_is_saved_as_cancelled(store: ChatStore) -> None:
    sid = store.create_session()
    with pytest.raises(KeyboardInterrupt), store.draft(sid) as d:
        d.append("half")
        raise KeyboardInterrupt
    m = store.get_message(d.message_id)
    assert (m.content, m.finish_reason, m.interrupted) == ("half", "cancelled", True)


def test_stop_is_never_complete(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("the user pressed Stop here")
        d.stop()
    m = store.get_message(d.message_id)
    assert (m.status, m.finish_reason, m.interrupted) == (STREAMING, "stopped", True)


def test_generator_closed_by_consumer(store: ChatStore) -> None:
    sid = store.create_session()
    ids: list[str] = []

    def answer() -> Generator[str, None, None]:
        with store.draft(sid, every_chunks=1000) as d:
            ids.append(d.message_id)
            for i in range(1000):
                d.append(f"w{i} ")
                yield f"w{i} "

    gen = answer()
    got = [next(gen) for _ in range(3)]
    gen.close()  # the client went away
    m = store.get_message(ids[0])
    assert m.content == "".join(got)
    assert (m.status, m.finish_reason, m.interrupted) == (STREAMING, "cancelled", True)


def test_async_task_cancel(store: ChatStore) -> None:
    sid = store.create_session()
    ids: list[str] = []

    async def stream() -> None:
        async with store.draft_async(sid, every_chunks=1000) as d:
            ids.append(d.message_id)
            for i in range(10_000):
                d.append(f"t{i} ")
                await asyncio.sleep(0.001)

    async def main() -> None:
        task = asyncio.create_task(stream())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    m = store.get_message(ids[0])
    assert m.content.startswith("t0 t1 t2 ") and m.content.endswith(" ")
    assert (m.status, m.finish_reason, m.interrupted) == (STREAMING, "cancelled", True)


def test_async_normal_end(store: ChatStore) -> None:
    sid = store.create_session()

    async def main() -> str:
        async with store.draft_async(sid, every_chunks=3) as d:
            for ch in "streamed asynchronously":
                d.append(ch)
                await asyncio.sleep(0)
        return d.message_id

    m = store.get_message(asyncio.run(main()))
    assert (m.content, m.status) == ("streamed asynchronously", COMPLETE)


def test_append_does_no_io_and_flush_waits(make_store: Callable[..., ChatStore]) -> None:
    store = make_store(every_chunks=1000, every_seconds=1000, clock=ManualClock())
    sid = store.create_session()
    with store.draft(sid) as d:
        before = store.stats.transactions
        for _ in range(500):
            d.append("x")
        assert store.stats.transactions == before
        d.flush(timeout=10)
        assert stored(store, d.message_id) == "x" * 500
