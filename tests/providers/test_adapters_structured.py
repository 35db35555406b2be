"""Reasoning and tool calls from the SDKs' own stream objects (real pydantic objects of
openai, anthropic, langchain-core and litellm where installed)."""

from __future__ import annotations

import json
from types import SimpleNamespace as NS
from typing import Any

import pytest

from chatpersist.providers import (
    Chunk,
    Finish,
    ModelName,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
    to_chunks,
)


def test_our_tool_call_chunk_passes_through() -> None:
    delta = ToolCallDelta(2, id="c", name="f", arguments="{}")
    assert to_chunks(delta) == [delta]


# -- openai --


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> Any:
    types = pytest.importorskip("openai.types.chat")
    return types.ChatCompletionChunk.model_validate(
        {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "gpt-x",
         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    )  # fmt: skip


def test_real_openai_sdk_tool_call_deltas() -> None:
    start = openai_chunk(
        {"role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}]}
    )  # fmt: skip
    fragment = openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]})
    both = openai_chunk(
        {"tool_calls": [
            {"index": 0, "function": {"arguments": ': "Paris"}'}},
            {"index": 1, "id": "call_2", "type": "function",
             "function": {"name": "get_time", "arguments": "{}"}}]}
    )  # fmt: skip
    end = openai_chunk({}, finish="tool_calls")
    assert to_chunks(start) == [ModelName("gpt-x"), ToolCallDelta(0, "call_1", "get_weather")]
    assert to_chunks(fragment) == [ModelName("gpt-x"), ToolCallDelta(0, arguments='{"city"')]
    assert to_chunks(both) == [
        ModelName("gpt-x"),
        ToolCallDelta(0, arguments=': "Paris"}'),
        ToolCallDelta(1, "call_2", "get_time", "{}"),
    ]
    assert to_chunks(end) == [ModelName("gpt-x"), Finish("tool_calls")]


def test_real_openai_sdk_reasoning_in_model_extra() -> None:
    deepseek = openai_chunk({"content": None, "reasoning_content": "First, "})
    openrouter = openai_chunk({"content": None, "reasoning": "then"})
    assert deepseek.choices[0].delta.model_extra == {"reasoning_content": "First, "}
    assert to_chunks(deepseek) == [ModelName("gpt-x"), ReasoningDelta("First, ")]
    assert to_chunks(openrouter) == [ModelName("gpt-x"), ReasoningDelta("then")]


# -- anthropic --


def anthropic_event(kind: str, payload: dict[str, Any]) -> Any:
    types = pytest.importorskip("anthropic.types")
    model = {
        "content_block_start": types.RawContentBlockStartEvent,
        "content_block_delta": types.RawContentBlockDeltaEvent,
        "message_delta": types.RawMessageDeltaEvent,
    }[kind]
    return model.model_validate({"type": kind, **payload})


