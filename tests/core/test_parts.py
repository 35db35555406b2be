"""Structured answers: reasoning, tool calls and tool results are stored in order with
the text, under the same throttle, guards, fencing and journal, on every database."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from tcp_proxy import TcpProxy

from chatpersist import ChatStore, Draft, DraftNotOpen
from chatpersist._journal import Journal
from chatpersist._parts import (
    OtherPart,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    merge,
)
from chatpersist._schema import messages


def _agent_answer(d: Draft) -> None:
    """Reasoning, text, two tool calls streamed in fragments, their results, text."""
    d.append_reasoning("Let me ")
    d.append_reasoning("think.")
    d.append_reasoning(signature="sig-1")
    d.append("I will look ")
    d.append("it up.")
    d.append_tool_call("call_a", "weather", '{"ci', index=0)
    d.append_tool_call(arguments='ty": "Paris"}', index=0)
    d.append_tool_call("call_b", "time", "", index=1)
    d.append_tool_call(arguments='{"tz": "CET"}', index=1)
    d.add_tool_result("call_a", "12 °C")
    d.add_tool_result("call_b", "boom", is_error=True)
    d.append("It is 12 °C.")


EXPECTED = (
    ReasoningPart("Let me think.", signature="sig-1"),
    TextPart("I will look it up."),
    ToolCallPart("call_a", "weather", '{"city": "Paris"}'),
    ToolCallPart("call_b", "time", '{"tz": "CET"}'),
    ToolResultPart("call_a", "12 °C"),
    ToolResultPart("call_b", "boom", is_error=True),
    TextPart("It is 12 °C."),
)


@pytest.mark.parametrize("every_chunks", [1, 3, 1000])
def test_parts_round_trip(store: ChatStore, every_chunks: int) -> None:
    sid = store.create_session()
    with store.draft(sid, every_chunks=every_chunks) as d:
        _agent_answer(d)
        assert d.parts == EXPECTED
    m = store.get_message(d.message_id)
    assert m.complete
    assert m.parts == EXPECTED
    assert m.content == "I will look it up.It is 12 °C."
    assert m.to_dict()["parts"][2] == {
        "type": "tool_call", "id": "call_a", "name": "weather",
        "arguments": '{"city": "Paris"}', "complete": True,
    }  # fmt: skip
    assert isinstance(m.parts[2], ToolCallPart) and m.parts[2].input == {"city": "Paris"}


def test_text_only_answers_store_no_parts(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid, every_chunks=2) as d:
        for piece in ["a", "b", "c"]:
            d.append(piece)
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(messages.c.parts).where(messages.c.id == d.message_id))
        assert stored.scalar() is None
    assert store.get_message(d.message_id).parts == (TextPart("abc"),)


def test_each_flush_appends_only_new_segments(store: ChatStore) -> None:
    """While streaming, the stored log grows by segments: each flush sends only what
    is new, and the log reads back as the same parts at every step."""
    sid = store.create_session()
    seen = []
    with store.draft(sid, every_chunks=1000) as d:
        d.append("intro ")
        d.append_tool_call("c1", "search", '{"q": ')
        d.flush()
        seen.append(store.get_message(d.message_id).parts)
        d.append_tool_call("c1", arguments='"x"}')
        d.flush()
        seen.append(store.get_message(d.message_id).parts)
        d.add_tool_result("c1", "found")
        d.append("done")
    assert seen[0] == (TextPart("intro "), ToolCallPart("c1", "search", '{"q": ', complete=False))
    assert seen[1] == (TextPart("intro "), ToolCallPart("c1", "search", '{"q": "x"}'))
    with store.engine.connect() as conn:
        raw = conn.execute(sa.select(messages.c.parts).where(messages.c.id == d.message_id))
        log = raw.scalar()
    log = json.loads(log) if isinstance(log, str) else log
    assert log is not None
    # Three flushes appended: the call's arguments arrived as two segments of part 1.
    assert [s for s in log if s["i"] == 1 and "arguments" in s] == [
        {"i": 1, "type": "tool_call", "id": "c1", "name": "search", "arguments": '{"q": '},
        {"i": 1, "arguments": '"x"}'},
    ]
    assert merge(log)[1]["arguments"] == '{"q": "x"}'


def test_cut_inside_arguments_reads_as_an_incomplete_call(
    make_store: Callable[..., ChatStore],
) -> None:
    store = make_store()
    sid = store.create_session()
    with pytest.raises(RuntimeError), store.draft(sid) as d:
        d.append_reasoning("hmm")
        d.append_tool_call("c1", "f", '{"a": [1, ')
        raise RuntimeError("the worker died")
    m = store.get_message(d.message_id)
    assert m.interrupted
    assert m.parts == (ReasoningPart("hmm"), ToolCallPart("c1", "f", '{"a": [1, ', complete=False))


def test_takeover_continues_parts_and_marks_a_cut_call(store: ChatStore) -> None:
    sid = store.create_session()
    with pytest.raises(RuntimeError), store.draft(sid) as d:
        d.append("Checking. ")
        d.append_tool_call("c1", "f", '{"a": ')
        raise RuntimeError("cut")
    with store.draft(sid, message_id=d.message_id) as d2:
        d2.append_tool_call("c2", "f", '{"a": 1}')
        d2.add_tool_result("c2", "ok")
        d2.append("Done.")
    m = store.get_message(d.message_id)
    assert m.complete
    assert m.parts == (
        TextPart("Checking. "),
        ToolCallPart("c1", "f", '{"a": ', complete=False),
        ToolCallPart("c2", "f", '{"a": 1}'),
        ToolResultPart("c2", "ok"),
        TextPart("Done."),
    )


def test_text_continues_in_the_same_part_after_a_takeover(store: ChatStore) -> None:
    sid = store.create_session()
    with pytest.raises(RuntimeError), store.draft(sid) as d:
        d.append_reasoning("r", signature="s")
        d.append("Hello ")
        raise RuntimeError("cut")
    with store.draft(sid, message_id=d.message_id) as d2:
        d2.append("world")
    assert store.get_message(d.message_id).parts == (
        ReasoningPart("r", signature="s"),
        TextPart("Hello world"),
    )


def test_regenerate_clears_the_parts(store: ChatStore) -> None:
    sid = store.create_session()
    with pytest.raises(RuntimeError), store.draft(sid) as d:
        d.append_tool_call("c1", "f", "{}")
        raise RuntimeError("cut")
    assert store.restart(d.message_id).parts == ()
    with store.draft(sid, message_id=d.message_id) as d2:
        d2.append("fresh")
    assert store.get_message(d.message_id).parts == (TextPart("fresh"),)


def test_unknown_part_types_are_kept(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid) as d:
        d.add_part({"type": "citation", "url": "https://example.org", "span": [1, 4]})
        d.append("text")
    assert store.get_message(d.message_id).parts == (
        OtherPart("citation", {"url": "https://example.org", "span": [1, 4]}),
        TextPart("text"),
    )


def test_bad_part_input_is_refused_and_loses_nothing(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("kept ")
        with pytest.raises(TypeError):
            d.append_reasoning(b"bytes")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            d.append_tool_call(arguments="{}", index=7)  # no call was named with index 7
        with pytest.raises(ValueError):
            d.append_tool_call()
        with pytest.raises(ValueError):
            d.add_part({"type": "tool_call", "id": "x"})
        with pytest.raises(ValueError):
            d.add_part({"type": "x", "value": object()})
        with pytest.raises(TypeError):
            d.add_part({"no": "type"})
        with pytest.raises(ValueError):
            d.add_tool_result("", "x")
        d.append("too")
    m = store.get_message(d.message_id)
    assert m.complete and m.parts == (TextPart("kept too"),)
    with pytest.raises(DraftNotOpen):
        d.append_reasoning("late")


def test_hostile_parts(store: ChatStore) -> None:
    """100,000 tiny argument fragments, a 10 MB tool result, NUL and lone surrogates."""
    sid = store.create_session()
    big = "x" * (10 * 1024 * 1024)
    args = '{"list": [' + ",".join("1" for _ in range(50_000)) + "]}"
    with store.draft(sid, every_chunks=50) as d:
        d.append_tool_call("c1", "f")
        for ch in args:
            d.append_tool_call("c1", arguments=ch)
        d.add_tool_result("c1", big)
        d.append_reasoning("odd \x00 and \ud800 text")
        d.append("end")
    m = store.get_message(d.message_id)
    call, result, reasoning, text = m.parts
    assert isinstance(call, ToolCallPart) and call.arguments == args and call.complete
    assert isinstance(result, ToolResultPart) and result.content == big
    assert isinstance(reasoning, ReasoningPart) and reasoning.text.startswith("odd ")
    assert "\ud800" not in reasoning.text
    assert text == TextPart("end")


@pytest.mark.parametrize("backend", ["postgresql"])
def test_parts_survive_the_journal(store: ChatStore, db_url: str, tmp_path: Path) -> None:
    """A draft spilled to the journal during an outage keeps its parts; the replay
    writes them whole, and the message reads back exactly as it was streamed."""
    real = sa.make_url(db_url)
    proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
    url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    journal = tmp_path / "drafts.journal"
    sid = store.create_session()
    away = ChatStore(url, journal=journal, spill_after=0.3, final_timeout=30)
    try:
        with away.draft(sid, every_chunks=2) as d:
            d.append_reasoning("first, ", signature="s1")
            d.append("flushed ")
            d.flush()
            proxy.cut()
            d.append_tool_call("c1", "lookup", '{"q": "x"}')
            d.add_tool_result("c1", "found")
            d.append("while away")
            expected = d.parts
        (record,) = Journal(journal).latest()
        assert record.parts is not None and len(merge(record.parts)) == 5
    finally:
        proxy.restore()
        away.close()
        proxy.close()
    store.recover_from(journal)  # unless the store replayed it once the database was back
    m = store.get_message(d.message_id)
    assert m.complete and m.parts == expected
    assert [p.type for p in m.parts] == [
        "reasoning", "text", "tool_call", "tool_result", "text",
    ]  # fmt: skip


def test_a_fenced_writer_adds_no_parts(make_store: Callable[..., ChatStore]) -> None:
    """After a takeover, the old writer's parts land nowhere, like its text."""
    a, b = make_store(), make_store()
    sid = a.create_session()
    da = a.draft(sid, every_chunks=1000)
    da.__enter__()
    da.append_tool_call("old", "f", '{"n": 1}')
    da.flush()
    with b.draft(sid, message_id=da.message_id) as db:
        da.append_tool_call("late", "f", '{"n": 2}')  # the old writer goes on
        da.append_reasoning("late thoughts")
        da.flush()
        db.append("new writer")
    da.__exit__(None, None, None)
    assert da.superseded
    m = a.get_message(da.message_id)
    assert m.complete
    assert m.parts == (ToolCallPart("old", "f", '{"n": 1}'), TextPart("new writer"))
