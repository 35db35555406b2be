"""Structured answers streamed into drafts: reasoning and tool calls become parts of
the stored message, beside its text."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from providers.sse_server import Close, Raw, ScriptedServer, Status, openai_delta, sse

from chatpersist import COMPLETE, ChatStore
from chatpersist._parts import ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from chatpersist.providers import (
    Anthropic,
    FakeModelServer,
    FakeReasoning,
    FakeToolCall,
    OpenAICompatible,
    ProviderError,
    ReasoningDelta,
    RetryPolicy,
    TextDelta,
    ToolCallDelta,
    astream_into,
    feed,
    stream_into,
)

ASK: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
THOUGHT = "The user wants the weather in Paris."
ARGS = json.dumps({"city": "Paris"})
SCRIPT: list[str | FakeReasoning | FakeToolCall] = [
    FakeReasoning(THOUGHT),
    FakeToolCall("get_weather", {"city": "Paris"}, id="call_1"),
    "Let me look that up.",
]


def test_openai_stream_into_a_draft_keeps_reasoning_the_call_and_the_text(
    store: ChatStore,
) -> None:
    sid = store.create_session()
    seen: list[str] = []
    chunks: list[object] = []
    with FakeModelServer(SCRIPT, chunk_chars=6, delay=0.001) as fake:
        p = OpenAICompatible(fake.base_url, "fake")
        m = stream_into(store, sid, p.stream(ASK), on_text=seen.append, on_chunk=chunks.append)
    assert (m.status, m.finish_reason) == (COMPLETE, "tool_calls")
    assert m.content == "Let me look that up." == "".join(seen)
    assert m.parts == (
        ReasoningPart(THOUGHT),
        ToolCallPart("call_1", "get_weather", ARGS),
        TextPart("Let me look that up."),
    )
    assert any(isinstance(c, ToolCallDelta) for c in chunks)
    assert any(isinstance(c, ReasoningDelta) for c in chunks)
    assert "".join(c.text for c in chunks if isinstance(c, TextDelta)) == m.content


def test_anthropic_stream_keeps_the_signature_and_redacted_blocks(store: ChatStore) -> None:
    sid = store.create_session()
    script: list[str | FakeReasoning | FakeToolCall] = [
        FakeReasoning(THOUGHT, signature="sig-1"), FakeReasoning(redacted="EmwK"),
              *SCRIPT[1:]]  # fmt: skip
    with FakeModelServer(script, chunk_chars=6, delay=0.001) as fake:
        p = Anthropic("fake", base_url=fake.anthropic_base_url)
        m = asyncio.run(astream_into(store, sid, p.astream(ASK)))
    assert (m.status, m.finish_reason) == (COMPLETE, "tool_use")
    assert m.parts == (
        ReasoningPart(THOUGHT, signature="sig-1"),
        ReasoningPart("", redacted="EmwK"),
        ToolCallPart("call_1", "get_weather", ARGS),
        TextPart("Let me look that up."),
    )
    assert m.content == "Let me look that up."


def test_two_parallel_calls_fed_in_interleaved_fragments(store: ChatStore) -> None:
    sid = store.create_session()
    pieces: list[Any] = [
        "Checking both. ",
        ToolCallDelta(0, id="call_a", name="get_weather"),
        ToolCallDelta(0, arguments='{"city": '),
        ToolCallDelta(1, id="call_b", name="get_weather"),
        ToolCallDelta(1, arguments='{"city": "Rome"}'),
        ToolCallDelta(0, arguments='"Paris"}'),
    ]
    with store.draft(sid) as d:
        returned = [feed(d, piece) for piece in pieces]
    assert returned == ["Checking both. ", "", "", "", "", ""]
    m = store.get_message(d.message_id)
    assert m.parts == (
        TextPart("Checking both. "),
        ToolCallPart("call_a", "get_weather", '{"city": "Paris"}'),
        ToolCallPart("call_b", "get_weather", '{"city": "Rome"}'),
    )


def test_a_call_the_server_never_names_gets_an_id(store: ChatStore) -> None:
    sid = store.create_session()
    with store.draft(sid) as d:
        feed(d, ToolCallDelta(0, name="lookup", arguments='{"q": '))
        feed(d, ToolCallDelta(0, arguments="1}"))
    m = store.get_message(d.message_id)
    assert m.parts == (ToolCallPart("call_0", "lookup", '{"q": 1}'),)


def test_a_tool_result_added_after_the_stream(store: ChatStore) -> None:
    sid = store.create_session()
    with FakeModelServer([FakeToolCall("get_weather", {"city": "Paris"}, id="call_1")],
                         delay=0.001) as fake, store.draft(sid) as d:  # fmt: skip
        for item in OpenAICompatible(fake.base_url, "fake").stream(ASK):
            feed(d, item)
        d.add_tool_result("call_1", "sunny, 24 C")
    m = store.get_message(d.message_id)
    assert m.parts == (
        ToolCallPart("call_1", "get_weather", ARGS),
        ToolResultPart("call_1", "sunny, 24 C"),
    )


def test_a_call_cut_mid_arguments_is_kept_as_cut(
    store: ChatStore, server: ScriptedServer, sleeps: list[float]
) -> None:
    first = {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}  # fmt: skip
    server.then(
        [
            Status(200, {"content-type": "text/event-stream"}),
            Raw(openai_delta(reasoning_content="hm")),
            Raw(openai_delta(tool_calls=[first])),
            Raw(openai_delta(tool_calls=[{"index": 0, "function": {"arguments": '{"ci'}}])),
            Close(),
        ],
        [Status(200, {}), Raw(sse("[DONE]"))],
    )
    p = OpenAICompatible(server.url, "m-1", retry=RetryPolicy(sleep=sleeps.append))
    sid = store.create_session()
    with pytest.raises(ProviderError) as info:
        stream_into(store, sid, p.stream(ASK))
    m = store.get_message(str(info.value.message_id))
    assert m.finish_reason == "provider_error" and m.content == ""
    assert m.parts == (
        ReasoningPart("hm"),
        ToolCallPart("call_1", "get_weather", '{"ci', complete=False),
    )
    assert len(server.requests) == 1
