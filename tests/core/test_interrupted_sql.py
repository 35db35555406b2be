"""The rule of "interrupted" in SQL (sessions(), interrupted()) agrees with the rule a
loaded `Message` applies, whatever state a row is in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from chatpersist import ChatStore
from chatpersist.testing import OffsetClock


def test_sql_and_python_agree_on_every_kind_of_row(make_store: Callable[..., ChatStore]) -> None:
    store = make_store()
    later = make_store(clock=OffsetClock(31))  # the 30 s lease has passed for it
    sid = store.create_session("mixed")
    store.add_message(sid, "user", "q")
    with store.draft(sid) as done:
        done.append("complete")
    with store.draft(sid) as cut:
        cut.append("cut")
        cut.stop("disconnected")
    live = store.draft(sid)
    live.__enter__()
    live.append("live")
    live.flush()
    other = store.create_session("empty")
    # a streaming row whose writer went away long ago, with no finish_reason
    stale = store.draft(sid)
    stale.__enter__()
    stale.append("stale")
    stale.flush()
    L = store.layout
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(L.messages)
            .where(L.id == stale.message_id)
            .values({L.updated_at: datetime(2020, 1, 1)})
        )
    try:
        for s in (store, later):
            history = s.history(sid)
            expected = [m.id for m in history if m.interrupted]
            assert sorted(m.id for m in s.interrupted()) == sorted(expected)
            info = {i.id: i for i in s.sessions()}
            assert (info[sid].messages, info[sid].interrupted) == (5, len(expected))
            assert (info[other].messages, info[other].interrupted) == (0, 0)
            assert [m.id for m in s.interrupted(reason="disconnected")] == [cut.message_id]
        # the live draft is interrupted only for the store whose clock is past its lease
        assert live.message_id not in [m.id for m in store.interrupted()]
        assert live.message_id in [m.id for m in later.interrupted(reason="lease_expired")]
        assert [i.id for i in store.sessions(limit=1)] in ([sid], [other])
        assert stale.message_id in [m.id for m in store.interrupted(reason="lease_expired")]
    finally:
        live.__exit__(None, None, None)
        stale.stop("test over")
        stale.__exit__(None, None, None)
