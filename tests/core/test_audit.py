"""The operator's library calls: interrupted answers, stats, sweep, continue, regenerate."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from support import kill_writer_after

from chatpersist import ABANDONED, COMPLETE, ChatStore, MessageConflict
from chatpersist.providers import CANNED_ANSWER, FakeModelServer, OpenAICompatible
from chatpersist.recovery import continue_answer, regenerate
from chatpersist.testing import ManualClock


def populate(store: ChatStore) -> dict[str, str]:
    """A complete answer, two interrupted ones (error, stopped) and a live draft."""
    sid = store.create_session("audited")
    store.add_message(sid, "user", "q")
    ids = {}
    with store.draft(sid) as d:
        d.set_model("m-a")
        d.append("complete answer")
    ids["complete"] = d.message_id
    with pytest.raises(RuntimeError), store.draft(sid) as d:
        d.set_model("m-a")
        d.append("cut by an error")
        raise RuntimeError
    ids["error"] = d.message_id
    with store.draft(sid) as d:
        d.set_model("m-b")
        d.append("stopped by the user")
        d.stop()
    ids["stopped"] = d.message_id
    live = store.draft(sid)
    live.__enter__()
    live.append("still being written")
    live.flush(timeout=10)
    ids["live"] = live.message_id
    ids["session"] = sid
    store._live = live  # type: ignore[attr-defined]
    return ids


def test_interrupted_and_stats(make_store: Callable[..., ChatStore]) -> None:
    clock = ManualClock()
    store = make_store(clock=clock)
    ids = populate(store)
    found = store.interrupted()
    assert {m.id for m in found} == {ids["error"], ids["stopped"]}
    assert [m.id for m in store.interrupted(reason="stopped")] == [ids["stopped"]]
    assert store.interrupted(session_id="other") == []
    sessions = store.sessions()
    assert sessions[0].id == ids["session"] and sessions[0].interrupted == 2
    assert sessions[0].messages == 5
    clock.advance(3600)
    assert store.interrupted(since=timedelta(minutes=5)) == []
    stats = {(r.model, r.reason): r for r in store.audit_stats()}
    assert stats[("m-a", "error")].answers == 2 and stats[("m-a", "error")].interrupted == 1
    assert stats[("m-b", "stopped")].rate == 1.0
    store._live.__exit__(None, None, None)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_sweep_marks_dead_drafts_and_leaves_live_ones(
    make_store: Callable[..., ChatStore],
) -> None:
    store = make_store(lease_seconds=3)  # heartbeats every second
    url = store.engine.url.render_as_string(hide_password=False)
    sid = store.create_session()
    kill_writer_after(url, sid, "dead-writer", 5)  # a real process, SIGKILLed
    with store.draft(sid) as live:
        live.append("alive")
        time.sleep(4)  # longer than the lease: the killed writer's draft is now stale
        assert store.sweep() == 1
        assert store.sweep() == 0  # idempotent
        dead = store.get_message("dead-writer")
        assert (dead.finish_reason, dead.interrupted) == (ABANDONED, True)
        m = store.get_message(live.message_id)
        assert m.live and m.finish_reason is None
        assert [x.id for x in store.interrupted(reason=ABANDONED)] == ["dead-writer"]
    assert store.get_message(live.message_id).status == COMPLETE


def test_continue_appends_to_the_same_message(store: ChatStore) -> None:
    sid = store.create_session()
    store.add_message(sid, "user", "why save drafts?")
    with store.draft(sid) as d:
        d.append(CANNED_ANSWER[:120])
        d.stop("disconnected")
    with FakeModelServer(delay=0.0005) as fake:
        provider = OpenAICompatible(fake.base_url, "fake")
        m = continue_answer(store, d.message_id, provider)
        sent = fake.requests[-1]["messages"]
    assert sent[-2] == {"role": "assistant", "content": CANNED_ANSWER[:120]}
    assert sent[-1]["role"] == "user" and "Continue" in sent[-1]["content"]
    assert (m.id, m.content, m.status) == (d.message_id, CANNED_ANSWER, COMPLETE)
    assert len(store.history(sid)) == 2  # one message, no second row
    with pytest.raises(MessageConflict, match="complete"):
        continue_answer(store, d.message_id, provider)


def test_regenerate_in_place(store: ChatStore) -> None:
    sid = store.create_session()
    store.add_message(sid, "user", "q")
    with store.draft(sid) as d:
        d.append("an answer the user did not like")
    store.add_message(sid, "user", "later question")
    with FakeModelServer("a brand new answer", delay=0.0005) as fake:
        m = regenerate(store, d.message_id, OpenAICompatible(fake.base_url, "fake"))
        assert fake.requests[-1]["messages"] == [{"role": "user", "content": "q"}]
    assert (m.content, m.status) == ("a brand new answer", COMPLETE)
    assert [x.id for x in store.history(sid)][1] == d.message_id  # same place
