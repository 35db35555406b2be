"""The history loader: live vs interrupted drafts, markers, history for a model."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support import wait_until

from chatpersist import COMPLETE, ChatStore, MessageConflict, UnknownSession
from chatpersist.testing import ManualClock


def test_history_order_and_markers(make_store: Callable[..., ChatStore]) -> None:
    clock = ManualClock()  # frozen time: order must still hold
    store = make_store(clock=clock, lease_seconds=30, interrupted_marker="[cut off]")
    sid = store.create_session("t")
    store.add_message(sid, "user", "q1")
    with pytest.raises(RuntimeError), store.draft(sid) as d1:
        d1.append("a1 partial")
        raise RuntimeError
    store.add_message(sid, "user", "q2")
    with store.draft(sid) as d2:
        d2.append("a2 full")
    hist = store.history(sid)
    assert [(m.role, m.content) for m in hist] == [
        ("user", "q1"),
        ("assistant", "a1 partial"),
        ("user", "q2"),
        ("assistant", "a2 full"),
    ]
    assert [m.interrupted for m in hist] == [False, True, False, False]
    assert hist[1].display_content == "a1 partial\n\n[cut off]"
    assert all(m.status == COMPLETE for i, m in enumerate(hist) if i != 1)


def test_live_draft_with_a_silent_model_stays_live(make_store: Callable[..., ChatStore]) -> None:
    clock = ManualClock()
    store = make_store(clock=clock, lease_seconds=30)
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("thinking...")
        d.flush(timeout=10)
        first = store.get_message(d.message_id).updated_at
        # A minute of silence, in steps shorter than a heartbeat (lease / 3).
        for _ in range(12):
            clock.advance(5)
            m = store.get_message(d.message_id)
            assert m.live and not m.interrupted
            wait_until(
                lambda: (
                    (clock.now() - store.get_message(d.message_id).updated_at).total_seconds() < 11
                ),
                what="heartbeat",
            )
        assert store.get_message(d.message_id).updated_at > first


def test_expired_lease_reads_as_interrupted(make_store: Callable[..., ChatStore]) -> None:
    clock = ManualClock()
    writer = make_store(clock=clock, lease_seconds=30)
    sid = writer.create_session()
    d = writer.draft(sid)
    d.__enter__()
    d.append("left behind")
    d.flush(timeout=10)
    # Another process reads it later; its clock says the writer has been silent too long.
    later = ManualClock(start=clock.now())
    reader = make_store(clock=later, lease_seconds=30)
    assert reader.get_message(d.message_id).live
    later.advance(31)
    m = reader.get_message(d.message_id)
    assert m.interrupted and not m.live and m.finish_reason is None
    assert m.display_content.endswith("(response interrupted)")
    d.__exit__(None, None, None)


def test_history_for_model(make_store: Callable[..., ChatStore]) -> None:
    store = make_store()
    sid = store.create_session()
    store.add_message(sid, "system", "be brief")
    store.add_message(sid, "user", "q1")
    with store.draft(sid) as d:
        d.append("partial")
        d.stop()
    store.add_message(sid, "user", "q2")
    with store.draft(sid) as empty:
        empty.stop()
    live = store.draft(sid)
    live.__enter__()
    live.append("still writing")
    live.flush(timeout=10)
    assert store.history_for_model(sid) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "partial"},
        {"role": "user", "content": "q2"},
    ]
    assert store.history_for_model(sid, interrupted="drop") == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "q1"},
        {"role": "user", "content": "q2"},
    ]
    live.__exit__(None, None, None)


def test_save_on_finish_completes_the_draft_row(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("partial")
        d.stop("disconnected")
    # The host app's own save on finish, with the id the draft used.
    store.add_message(sid, "assistant", "the whole answer", message_id=d.message_id)
    hist = store.history(sid)
    assert len(hist) == 1
    assert (hist[0].content, hist[0].status, hist[0].interrupted) == (
        "the whole answer",
        COMPLETE,
        False,
    )
    with pytest.raises(MessageConflict):
        store.add_message(sid, "assistant", "again", message_id=d.message_id)


def test_unknown_session(store: ChatStore) -> None:
    with pytest.raises(UnknownSession):
        store.history("nope")
    with pytest.raises(UnknownSession), store.draft("nope"):
        pass
    with pytest.raises(UnknownSession):
        store.add_message("nope", "user", "hi")
