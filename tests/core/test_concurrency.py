"""Many drafts at once: group commit, and readers during heavy writing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from chatpersist import COMPLETE, ChatStore


def answer(n: int) -> list[str]:
    return [f"d{n}c{i} " for i in range(60)]


def test_200_concurrent_drafts_threads(
    make_store: Callable[..., ChatStore], capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    store = make_store(every_chunks=20, every_seconds=2.0)
    sid = store.create_session()
    ids: dict[int, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(200)

    def run(n: int) -> None:
        try:
            start.wait()
            with store.draft(sid) as d:
                ids[n] = d.message_id
                for piece in answer(n):
                    d.append(piece)
                    time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    before = store.stats.transactions
    threads = [threading.Thread(target=run, args=(n,)) for n in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    msgs = {m.id: m for m in store.history(sid)}
    for n, mid in ids.items():
        assert (msgs[mid].content, msgs[mid].status) == ("".join(answer(n)), COMPLETE)
    tx = store.stats.transactions - before
    flushes = store.stats.flushes
    with capsys.disabled():
        print(
            f"\n[{backend}] 200 drafts x 60 chunks: {flushes} flushes in {tx} writer transactions"
        )
    # Group commit: several drafts share a transaction.
    assert tx < flushes


def test_200_concurrent_drafts_asyncio(store: ChatStore) -> None:
    sid = store.create_session()

    async def one(n: int) -> str:
        async with store.draft_async(sid) as d:
            for piece in answer(n):
                d.append(piece)
                await asyncio.sleep(0.001)
        return d.message_id

    async def main() -> list[str]:
        return await asyncio.gather(*(one(n) for n in range(200)))

    ids = asyncio.run(main())
    msgs = {m.id: m for m in store.history(sid)}
    assert all(msgs[mid].content == "".join(answer(n)) for n, mid in enumerate(ids))
    assert all(msgs[mid].status == COMPLETE for mid in ids)


def test_history_reads_never_fail_during_heavy_writing(store: ChatStore) -> None:
    sid = store.create_session()
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = 0

    def write(n: int) -> None:
        try:
            while not stop.is_set():
                with store.draft(sid, every_chunks=2) as d:
                    for piece in answer(n)[:20]:
                        d.append(piece)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(20)]
    for t in writers:
        t.start()
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            store.history(sid)
            reads += 1
    finally:
        stop.set()
        for t in writers:
            t.join()
    assert not errors
    assert reads > 10
    assert all(m.content for m in store.history(sid) if m.status == COMPLETE)
