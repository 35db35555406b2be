"""Sequence guards, bad input, and concurrent writers of one message."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from support import wait_until

from chatpersist import COMPLETE, STREAMING, ChatStore, MessageConflict, _sql
from chatpersist._message import to_db_time
from chatpersist.testing import ManualClock


def _row(store: ChatStore, mid: str) -> tuple[str, int, str]:
    m = store.get_message(mid)
    return m.content, m.seq, m.status


def _upsert(store: ChatStore, mid: str, sid: str, text: str, seq: int, status: str) -> None:
    L = store.layout
    assert L.created_at is not None and L.updated_at is not None  # the default layout
    now = to_db_time(store.clock.now())
    row = {
        L.id.key: mid,
        L.session_id.key: sid,
        L.role.key: "assistant",
        L.content.key: text,
        L.status.key: status,
        L.finish_reason.key: None,
        L.seq.key: seq,
        L.created_at.key: now,
        L.updated_at.key: now,
    }
    with store.engine.begin() as conn:
        conn.execute(_sql.full_upsert(L, store.engine.dialect, [row]))


def _take_over(store: ChatStore, mid: str, text: str, seq: int) -> None:
    """What another writer's takeover and flushes leave in the row."""
    L = store.layout
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(L.messages)
            .where(L.id == mid)
            .values({L.content: text, L.seq: seq, L.writer: "another-writer"})
        )


def test_out_of_order_writes_are_ignored(store: ChatStore) -> None:
    sid = store.create_session()
    _upsert(store, "m1", sid, "newest text", 5, STREAMING)
    _upsert(store, "m1", sid, "older", 4, STREAMING)
    _upsert(store, "m1", sid, "same seq", 5, STREAMING)
    assert _row(store, "m1")[:2] in {("newest text", 5), ("same seq", 5)}
    _upsert(store, "m1", sid, "newer still", 6, STREAMING)
    assert _row(store, "m1") == ("newer still", 6, STREAMING)
    # An append that expects another previous seq changes nothing.
    params = {
        _sql.P_ID: "m1",
        _sql.P_WRITER: "",
        _sql.P_PREV: 3,
        _sql.P_SEQ: 4,
        _sql.P_DELTA: "stale",
        _sql.P_STATUS: STREAMING,
        _sql.P_REASON: None,
        _sql.P_PARTS: None,
        _sql.P_NOW: to_db_time(store.clock.now()),
        **{_sql.extra_param(f): None for f in _sql.EXTRAS},
    }
    with store.engine.begin() as conn:
        assert conn.execute(_sql.append_update(store.layout, conn.dialect.name), [params]).rowcount == 0
    assert _row(store, "m1") == ("newer still", 6, STREAMING)


