"""Never lose or regress an answer: takeovers, bad facts, oversize flushes, deletions,
faults after the commit, lost wake-ups and a close with the database away."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import CRASH_WRITER, OffsetClock, wait_until
from tcp_proxy import TcpProxy

from chatpersist import (
    COMPLETE,
    STREAMING,
    ChatStore,
    FlushError,
)
from chatpersist._errors import StoreClosed
from chatpersist._journal import Journal
from chatpersist.providers import stream_into
from chatpersist.providers._chunks import Finish, ModelName, TextDelta, Usage
from chatpersist.testing import ManualClock


def _open(store: ChatStore, sid: str, mid: str):  # type: ignore[no-untyped-def]
    d = store.draft(sid, message_id=mid)
    d.__enter__()
    return d


def test_takeover_fences_the_old_writer(make_store: Callable[..., ChatStore]) -> None:
    # The report's sequence: the old writer's next seq was exactly the one the
    # takeover gave the row, so it kept writing ('A1 A3 B2 ').
    a = make_store(every_chunks=1000)
    b = make_store(every_chunks=1000)
    sid = a.create_session()
    da = _open(a, sid, "m1")
    da.append("A1 ")
    da.flush(timeout=10)
    db = _open(b, sid, "m1")
    da.append("A2 ")
    da.flush(timeout=10)
    da.append("A3 ")
    da.flush(timeout=10)
    db.append("B1 ")
    db.flush(timeout=10)
    db.append("B2 ")
    db.flush(timeout=10)
    da.__exit__(None, None, None)
    db.__exit__(None, None, None)
    m = a.get_message("m1")
    assert (m.content, m.status) == ("A1 B1 B2 ", COMPLETE)
    assert da.superseded and not db.superseded
    assert da.text == "A1 A2 A3 "  # the fenced writer's text stays in its memory


def test_second_takeover_fences_both_earlier_writers(make_store: Callable[..., ChatStore]) -> None:
    stores = [make_store(every_chunks=1000) for _ in range(3)]
    sid = stores[0].create_session()
    drafts = []
    for i, s in enumerate(stores):
        d = _open(s, sid, "m")
        d.append(f"w{i} ")
        d.flush(timeout=10)
        drafts.append(d)
    for d in drafts[:2]:  # the old writers come back, one after the other
        d.append("late ")
        d.flush(timeout=10)
    drafts[2].append("end")
    for d in drafts:
        d.__exit__(None, None, None)
    m = stores[0].get_message("m")
    assert (m.content, m.status) == ("w0 w1 w2 end", COMPLETE)
    assert [d.superseded for d in drafts] == [True, True, False]


@pytest.mark.slow
def test_writer_paused_past_its_lease_never_touches_the_row_again(
    make_store: Callable[..., ChatStore], db_url: str
) -> None:
    # A real writer process, stopped with SIGSTOP (a long GC pause, a frozen VM),
    # taken over once its lease ran out, then resumed: its flushes go nowhere.
    store = make_store()
    sid = store.create_session()
    proc = subprocess.Popen(
        [sys.executable, str(CRASH_WRITER), db_url, sid, "paused", "1", "0.05", "0.005"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "open"
        wait_until(lambda: len(store.get_message("paused").content) > 50, what="first flushes")
        _stop_between_transactions(proc, store, "paused")
        before = store.get_message("paused").content
        later = ChatStore(db_url, clock=OffsetClock(31))
        try:
            assert later.get_message("paused").interrupted
            with later.draft(sid, message_id="paused") as d:
                d.append("[taken over]")
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(1.5)  # the resumed writer flushes every chunk, every 5 ms
            m = later.get_message("paused")
        finally:
            later.close()
        assert m.status == COMPLETE
        assert m.content == before + "[taken over]"
    finally:
        proc.kill()
        proc.wait()


def _stop_between_transactions(proc: subprocess.Popen[str], store: ChatStore, mid: str) -> None:
    """SIGSTOP the writer, but not inside a flush: a process frozen while it holds the
    row's lock would (rightly) make the takeover wait for it."""
    L = store.layout
    for _ in range(200):
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(0.05)
        try:
            if store.engine.dialect.name == "sqlite":
                raw = sqlite3.connect(store.engine.url.database or "", timeout=0)
                try:
                    raw.execute("BEGIN IMMEDIATE")
                finally:
                    raw.close()
                return
            with store.engine.connect() as conn:
                conn.execute(sa.select(L.id).where(L.id == mid).with_for_update(nowait=True)).all()
                conn.rollback()
                return
        except (sa.exc.DBAPIError, sqlite3.OperationalError):
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.01)
    raise AssertionError("never caught the writer between two transactions")


