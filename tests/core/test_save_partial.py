"""Client-held streams: the client sends the whole text so far with a seq."""

from __future__ import annotations

import pytest

from chatpersist import COMPLETE, STREAMING, ChatStore, MessageConflict


def test_seq_guarded_idempotent_and_final(store: ChatStore) -> None:
    sid = store.create_session()
    ok, m = store.save_partial(sid, "c1", "Hel", 1)
    assert ok and (m.content, m.status, m.live) == ("Hel", STREAMING, True)
    ok, m = store.save_partial(sid, "c1", "Hello wor", 3)
    assert ok and m.content == "Hello wor"
    ok, m = store.save_partial(sid, "c1", "Hello", 2)  # older, arrived late
    assert not ok and m.content == "Hello wor"
    ok, m = store.save_partial(sid, "c1", "Hello wor", 3)  # repeated
    assert m.content == "Hello wor" and m.seq == 3
    ok, m = store.save_partial(sid, "c1", "Hello world", 4, done=True)
    assert ok and (m.status, m.finish_reason) == (COMPLETE, "stop")
    ok, m = store.save_partial(sid, "c1", "Hello world, again", 5)  # after done
    assert not ok and (m.content, m.status) == ("Hello world", COMPLETE)


def test_done_with_a_stop_is_interrupted(store: ChatStore) -> None:
    sid = store.create_session()
    store.save_partial(sid, "c2", "partial", 1)
    ok, m = store.save_partial(sid, "c2", "partial text", 2, done=True, finish_reason="stopped")
    assert ok and (m.status, m.finish_reason, m.interrupted) == (STREAMING, "stopped", True)


def test_another_sessions_message_is_refused(store: ChatStore) -> None:
    a, b = store.create_session(), store.create_session()
    store.save_partial(a, "c3", "mine", 1)
    with pytest.raises(MessageConflict):
        store.save_partial(b, "c3", "theirs", 2)
    assert store.get_message("c3").content == "mine"


def test_model_usage_and_error_are_stored(store: ChatStore) -> None:
    sid = store.create_session()
    with pytest.raises(RuntimeError), store.draft(sid) as d:
        d.set_model("m-1")
        d.append("some text")
        d.flush(timeout=10)
        d.set_usage(input_tokens=12, output_tokens=3)
        d.set_error("overloaded")
        d.stop("provider_error")
        raise RuntimeError
    m = store.get_message(d.message_id)
    assert (m.model, m.input_tokens, m.output_tokens, m.error) == ("m-1", 12, 3, "overloaded")
    assert (m.finish_reason, m.interrupted) == ("provider_error", True)
