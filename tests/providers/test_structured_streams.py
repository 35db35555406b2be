"""Reasoning and tool calls read from real SSE streams (OpenAI-compatible and
Anthropic) on 127.0.0.1, and histories with tool calls sent as given."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from providers.sse_server import Action, Raw, ScriptedServer, Status, openai_delta, sse

from chatpersist.providers import (
    Anthropic,
    Finish,
    HTTPProvider,
    OpenAICompatible,
    ProviderError,
    ReasoningDelta,
    RetryPolicy,
    TextDelta,
    ToolCallDelta,
)

HI = [{"role": "user", "content": "What is the weather in Paris and Rome?"}]
EVENT_STREAM = Status(200, {"content-type": "text/event-stream"})


def openai(server: ScriptedServer, sleeps: list[float]) -> OpenAICompatible:
    return OpenAICompatible(server.url + "/v1", "m-1", retry=RetryPolicy(sleep=sleeps.append))


def anthropic(server: ScriptedServer, sleeps: list[float]) -> Anthropic:
    return Anthropic("claude-x", base_url=server.url, retry=RetryPolicy(sleep=sleeps.append))


def call(index: int, **fields: Any) -> dict[str, Any]:
    """One entry of `delta.tool_calls`."""
    return {"index": index, **fields}


def first(index: int, call_id: str, name: str) -> dict[str, Any]:
    return call(index, id=call_id, type="function", function={"name": name, "arguments": ""})


def more(index: int, fragment: str) -> dict[str, Any]:
    return call(index, function={"arguments": fragment})


def args_of(chunks: Sequence[object], index: int) -> str:
    return "".join(c.arguments for c in chunks if isinstance(c, ToolCallDelta) and c.index == index)


def test_openai_tool_call_in_fragments_across_events(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then(
        [
            EVENT_STREAM,
            Raw(openai_delta(role="assistant", content=None)),
            Raw(openai_delta(tool_calls=[first(0, "call_1", "get_weather")])),
            Raw(openai_delta(tool_calls=[more(0, '{"ci')])),
            Raw(openai_delta(tool_calls=[more(0, 'ty": "Pa')])),
            Raw(openai_delta(tool_calls=[more(0, 'ris"}')])),
            Raw(openai_delta(finish="tool_calls")),
            Raw(sse("[DONE]")),
        ]
    )
    chunks = list(openai(server, sleeps).stream(HI))
    calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert calls == [
        ToolCallDelta(0, id="call_1", name="get_weather"),
        ToolCallDelta(0, arguments='{"ci'),
        ToolCallDelta(0, arguments='ty": "Pa'),
        ToolCallDelta(0, arguments='ris"}'),
    ]
    assert Finish("tool_calls") in chunks
    assert not any(isinstance(c, TextDelta) for c in chunks)


def test_openai_two_parallel_tool_calls(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(
        [
            EVENT_STREAM,
            Raw(openai_delta("Let me check both.")),
            Raw(openai_delta(tool_calls=[first(0, "call_a", "get_weather")])),
            Raw(openai_delta(tool_calls=[more(0, '{"city": ')])),
            Raw(openai_delta(tool_calls=[first(1, "call_b", "get_weather")])),
            # Some servers put fragments of both calls in one event.
            Raw(openai_delta(tool_calls=[more(1, '{"city": "Rome"}'), more(0, '"Paris"}')])),
            Raw(openai_delta(finish="tool_calls")),
            Raw(sse("[DONE]")),
        ]
    )
    chunks = list(openai(server, sleeps).stream(HI))
    named = [(c.index, c.id, c.name) for c in chunks if isinstance(c, ToolCallDelta) and c.id]
    assert named == [(0, "call_a", "get_weather"), (1, "call_b", "get_weather")]
    assert args_of(chunks, 0) == '{"city": "Paris"}'
    assert args_of(chunks, 1) == '{"city": "Rome"}'
    assert chunks.index(TextDelta("Let me check both.")) < chunks.index(
        ToolCallDelta(0, id="call_a", name="get_weather")
    )


def test_openai_reasoning_fields_then_text(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(
        [
            EVENT_STREAM,
            Raw(openai_delta(reasoning_content="DeepSeek says ", content=None)),
            Raw(openai_delta(reasoning="OpenRouter says")),
            Raw(openai_delta(reasoning_content="", reasoning=None, content="Answer")),
            Raw(openai_delta(finish="stop")),
            Raw(sse("[DONE]")),
        ]
    )
    chunks = list(openai(server, sleeps).stream(HI))
    assert [c for c in chunks if isinstance(c, ReasoningDelta | TextDelta)] == [
        ReasoningDelta("DeepSeek says "),
        ReasoningDelta("OpenRouter says"),
        TextDelta("Answer"),
    ]


def test_openai_a_whole_call_in_one_delta_and_odd_entries(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    whole = {"id": "call_9", "type": "function",
             "function": {"name": "lookup", "arguments": '{"q": 1}'}}  # fmt: skip
    server.then(
        [
            EVENT_STREAM,
            # no index (some compatible servers): named by its place in the list
            Raw(openai_delta(tool_calls=[whole])),
            Raw(openai_delta(tool_calls=[call(0)])),  # nothing in it
            Raw(openai_delta(tool_calls=None, some_new_field={"x": 1})),
            Raw(openai_delta(finish="tool_calls")),
            Raw(sse("[DONE]")),
        ]
    )
    chunks = list(openai(server, sleeps).stream(HI))
    assert [c for c in chunks if isinstance(c, ToolCallDelta)] == [
        ToolCallDelta(0, id="call_9", name="lookup", arguments='{"q": 1}')
    ]


def ev(kind: str, **payload: object) -> bytes:
    return sse({"type": kind, **payload}, event=kind)


def block_start(index: int, **block: object) -> Raw:
    return Raw(ev("content_block_start", index=index, content_block=block))


def block_delta(index: int, **delta: object) -> Raw:
    return Raw(ev("content_block_delta", index=index, delta=delta))


def anthropic_answer(*middle: Action, stop: str = "tool_use") -> list[Action]:
    return [
        EVENT_STREAM,
        Raw(ev("message_start", message={"model": "claude-x", "usage": {"input_tokens": 3}})),
        Raw(ev("ping")),
        *middle,
        Raw(ev("message_delta", delta={"stop_reason": stop}, usage={"output_tokens": 9})),
        Raw(ev("message_stop")),
    ]


def test_anthropic_thinking_signature_tool_use_and_redacted(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then(
        anthropic_answer(
            block_start(0, type="thinking", thinking="", signature=""),
            block_delta(0, type="thinking_delta", thinking="The user wants "),
            block_delta(0, type="thinking_delta", thinking="two cities."),
            block_delta(0, type="signature_delta", signature="EqQBCgIYAhIM"),
            Raw(ev("content_block_stop", index=0)),
            block_start(1, type="redacted_thinking", data="EmwKAhgBEgy3va"),
            Raw(ev("content_block_stop", index=1)),
            block_start(2, type="text", text=""),
            block_delta(2, type="text_delta", text="Checking."),
            Raw(ev("content_block_stop", index=2)),
            block_start(3, type="tool_use", id="toolu_01", name="get_weather", input={}),
            block_delta(3, type="input_json_delta", partial_json=""),
            block_delta(3, type="input_json_delta", partial_json='{"city": '),
            block_delta(3, type="input_json_delta", partial_json='"Paris"}'),
            Raw(ev("content_block_stop", index=3)),
            block_start(4, type="tool_use", id="toolu_02", name="get_weather", input={}),
            block_delta(4, type="input_json_delta", partial_json='{"city": "Rome"}'),
            Raw(ev("content_block_stop", index=4)),
        )
    )
    chunks = list(anthropic(server, sleeps).stream(HI))
    assert [c for c in chunks if isinstance(c, ReasoningDelta | TextDelta | ToolCallDelta)] == [
        ReasoningDelta("The user wants "),
        ReasoningDelta("two cities."),
        ReasoningDelta("", signature="EqQBCgIYAhIM"),
        ReasoningDelta("", redacted="EmwKAhgBEgy3va"),
        TextDelta("Checking."),
        ToolCallDelta(3, id="toolu_01", name="get_weather"),
        ToolCallDelta(3, arguments='{"city": '),
        ToolCallDelta(3, arguments='"Paris"}'),
        ToolCallDelta(4, id="toolu_02", name="get_weather"),
        ToolCallDelta(4, arguments='{"city": "Rome"}'),
    ]
    assert Finish("tool_use") in chunks


def test_anthropic_unknown_blocks_and_deltas_are_ignored(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then(
        anthropic_answer(
            block_start(0, type="server_tool_use", id="srvtoolu_1", name="web_search", input={}),
            block_delta(0, type="input_json_delta", partial_json=""),
            Raw(ev("content_block_stop", index=0)),
            block_start(1, type="some_future_block", payload=[1, 2]),
            block_delta(1, type="some_future_delta", value="?"),
            block_delta(2, type="citations_delta", citation={"cited_text": "x"}),
            block_delta(2, type="text_delta", text="Done."),
            stop="end_turn",
        )
    )
    chunks = list(anthropic(server, sleeps).stream(HI))
    assert [c for c in chunks if isinstance(c, TextDelta | ToolCallDelta | ReasoningDelta)] == [
        TextDelta("Done.")
    ]
    assert Finish("end_turn") in chunks


def test_a_tool_call_alone_counts_as_the_start_of_the_answer(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    # The stream is handed over once content comes: a tool call is content (a failure
    # after it is not retried, which would repeat the call).
    server.then(
        [
            EVENT_STREAM,
            Raw(openai_delta(tool_calls=[first(0, "call_1", "get_weather")])),
            Raw(sse({"error": {"message": "upstream died", "type": "server_error"}})),
        ]
    )
    got: list[object] = []
    with pytest.raises(ProviderError, match="upstream died") as info:
        for c in openai(server, sleeps).stream(HI):
            got.append(c)
    assert info.value.after_text
    assert [c for c in got if isinstance(c, ToolCallDelta)] == [
        ToolCallDelta(0, id="call_1", name="get_weather")
    ]
    assert len(server.requests) == 1


OPENAI_HISTORY: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"},
]  # fmt: skip
TOOLS_OPENAI = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
    "properties": {"city": {"type": "string"}}}}}]  # fmt: skip


def ok_openai() -> list[Action]:
    return [EVENT_STREAM, Raw(openai_delta("Sunny.")), Raw(openai_delta(finish="stop")),
            Raw(sse("[DONE]"))]  # fmt: skip


def test_openai_history_and_tools_go_as_given(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(ok_openai(), ok_openai())
    p = openai(server, sleeps)
    assert p.history_format == "openai" and OpenAICompatible.history_format == "openai"
    list(p.stream(OPENAI_HISTORY, tools=TOOLS_OPENAI))
    body = server.requests[0]["json"]
    assert body["messages"] == OPENAI_HISTORY and body["tools"] == TOOLS_OPENAI
    list(p.stream(OPENAI_HISTORY))  # no tools: no "tools" field
    assert "tools" not in server.requests[1]["json"]


ANTHROPIC_HISTORY: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "Need the tool.", "signature": "sig1"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
         "input": {"city": "Paris"}}]},
    {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 24 C"}]},
]  # fmt: skip
TOOLS_ANTHROPIC = [{"name": "get_weather", "description": "Weather of a city",
                    "input_schema": {"type": "object"}}]  # fmt: skip


def test_anthropic_history_blocks_and_tools_go_as_given(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then(anthropic_answer(block_delta(0, type="text_delta", text="Sunny."), stop="end_turn"))
    p = anthropic(server, sleeps)
    assert p.history_format == "anthropic" and Anthropic.history_format == "anthropic"
    assert HTTPProvider.history_format == "openai"

    async def run() -> list[object]:
        return [c async for c in p.astream(ANTHROPIC_HISTORY, tools=TOOLS_ANTHROPIC)]

    assert TextDelta("Sunny.") in asyncio.run(run())
    body = server.requests[0]["json"]
    assert body["system"] == "Be brief."
    assert body["messages"] == ANTHROPIC_HISTORY[1:] and body["tools"] == TOOLS_ANTHROPIC


def test_anthropic_system_blocks_are_kept_as_blocks(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then(anthropic_answer(block_delta(0, type="text_delta", text="ok"), stop="end_turn"))
    cached = {"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}}
    history: list[dict[str, Any]] = [
        {"role": "system", "content": [cached]},
        {"role": "system", "content": "And be brief."},
        {"role": "user", "content": "hi"},
    ]
    list(anthropic(server, sleeps).stream(history))
    body = server.requests[0]["json"]
    assert body["system"] == [cached, {"type": "text", "text": "And be brief."}]
    assert body["messages"] == [{"role": "user", "content": "hi"}]


def test_an_older_subclass_without_tools_still_works(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    class Old(OpenAICompatible):
        def request(self, messages: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, Any]]:  # type: ignore[override]
            headers, body = super().request(messages)
            return headers, {**body, "x-old": True}

    server.then(ok_openai())
    old = Old(server.url + "/v1", "m-1", retry=RetryPolicy(sleep=sleeps.append))
    assert TextDelta("Sunny.") in list(old.stream(HI))
    assert server.requests[0]["json"]["x-old"] is True