def test_save_partial_cannot_overwrite_a_server_draft(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid, message_id="srv", every_chunks=1) as d:
        d.append("S1 ")
        d.flush(timeout=10)
        for seq in (2, 3, 4, 50):
            applied, m = store.save_partial(sid, "srv", "CLIENT-TEXT ", seq, done=seq == 50)
            assert not applied
            assert m.content.startswith("S1 ")
        for i in range(2, 5):
            d.append(f"S{i} ")
        d.flush(timeout=10)
    m = store.get_message("srv")
    assert (m.content, m.status) == ("S1 S2 S3 S4 ", COMPLETE)
    assert not d.superseded


def test_a_draft_takes_over_a_client_held_answer(store: ChatStore) -> None:
    sid = store.create_session()
    assert store.save_partial(sid, "cl", "client text ", 1)[0]
    with store.draft(sid, message_id="cl") as d:
        d.append("server text")
        assert not store.save_partial(sid, "cl", "the client again", 9)[0]
    assert store.get_message("cl").content == "client text server text"


# -- facts the column cannot hold --


def test_bad_facts_are_refused_when_set_and_the_text_is_kept(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("x" * 230)
        with pytest.raises(ValueError, match="at most 255"):
            d.set_model("m" * 318)
        with pytest.raises(ValueError, match="input_tokens"):
            d.set_usage(input_tokens=2**31)
        with pytest.raises(ValueError, match="output_tokens"):
            d.set_usage(output_tokens=-1)
        with pytest.raises(ValueError, match="at most 64"):
            d.finish_reason = "r" * 65
        d.set_model("ok-model")
        d.set_usage(input_tokens=2**31 - 1, output_tokens=5)
    m = store.get_message(d.message_id)
    assert (len(m.content), m.status, m.model, m.input_tokens) == (230, COMPLETE, "ok-model", 2**31 - 1)


def test_a_provider_with_odd_facts_never_breaks_the_stream(store: ChatStore) -> None:
    sid = store.create_session()
    items = [
        ModelName("m" * 318),
        TextDelta("kept "),
        Usage(input_tokens=2**40, output_tokens=3),
        TextDelta("all"),
        Finish("f" * 80),
    ]
    m = stream_into(store, sid, items)
    assert m.content == "kept all"
    assert m.model == "m" * 255
    assert m.finish_reason == "f" * 64
    assert m.status == COMPLETE


def test_facts_the_database_refuses_at_flush_time_lose_no_text(
    store: ChatStore, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite stores any length: nothing to refuse")
    sid = store.create_session()
    other = store.draft(sid)
    other.__enter__()
    with store.draft(sid, every_chunks=1) as d:
        d._set_extra("model", "m" * 318)  # past the checks, as a bug would
        d.append("a" * 100)
        other.append("unharmed")
        d.flush(timeout=10)
        d.append("b" * 130)
    other.__exit__(None, None, None)
    m = store.get_message(d.message_id)
    assert (m.content, m.status, m.model) == ("a" * 100 + "b" * 130, COMPLETE, None)
    assert store.get_message(other.message_id).content == "unharmed"
    assert store.stats.refused == 0


# -- oversize flushes --


@pytest.mark.slow
def test_a_flush_larger_than_the_server_takes_is_split(
    make_store: Callable[..., ChatStore], backend: str
) -> None:
    # MariaDB refuses a statement over max_allowed_packet (16 MiB here) with 2006,
    # which looked transient and was retried forever, starving every other draft.
    # 12 MiB of text, half of it quotes and backslashes (escaped: two bytes each),
    # make an 18 MiB statement for a value the server holds.
    store = make_store(every_chunks=1000, every_seconds=1.0)
    sid = store.create_session()
    big = "".join(f"{i:06d}\\'\\'\\" for i in range(12 * 1024 * 1024 // 12))
    with store.draft(sid) as other, store.draft(sid) as d:
        d.append(big[: len(big) // 3])
        other.append("small ")
        d.flush(timeout=60)
        other.flush(timeout=10)
        d.append(big[len(big) // 3 :])
        other.append("still moving")
    assert store.get_message(d.message_id).content == big
    assert store.get_message(other.message_id).content == "small still moving"
    # A rewrite of the whole text (the row fell behind) is split the same way.
    with store.draft(sid) as d2:
        d2.append(big)
        d2.flush(timeout=60)
        L = store.layout
        with store.engine.begin() as conn:
            conn.execute(
                sa.update(L.messages).where(L.id == d2.message_id).values({L.content: "", L.seq: 0})
            )
        d2.append("!")
    assert store.get_message(d2.message_id).content == big + "!"


@pytest.mark.slow
def test_an_answer_larger_than_the_server_holds(
    make_store: Callable[..., ChatStore], backend: str
) -> None:
    # 20 MiB: more than MariaDB holds in one value at max_allowed_packet = 16 MiB.
    # There it is a clear error for that draft alone; elsewhere it is stored whole.
    store = make_store(every_chunks=1000, every_seconds=1.0)
    sid = store.create_session()
    big = "".join(f"{i:07d} " for i in range(20 * 1024 * 1024 // 8))
    other = store.draft(sid)
    other.__enter__()
    d = store.draft(sid)
    d.__enter__()
    d.append(big)
    other.append("unharmed")
    if backend == "mysql":
        with pytest.raises(FlushError, match="max_allowed_packet"):
            d.__exit__(None, None, None)
    else:
        d.__exit__(None, None, None)
        assert store.get_message(d.message_id).content == big
    other.__exit__(None, None, None)
    assert store.get_message(other.message_id).content == "unharmed"


# -- the writer thread --


@pytest.mark.parametrize("raising_first", [True, False])
def test_a_fault_after_the_commit_never_rewrites_the_batch(
    make_store: Callable[..., ChatStore], raising_first: bool
) -> None:
    # An async draft whose event loop was closed made the bookkeeping after the
    # commit raise; the batch was taken for failed and written again, stale.
    store = make_store(every_chunks=1000, clock=ManualClock())
    sid = store.create_session()
    a, b = store.draft(sid), store.draft(sid)
    a.__enter__()
    b.__enter__()
    b.append("b1b2")
    b.flush(timeout=10)
    b.append("b3b4")

    def boom() -> None:
        raise RuntimeError("Event loop is closed")

    writer = store._writer
    writer.on_done(a._opened(), boom)
    a.append("a")
    with writer._cond:  # a's end and b's flush in one batch, in either order
        if raising_first:
            a._end(None)
        b._opened().first_pending_at = float("-inf")
        writer._candidates[id(b._opened())] = b._opened()
        if not raising_first:
            a._end(None)
    writer.wait(a._opened(), 10)
    wait_until(lambda: b.seq == 2, what="b's second flush")
    b.append("b5b6")
    b.__exit__(None, None, None)
    assert b.text == "b1b2b3b4b5b6"
    m = store.get_message(b.message_id)
    assert (m.content, m.status) == ("b1b2b3b4b5b6", COMPLETE)
    assert store.get_message(a.message_id).content == "a"


class _SlowEvent(threading.Event):
    """`is_set()` answers, then sleeps: the writer can finish the draft meanwhile."""

    def is_set(self) -> bool:
        answer = super().is_set()
        time.sleep(0.3)
        return answer


def test_no_lost_wake_up_when_an_async_draft_ends(make_store: Callable[..., ChatStore]) -> None:
    store = make_store(final_timeout=5)
    sid = store.create_session()

    async def run() -> float:
        async with store.draft_async(sid) as d:
            d.append("text")
            d._opened().done = _SlowEvent()
            start = time.monotonic()
        return time.monotonic() - start

    assert asyncio.run(run()) < 3  # not the whole final_timeout


# -- deleted stays deleted --


def test_a_deleted_message_stays_deleted(
    store: ChatStore, caplog: pytest.LogCaptureFixture
) -> None:
    sid = store.create_session()
    L = store.layout
    caplog.set_level(logging.INFO, "chatpersist")
    with store.draft(sid, every_chunks=1) as d:
        d.append("first ")
        d.flush(timeout=10)
        with store.engine.begin() as conn:
            conn.execute(sa.delete(L.messages).where(L.id == d.message_id))
        d.append("more ")
        d.flush(timeout=10)
        d.append("and more")
    assert d.deleted and not d.superseded
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(L.id).where(L.id == d.message_id)).first() is None
    assert [r.message for r in caplog.records].count(
        f"chatpersist: message {d.message_id!r} was deleted; its draft stops writing"
    ) == 1


def test_a_deleted_session_stays_deleted(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("first ")
        d.flush(timeout=10)
        with store.engine.begin() as conn:
            sessions = store.layout.sessions
            assert sessions is not None
            conn.execute(sa.delete(sessions).where(sessions.c.id == sid))
        d.append("more")
    assert d.deleted
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(store.layout.messages)).scalar() == 0


# -- close() with the database away --


@pytest.fixture
def pg_proxy(db_url: str, backend: str):  # type: ignore[no-untyped-def]
    if backend == "sqlite":
        pytest.skip("needs a server to cut off")
    real = sa.make_url(db_url)
    proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
    url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    yield proxy, url
    proxy.close()


@pytest.mark.slow
def test_close_with_the_database_away_spills_everything(pg_proxy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proxy, url = pg_proxy
    journal = tmp_path / "journal"
    store = ChatStore(url, journal=journal, every_chunks=1000, spill_after=30)
    store.migrate()
    sid = store.create_session()
    d = store.draft(sid)
    d.__enter__()
    d.append("written ")
    d.flush(timeout=10)
    proxy.cut()
    d.append("only in memory")
    start = time.monotonic()
    store.close(timeout=3)
    assert time.monotonic() - start < 10
    with pytest.raises(StoreClosed):
        d.append("after close")
    proxy.restore()
    records = Journal(journal).latest()
    assert [r.content for r in records] == ["written only in memory"]
    with ChatStore(url, journal=journal) as again:
        m = again.get_message(d.message_id)
    assert (m.content, m.status, m.finish_reason) == ("written only in memory", STREAMING, "cancelled")


@pytest.mark.slow
def test_close_with_the_database_away_and_no_journal_raises(pg_proxy) -> None:  # type: ignore[no-untyped-def]
    proxy, url = pg_proxy
    store = ChatStore(url, every_chunks=1000)
    store.migrate()
    sid = store.create_session()
    d = store.draft(sid)
    d.__enter__()
    d.append("x")
    d.flush(timeout=10)
    proxy.cut()
    d.append("lost")
    with pytest.raises(FlushError, match="1 drafts could not be written"):
        store.close(timeout=2)
    proxy.restore()


# -- smaller --


def test_a_late_writer_clears_the_abandoned_mark_with_a_heartbeat(
    make_store: Callable[..., ChatStore],
) -> None:
    clock = ManualClock()
    store = make_store(clock=clock, lease_seconds=30)
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("paused ")
        d.flush(timeout=10)
        sweeper = make_store(clock=OffsetClock(31))
        assert sweeper.sweep() == 1
        assert store.get_message(d.message_id).interrupted
        clock.advance(11)  # a heartbeat is due (a third of the lease): no new text
        wait_until(lambda: store.get_message(d.message_id).finish_reason is None, what="beat")
        assert store.get_message(d.message_id).live


def test_a_surrogate_pair_split_across_flushes_is_one_character(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid, every_chunks=1) as d:
        d.append("a\ud83d")
        d.flush(timeout=10)
        d.append("\ude00b")
    assert store.get_message(d.message_id).content == "a😀b"


def test_one_rule_for_finish_reasons(store: ChatStore) -> None:
    sid = store.create_session()
    for reason in ("content_filter", "stop", "length"):
        with store.draft(sid) as d:
            d.append("x")
            d.finish_reason = reason
        assert store.get_message(d.message_id).status == COMPLETE
        applied, m = store.save_partial(sid, f"c-{reason}", "x", 1, done=True, finish_reason=reason)
        assert applied and m.status == COMPLETE
    for reason in ("stopped", "disconnected"):
        with store.draft(sid) as d:
            d.append("x")
            d.finish_reason = reason
        assert store.get_message(d.message_id).interrupted
        applied, m = store.save_partial(sid, f"c-{reason}", "x", 1, done=True, finish_reason=reason)
        assert applied and m.interrupted


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_draft_whose_writes_keep_failing_never_holds_the_others_back(
    make_store: Callable[..., ChatStore],
) -> None:
    # A trigger makes the database answer one draft's writes with a serialization
    # failure (transient by its class) while every other write commits.
    store = make_store(every_chunks=1, every_seconds=0.1)
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
            "IF position('POISON' in NEW.content) > 0 THEN "
            "RAISE EXCEPTION 'poisoned' USING ERRCODE = '40001'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER poison BEFORE UPDATE ON chatpersist_messages "
            "FOR EACH ROW EXECUTE FUNCTION poison()"
        )
    sid = store.create_session()
    bad = store.draft(sid)
    bad.__enter__()
    bad.append("fine, then POISON")
    start = time.monotonic()
    with store.draft(sid) as good:
        for i in range(20):
            good.append(f"g{i} ")
            time.sleep(0.02)
        good.flush(timeout=5)
    assert time.monotonic() - start < 5
    assert store.get_message(good.message_id).content == "".join(f"g{i} " for i in range(20))
    with pytest.raises(FlushError, match="poisoned"):
        bad.__exit__(None, None, None)  # refused alone, after a bounded number of tries
    assert store.stats.refused == 1


def test_flush_while_a_heartbeat_is_in_flight_returns(
    make_store: Callable[..., ChatStore],
) -> None:
    # A beat does not move seq: a flush with nothing to write must not wait for it.
    from chatpersist._writer import _Job

    store = make_store(clock=ManualClock())
    sid = store.create_session()
    with store.draft(sid) as d:
        state = d._opened()
        with store._writer._cond:
            state.job = _Job(state, state.seq, "", STREAMING, None, False, heartbeat=True)
        start = time.monotonic()
        d.flush(timeout=5)
        assert time.monotonic() - start < 1
        with store._writer._cond:
            state.job = None