def test_complete_never_reverts(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("final answer")
    content, seq, status = _row(store, d.message_id)
    assert status == COMPLETE
    _upsert(store, d.message_id, sid, "late draft", seq + 10, STREAMING)
    assert _row(store, d.message_id) == ("final answer", seq, COMPLETE)
    with pytest.raises(MessageConflict), store.draft(sid, message_id=d.message_id):
        pass


def test_write_for_another_session_is_refused(store: ChatStore) -> None:
    a, b = store.create_session(), store.create_session()
    with store.draft(a) as d:
        d.append("mine")
        d.stop()
    with (
        pytest.raises(MessageConflict, match="another session"),
        store.draft(b, message_id=d.message_id),
    ):
        pass
    with pytest.raises(MessageConflict):
        store.add_message(b, "assistant", "x", message_id=d.message_id)
    _upsert(store, d.message_id, b, "hijack", 99, STREAMING)
    assert store.get_message(d.message_id).content == "mine"


def test_non_str_append_is_refused_and_the_draft_goes_on(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("before ")
        for bad in (b"bytes", 42, None, ["list"]):
            with pytest.raises(TypeError, match="takes str"):
                d.append(bad)  # type: ignore[arg-type]
        d.append("after")
    m = store.get_message(d.message_id)
    assert (m.content, m.status) == ("before after", COMPLETE)


def test_bad_ids_and_settings(store: ChatStore) -> None:
    sid = store.create_session()
    with pytest.raises(ValueError, match="message_id"):
        store.draft(sid, message_id="x" * 300)
    with pytest.raises(ValueError):
        store.draft(sid, every_chunks=0)
    with pytest.raises(ValueError):
        store.draft(sid, every_seconds=-1)
    with pytest.raises(ValueError, match="not a database URL"):
        ChatStore("definitely not a url")
    with pytest.raises(ValueError, match="in-memory"):
        ChatStore("sqlite://")


def test_odd_text_round_trips(store: ChatStore) -> None:
    sid = store.create_session()
    tricky = "emoji 😀👍🏽, quotes ' \" ; DROP TABLE x; -- \\ % _ \t\n日本語"
    with store.draft(
        sid, message_id="id'; DROP TABLE chatpersist_messages; --", every_chunks=3
    ) as d:
        for ch in tricky:
            d.append(ch)
    assert store.get_message(d.message_id).content == tricky


def test_unstorable_characters_are_replaced_visibly(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("a\ud800b")  # a lone surrogate: no UTF-8 column can hold it
        d.append("\ud83d")  # half of 😀 ...
        d.append("\ude00")  # ... and the other half in the next chunk
    content = store.get_message(d.message_id).content
    assert content.startswith("a\ufffdb")
    assert content.endswith("😀")


def test_a_newer_writer_takes_over(make_store: Callable[..., ChatStore]) -> None:
    store = make_store(clock=ManualClock())
    sid = store.create_session()
    old = store.draft(sid, message_id="shared")
    old.__enter__()
    old.append("old writer ")
    old.flush(timeout=10)
    with store.draft(sid, message_id="shared") as new:
        assert new.text == "old writer "  # resumes from what is stored
        old.append("stale text")
        old.flush(timeout=10)  # fenced off by the newer seq
        new.append("continued")
    old.__exit__(None, None, None)
    m = store.get_message("shared")
    assert (m.content, m.status) == ("old writer continued", COMPLETE)


def test_not_migrated_is_a_clear_error(db_url: str) -> None:
    from chatpersist import NotMigrated

    with ChatStore(db_url) as store, pytest.raises(NotMigrated, match="chatpersist migrate"):
        store.create_session()
    with sa.create_engine(db_url).connect() as conn:
        assert not sa.inspect(conn).has_table("chatpersist_messages")


def test_same_seq_write_changes_nothing(store: ChatStore) -> None:
    sid = store.create_session()
    _upsert(store, "m2", sid, "first", 3, STREAMING)
    _upsert(store, "m2", sid, "impostor", 3, COMPLETE)
    assert _row(store, "m2") == ("first", 3, STREAMING)
    _upsert(store, "m2", sid, "done", 4, COMPLETE)
    assert _row(store, "m2") == ("done", 4, COMPLETE)


def test_one_batch_writes_each_row_and_fences_only_the_taken_one(
    make_store: Callable[..., ChatStore],
) -> None:
    # Drafts due together are written in one transaction (one statement per slice on
    # PostgreSQL): each row gets its own text and facts, and a row another writer has
    # moved on is left alone without holding the others back.
    clock = ManualClock()
    store = make_store(every_chunks=1000, every_seconds=2.0, clock=clock)
    sid = store.create_session()
    drafts = [store.draft(sid) for _ in range(5)]
    for i, d in enumerate(drafts):
        d.__enter__()
        d.append(f"first {i} ")
        d.flush(timeout=10)
    taken = drafts[2].message_id
    _take_over(store, taken, "the other writer's text", 50)
    drafts[0].set_model("model-a")
    drafts[1].set_usage(input_tokens=7, output_tokens=9)
    for i, d in enumerate(drafts):
        d.append(f"second {i} — ünïcode '\"; --")
    before = store.stats.transactions
    clock.advance(2.1)
    wait_until(lambda: store.get_message(drafts[4].message_id).seq == 2, what="timed flush")
    assert store.stats.transactions == before + 1
    for i, d in enumerate(drafts):
        m = store.get_message(d.message_id)
        if d.message_id == taken:
            assert (m.content, m.seq) == ("the other writer's text", 50)
        else:
            assert (m.content, m.seq) == (f"first {i} second {i} — ünïcode '\"; --", 2)
    assert store.get_message(drafts[0].message_id).model == "model-a"
    m1 = store.get_message(drafts[1].message_id)
    assert (m1.input_tokens, m1.output_tokens) == (7, 9)
    for d in drafts:
        d.__exit__(None, None, None)
    assert store.get_message(taken).content == "the other writer's text"
    assert store.get_message(drafts[3].message_id).status == COMPLETE


# PostgreSQL only: its 65,535 parameters per statement are the lowest limit of the
# three (SQLite here allows 250,000), and 6,000 drafts take a while to open.
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql"])
def test_thousands_of_rows_rewritten_whole_in_one_flush(
    make_store: Callable[..., ChatStore],
) -> None:
    # Rows that fell behind their drafts (restored from a backup, say) are written
    # whole again, all in one flush: not retried forever, not given up.
    clock = ManualClock()
    store = make_store(every_chunks=1000, every_seconds=2.0, clock=clock)
    sid = store.create_session()
    drafts = [store.draft(sid) for _ in range(6000)]
    for d in drafts:
        d.__enter__()
        d.append("kept ")
    clock.advance(2.1)
    wait_until(lambda: store.stats.flushes >= 6000, timeout=60, what="first flush")
    with store.engine.begin() as conn:
        L = store.layout
        conn.execute(
            sa.update(L.messages).where(L.role == "assistant").values({L.content: "", L.seq: 0})
        )
    for d in drafts:
        d.append("and more")
    before = store.stats.transactions
    clock.advance(2.1)
    wait_until(lambda: store.stats.transactions > before, timeout=60, what="whole rewrite")
    assert store.stats.full_writes == 6000
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(store.layout.content).where(store.layout.role == "assistant")
        ).all()
    assert [r[0] for r in rows] == ["kept and more"] * 6000
    # The store's close ends the 6,000 drafts together.
