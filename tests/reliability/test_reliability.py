"""Reliability: many crashes, hostile input, two writers of one message, and
property-based checks of the flush logic. Counts are set by CHATPERSIST_CRASH_RUNS
(default 100 per database, as published in docs/reliability.md)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import (
    CRASH_WRITER,
    EVERY_CHUNKS,
    OffsetClock,
    chunk,
    fresh_database,
    kill_writer_after,
)

from chatpersist import COMPLETE, STREAMING, ChatStore, MessageConflict
from chatpersist.testing import ManualClock

CRASH_RUNS = int(os.environ.get("CHATPERSIST_CRASH_RUNS", "100"))


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_sigkill_at_random_moments(kind: str, tmp_path: Path) -> None:
    for url in fresh_database(kind, tmp_path):
        with ChatStore(url) as store:
            store.migrate()
            later = ChatStore(store.engine, clock=OffsetClock(31))
            rng = random.Random(20261124)
            worst = 0
            for run in range(CRASH_RUNS):
                sid = store.create_session()
                mid = f"k{run}"
                seen = kill_writer_after(url, sid, mid, rng.randrange(1, 80))
                m = store.get_message(mid)
                generated = "".join(chunk(i) for i in range(seen + 50))
                assert generated.startswith(m.content), run
                behind = seen - m.content.count(" ")
                worst = max(worst, behind)
                assert behind <= EVERY_CHUNKS + 2, (run, seen, m.content.count(" "))
                assert later.get_message(mid).interrupted
            if kind == "sqlite":
                with store.engine.connect() as conn:
                    assert conn.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
            print(f"\n{kind}: {CRASH_RUNS} kills, at most {worst} chunks behind the writer")


def test_two_processes_write_one_message(store: ChatStore) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    sid = store.create_session()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, str(CRASH_WRITER), url, sid, "shared", "3", "0.1", "0.01"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    assert first.stdout is not None and first.stdout.readline().strip() == "open"
    time.sleep(0.5)
    # A second process takes the same message over (e.g. a retry on another worker).
    with store.draft(sid, message_id="shared", every_chunks=2) as d:
        taken_over_at = d.text
        for i in range(50):
            d.append(f"n{i} ")
            time.sleep(0.005)
    final = store.get_message("shared")
    time.sleep(0.5)  # the first process keeps writing meanwhile; it is fenced off
    first.kill()
    first.wait()
    again = store.get_message("shared")
    assert again == final or (again.content, again.status) == (final.content, final.status)
    assert final.status == COMPLETE
    assert final.content == taken_over_at + "".join(f"n{i} " for i in range(50))
    with pytest.raises(MessageConflict):
        store.draft(sid, message_id="shared").__enter__()


def test_hostile_input(store: ChatStore, backend: str) -> None:
    sid = store.create_session()
    big = "x" * (10 * 1024 * 1024)
    with store.draft(sid) as d:
        d.append("nul\x00byte ")
        d.append(big)
        for ch in "one char at a time " * 5000:  # 100,000 one-character chunks
            d.append(ch)
        d.append("😀"[:1])
        with pytest.raises(TypeError):
            d.append(b"bytes")  # type: ignore[arg-type]
    m = store.get_message(d.message_id)
    expected = "nul\x00byte " + big + "one char at a time " * 5000 + "😀"
    if backend == "postgresql":
        expected = expected.replace("\x00", "\ufffd")  # documented: text cannot hold NUL
    assert m.content == expected and m.status == COMPLETE
    with pytest.raises(ValueError):
        store.draft(sid, message_id="i" * 256)
    weird = "'; DELETE FROM chatpersist_messages; -- \" `x` \\ 😀"
    with store.draft(sid, message_id=weird) as d2:
        d2.append(weird)
    assert store.get_message(weird).content == weird
    assert store.get_message(d.message_id).content == expected  # nothing lost


_STORES: dict[int, tuple[ChatStore, ManualClock]] = {}

ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.text(min_size=0, max_size=6)),
        st.tuples(st.just("flush"), st.none()),
        st.tuples(st.just("tick"), st.floats(0.1, 3.0)),
    ),
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops, ending=st.sampled_from(["complete", "stop", "error", "cancel"]))
def test_any_sequence_leaves_a_prefix(
    make_store: Callable[..., ChatStore], backend: str, ops: list[tuple[str, object]], ending: str
) -> None:
    def storable(text: str) -> str:  # documented: PostgreSQL text cannot hold NUL
        return text.replace("\x00", "\ufffd") if backend == "postgresql" else text

    # One store for all examples (a store per example would exhaust connections).
    if id(make_store) not in _STORES:
        clock = ManualClock()
        _STORES[id(make_store)] = (
            make_store(every_chunks=3, every_seconds=1.0, clock=clock),
            clock,
        )
    store, clock = _STORES[id(make_store)]
    sid = store.create_session()
    appended = ""
    seqs: list[int] = []
    d = store.draft(sid)
    d.__enter__()
    for op, arg in ops:
        if op == "append":
            d.append(str(arg))
            appended += str(arg)
        elif op == "flush":
            d.flush(timeout=10)
            assert store.get_message(d.message_id).content == storable(appended)
        else:
            clock.advance(float(arg))  # type: ignore[arg-type]
        m = store.get_message(d.message_id)
        assert storable(appended).startswith(m.content)
        seqs.append(m.seq)
    exc: type[BaseException] | None = None
    if ending == "stop":
        d.stop()
    elif ending == "error":
        exc = RuntimeError
    elif ending == "cancel":
        exc = KeyboardInterrupt
    d.__exit__(exc, exc() if exc else None, None)
    m = store.get_message(d.message_id)
    seqs.append(m.seq)
    assert seqs == sorted(seqs)  # monotonic
    assert m.content == storable(appended)  # every end makes a final flush of all text
    assert m.status == (COMPLETE if ending == "complete" else STREAMING)