def test_real_anthropic_sdk_tool_use_blocks() -> None:
    start = anthropic_event(
        "content_block_start",
        {"index": 2, "content_block": {"type": "tool_use", "id": "toolu_1",
                                       "name": "get_weather", "input": {}}},
    )  # fmt: skip
    fragment = anthropic_event(
        "content_block_delta",
        {"index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'}},
    )
    empty = anthropic_event(
        "content_block_delta",
        {"index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
    )
    stop = anthropic_event(
        "message_delta",
        {
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 4},
        },
    )
    assert type(start.content_block).__name__ == "ToolUseBlock"
    assert type(fragment.delta).__name__ == "InputJSONDelta"
    assert to_chunks(start) == [ToolCallDelta(2, id="toolu_1", name="get_weather")]
    assert to_chunks(fragment) == [ToolCallDelta(2, arguments='{"city": "Pa')]
    assert to_chunks(empty) == []
    assert to_chunks(stop) == [Finish("tool_use"), Usage(output_tokens=4)]


def test_real_anthropic_sdk_thinking_signature_and_redacted() -> None:
    start = anthropic_event(
        "content_block_start",
        {"index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
    )
    thinking = anthropic_event(
        "content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}}
    )
    signature = anthropic_event(
        "content_block_delta",
        {"index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAh"}},
    )
    redacted = anthropic_event(
        "content_block_start",
        {"index": 1, "content_block": {"type": "redacted_thinking", "data": "EmwKAhgB"}},
    )
    assert [type(e).__name__ for e in (start.content_block, signature.delta)] == [
        "ThinkingBlock", "SignatureDelta",
    ]  # fmt: skip
    assert type(redacted.content_block).__name__ == "RedactedThinkingBlock"
    assert to_chunks(start) == []
    assert to_chunks(thinking) == [ReasoningDelta("hm")]
    assert to_chunks(signature) == [ReasoningDelta("", signature="EqQBCgIYAh")]
    assert to_chunks(redacted) == [ReasoningDelta("", redacted="EmwKAhgB")]


def test_real_anthropic_sdk_text_block_start_and_unknown_delta() -> None:
    start = anthropic_event(
        "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
    )
    citation = anthropic_event(
        "content_block_delta",
        {"index": 0, "delta": {"type": "citations_delta", "citation": {
            "type": "char_location", "cited_text": "x", "document_index": 0,
            "document_title": None, "start_char_index": 0, "end_char_index": 1}}},
    )  # fmt: skip
    assert to_chunks(start) == [] and to_chunks(citation) == []


# -- langchain --


@pytest.fixture
def lc() -> Any:
    return pytest.importorskip("langchain_core.messages")


def test_real_langchain_tool_call_chunks(lc: Any) -> None:
    first = lc.AIMessageChunk(
        content="",
        tool_call_chunks=[{"name": "get_weather", "args": "", "id": "call_1", "index": 0}],
    )
    fragment = lc.AIMessageChunk(
        content="", tool_call_chunks=[{"name": None, "args": '{"city": "Paris"}', "id": None,
                                       "index": 0}]
    )  # fmt: skip
    last = lc.AIMessageChunk(content="", response_metadata={"finish_reason": "tool_calls"})
    assert to_chunks(first) == [ToolCallDelta(0, id="call_1", name="get_weather")]
    assert to_chunks(fragment) == [ToolCallDelta(0, arguments='{"city": "Paris"}')]
    assert to_chunks(last) == [Finish("tool_calls")]


def test_real_langchain_anthropic_blocks_do_not_repeat_the_tool_call(lc: Any) -> None:
    # langchain-anthropic puts a tool call both in the content blocks and in
    # tool_call_chunks: it is read once, from tool_call_chunks.
    start = lc.AIMessageChunk(
        content=[{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {},
                  "index": 1}],
        tool_call_chunks=[{"name": "get_weather", "args": "", "id": "toolu_1", "index": 1}],
    )  # fmt: skip
    fragment = lc.AIMessageChunk(
        content=[{"type": "input_json_delta", "partial_json": '{"city": ', "index": 1}],
        tool_call_chunks=[{"name": None, "args": '{"city": ', "id": None, "index": 1}],
    )
    assert to_chunks(start) == [ToolCallDelta(1, id="toolu_1", name="get_weather")]
    assert to_chunks(fragment) == [ToolCallDelta(1, arguments='{"city": ')]


def test_real_langchain_whole_tool_calls(lc: Any) -> None:
    # A chunk built from whole tool calls gets tool_call_chunks without an index:
    # they are named by their place.
    chunk = lc.AIMessageChunk(
        content="",
        tool_calls=[
            {"name": "a", "args": {"x": 1}, "id": "call_a"},
            {"name": "b", "args": {}, "id": "call_b"},
        ],
    )
    assert to_chunks(chunk) == [
        ToolCallDelta(0, id="call_a", name="a", arguments=json.dumps({"x": 1})),
        ToolCallDelta(1, id="call_b", name="b", arguments="{}"),
    ]


def test_real_langchain_reasoning_in_additional_kwargs(lc: Any) -> None:
    chunk = lc.AIMessageChunk(content="Hi", additional_kwargs={"reasoning_content": "think"})
    assert to_chunks(chunk) == [ReasoningDelta("think"), TextDelta("Hi")]
    # When content blocks carry the reasoning, additional_kwargs does not repeat it.
    both = lc.AIMessageChunk(
        content=[{"type": "reasoning", "reasoning": "think"}],
        additional_kwargs={"reasoning_content": "think"},
    )
    assert to_chunks(both) == [ReasoningDelta("think")]


def test_real_langchain_thinking_signature_and_redacted_blocks(lc: Any) -> None:
    v0 = lc.AIMessageChunk(
        content=[
            {"type": "thinking", "thinking": "step one", "index": 0},
            {"type": "thinking", "signature": "EqQB", "index": 0},
            {"type": "redacted_thinking", "data": "EmwK", "index": 1},
            {"type": "text", "text": "Done", "index": 2},
        ]
    )
    v1 = lc.AIMessageChunk(
        content=[{"type": "reasoning", "reasoning": "", "extras": {"signature": "EqQB"}}]
    )
    assert to_chunks(v0) == [
        ReasoningDelta("step one"),
        ReasoningDelta("", signature="EqQB"),
        ReasoningDelta("", redacted="EmwK"),
        TextDelta("Done"),
    ]
    assert to_chunks(v1) == [ReasoningDelta("", signature="EqQB")]


# -- litellm --

LITELLM_DELTAS: list[dict[str, Any]] = [
    {"reasoning_content": "Let me think", "thinking_blocks": [
        {"type": "thinking", "thinking": "Let me think", "signature": None}]},
    {"reasoning_content": "", "thinking_blocks": [
        {"type": "thinking", "thinking": "", "signature": "EqQB"}]},
    {"thinking_blocks": [{"type": "redacted_thinking", "data": "EmwK"}]},
    {"content": None, "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]},
    {"content": None, "tool_calls": [
        {"index": 0, "id": None, "type": "function",
         "function": {"name": None, "arguments": '{"city": "Paris"}'}}]},
]  # fmt: skip
LITELLM_CHUNKS: list[list[Chunk]] = [
    [ReasoningDelta("Let me think")],
    [ReasoningDelta("", signature="EqQB")],
    [ReasoningDelta("", redacted="EmwK")],
    [ToolCallDelta(0, id="call_1", name="get_weather")],
    [ToolCallDelta(0, arguments='{"city": "Paris"}')],
]


def test_real_litellm_reasoning_and_tool_calls() -> None:
    types = pytest.importorskip("litellm.types.utils")
    for delta, expected in zip(LITELLM_DELTAS, LITELLM_CHUNKS, strict=True):
        chunk = types.ModelResponseStream(
            model="anthropic/claude-x",
            choices=[{"index": 0, "delta": delta, "finish_reason": None}],
        )
        assert to_chunks(chunk) == [ModelName("anthropic/claude-x"), *expected], delta


def _ns(value: Any) -> Any:
    """LiteLLM's objects are attribute objects (not mappings) all the way down."""
    if isinstance(value, dict):
        return NS(**{k: _ns(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_ns(v) for v in value]
    return value


def test_litellm_shaped_reasoning_and_tool_calls() -> None:
    for delta, expected in zip(LITELLM_DELTAS, LITELLM_CHUNKS, strict=True):
        chunk = NS(
            model="anthropic/claude-x",
            choices=[NS(index=0, delta=_ns(delta), finish_reason=None)],
        )
        assert to_chunks(chunk) == [ModelName("anthropic/claude-x"), *expected], delta
    end = NS(model="m", choices=[NS(delta=NS(content=None), finish_reason="tool_calls")])
    assert to_chunks(end) == [ModelName("m"), Finish("tool_calls")]
