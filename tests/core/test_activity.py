"""`_activity.snapshot`, what `chatpersist top` shows: drafts live and stalled, the
last interrupted answers and the totals, computed in the database (no text read)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from support import wait_until

from chatpersist import ChatStore, Draft
from chatpersist._activity import snapshot
from chatpersist.testing import ManualClock

LIVE_TEXT = "streaming 🌊 é, "
PAUSED_TEXT = "paused here"
DEAD_TEXT = "héllo wörld"


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def opened(store: ChatStore, sid: str, text: str) -> Draft:
    d = store.draft(sid)
    d.__enter__()
    d.append(text)
    return d


def test_live_stalled_and_interrupted_answers(make_store: Callable[..., ChatStore]) -> None:
    clock = ManualClock()
    store = make_store(clock=clock, every_seconds=2.0)
    sid = store.create_session("ops")
    store.add_message(sid, "user", "a question")  # complete, but not an answer
    with store.draft(sid) as done:
        done.append("a complete answer")
    with store.draft(sid) as cut:
        cut.set_model("m-1")
        cut.append("cut short")
        cut.stop("disconnected")
    # A writer that went away: its last write is older than the lease (30 s).
    gone = make_store(clock=ManualClock(start=clock.now() - timedelta(seconds=60)))
    dead = opened(gone, sid, DEAD_TEXT)
    dead.flush(timeout=10)
    paused = opened(store, sid, PAUSED_TEXT)
    paused.flush(timeout=10)
    clock.advance(4)
    live = opened(store, sid, LIVE_TEXT)
    clock.advance(1)
    live.flush(timeout=10)  # written at t=5: the paused one has written nothing for 5 s
    try:
        with statements(store.engine) as seen:
            now = snapshot(store)
        assert [(a.message_id, a.state) for a in now.answers] == [
            (live.message_id, "live"), (paused.message_id, "stalled"),
        ]  # fmt: skip
        a, p = now.answers
        assert (a.length, p.length) == (len(LIVE_TEXT), len(PAUSED_TEXT))
        assert a.age == pytest.approx(1.0, abs=0.01) and a.idle == pytest.approx(0.0, abs=0.01)
        assert a.rate == pytest.approx(len(LIVE_TEXT), rel=0.02)  # characters in 1 s
        assert p.idle == pytest.approx(5.0, abs=0.01) and p.session_id == sid
        assert [(i.message_id, i.reason, i.length, i.model) for i in now.interrupted] == [
            (cut.message_id, "disconnected", len("cut short"), "m-1"),
            (dead.message_id, "lease_expired", len(DEAD_TEXT), None),
        ]
        assert now.totals.to_dict() == {
            "live": 1, "stalled": 1, "recovering": 0, "interrupted_last_hour": 2, "complete_last_hour": 1,
        }  # fmt: skip
        assert (now.lease_seconds, now.stalled_after, now.at) == (30.0, 4.0, clock.now())
        as_json = json.loads(json.dumps(now.to_dict()))
        assert as_json["answers"][1]["state"] == "stalled"
        assert as_json["interrupted"][0]["reason"] == "disconnected"
        # The texts stay in the database: only their lengths are read.
        selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 3
        for s in selects:
            rest = re.sub(r"(char_)?length\([^)]*content\)", "", s, flags=re.IGNORECASE)
            assert "content" not in rest.lower(), s

        # A longer quiet period makes the paused one live; limit cuts the lists only.
        assert [a.state for a in snapshot(store, stalled_after=10).answers] == ["live", "live"]
        few = snapshot(store, limit=1)
        assert [a.message_id for a in few.answers] == [live.message_id]
        assert [i.message_id for i in few.interrupted] == [cut.message_id]
        assert few.totals == now.totals
        none = snapshot(store, limit=0)
        assert (none.answers, none.interrupted, none.totals) == ((), (), now.totals)
    finally:
        for d in (live, paused, dead):
            d.__exit__(None, None, None)
    after = snapshot(store)
    assert after.answers == ()
    # All three ended normally: complete now (the "dead" writer's store still held its
    # draft, and completed it).
    assert after.totals.live == after.totals.stalled == 0
    assert after.totals.complete_last_hour == 4


def test_an_hour_later_the_totals_are_empty(make_store: Callable[..., ChatStore]) -> None:
    clock = ManualClock()
    store = make_store(clock=clock)
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("x")
    with store.draft(sid) as d:
        d.append("y")
        d.stop()
    assert snapshot(store).totals.to_dict() == {
        "live": 0, "stalled": 0, "recovering": 0, "interrupted_last_hour": 1, "complete_last_hour": 1,
    }  # fmt: skip
    clock.advance(3601)
    later = snapshot(store)
    assert later.totals.to_dict() == {
        "live": 0, "stalled": 0, "recovering": 0, "interrupted_last_hour": 0, "complete_last_hour": 0,
    }  # fmt: skip
    assert [i.reason for i in later.interrupted] == ["stopped"]  # still listed, older
    with pytest.raises(ValueError):
        snapshot(store, limit=-1)
    with pytest.raises(ValueError):
        snapshot(store, stalled_after=0)


def test_a_heartbeat_does_not_make_a_stalled_draft_live(
    make_store: Callable[..., ChatStore],
) -> None:
    """A silent draft's writer refreshes its lease every lease/3 s; a view that
    refreshes (given its previous snapshot) keeps it stalled until its text grows."""
    clock = ManualClock()
    store = make_store(clock=clock, every_seconds=2.0)
    sid = store.create_session()
    quiet = opened(store, sid, "thinking...")
    quiet.flush(timeout=10)
    try:
        clock.advance(5)
        first = snapshot(store)
        assert [a.state for a in first.answers] == ["stalled"]
        clock.advance(6)  # 11 s without a write: past the heartbeat interval (10 s)
        wait_until(lambda: store.stats.heartbeats >= 1, what="a heartbeat")
        assert [a.state for a in snapshot(store).answers] == ["live"]  # by its lease alone
        kept = snapshot(store, previous=first)
        assert [a.state for a in kept.answers] == ["stalled"]
        assert (kept.totals.live, kept.totals.stalled) == (0, 1)
        quiet.append(" and more")
        quiet.flush(timeout=10)
        grown = snapshot(store, previous=kept)
        assert [a.state for a in grown.answers] == ["live"]
        assert (grown.totals.live, grown.totals.stalled) == (1, 0)
    finally:
        quiet.__exit__(None, None, None)
