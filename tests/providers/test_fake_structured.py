"""The fake model server's scripted answers with reasoning and tool calls, in OpenAI's
and Anthropic's wire formats, and its strict mode (the APIs' history rules)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chatpersist.providers import (
    Anthropic,
    FakeModelServer,
    FakeReasoning,
    FakeToolCall,
    Finish,
    OpenAICompatible,
    ProviderHTTPError,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)

ASK: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
THOUGHT = "The user wants the weather in Paris."
SCRIPT: list[str | FakeReasoning | FakeToolCall] = [
    FakeReasoning(THOUGHT),
    FakeToolCall("get_weather", {"city": "Paris", "unit": "celsius"}, id="call_1"),
    "Let me look that up.",
]
ARGS = json.dumps({"city": "Paris", "unit": "celsius"})


@pytest.fixture
def fake() -> Iterator[FakeModelServer]:
    with FakeModelServer(SCRIPT, chunk_chars=8, delay=0.001) as server:
        yield server


def reasoning(chunks: list[Any]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, ReasoningDelta))


def text(chunks: list[Any]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def calls(chunks: list[Any]) -> list[ToolCallDelta]:
    return [c for c in chunks if isinstance(c, ToolCallDelta)]


def kinds(chunks: list[Any]) -> list[str]:
    """The order of the kinds of content, each run counted once."""
    out: list[str] = []
    for c in chunks:
        kind = type(c).__name__
        if isinstance(c, ReasoningDelta | TextDelta | ToolCallDelta) and out[-1:] != [kind]:
            out.append(kind)
    return out


def test_openai_format_streams_reasoning_then_a_tool_call_in_fragments_then_text(
    fake: FakeModelServer,
) -> None:
    chunks = list(OpenAICompatible(fake.base_url, "fake").stream(ASK))
    assert kinds(chunks) == ["ReasoningDelta", "ToolCallDelta", "TextDelta"]
    assert reasoning(chunks) == "The user wants the weather in Paris."
    got = calls(chunks)
    assert got[0] == ToolCallDelta(0, id="call_1", name="get_weather")
    assert len(got) > 3 and "".join(c.arguments for c in got) == ARGS
    assert all(c.id is None and c.index == 0 for c in got[1:])
    assert text(chunks) == "Let me look that up." == fake.answer
    assert Finish("tool_calls") in chunks and any(isinstance(c, Usage) for c in chunks)


def test_anthropic_format_streams_the_same_script(fake: FakeModelServer) -> None:
    chunks = list(Anthropic("fake", base_url=fake.anthropic_base_url).stream(ASK))
    assert kinds(chunks) == ["ReasoningDelta", "ToolCallDelta", "TextDelta"]
    assert reasoning(chunks) == "The user wants the weather in Paris."
    signatures = [c.signature for c in chunks if isinstance(c, ReasoningDelta) and c.signature]
    assert len(signatures) == 1 and signatures[0].startswith("fakesig-")
    got = calls(chunks)
    assert got[0] == ToolCallDelta(1, id="call_1", name="get_weather")  # block index 1
    assert len(got) > 3 and "".join(c.arguments for c in got) == ARGS
    assert text(chunks) == "Let me look that up."
    assert Finish("tool_use") in chunks
    assert fake.requests[0]["messages"] == ASK


def test_two_calls_made_up_ids_redacted_reasoning_and_the_async_client() -> None:
    script: list[str | FakeReasoning | FakeToolCall] = [
        FakeReasoning(redacted="EmwKAhgB"),
        FakeToolCall("get_weather", {"city": "Paris"}),
        FakeToolCall("get_time", '{"tz": "Europe/Paris"}'),
    ]

    async def run(provider: Any) -> list[Any]:
        return [c async for c in provider.astream(ASK)]

    with FakeModelServer(script, chunk_chars=5, delay=0.001) as fake:
        openai = asyncio.run(run(OpenAICompatible(fake.base_url, "fake")))
        anthropic = asyncio.run(run(Anthropic("fake", base_url=fake.anthropic_base_url)))
    # OpenAI's format has no redacted reasoning; calls are numbered 0, 1
    assert not any(isinstance(c, ReasoningDelta) for c in openai)
    named = [c for c in calls(openai) if c.id]
    assert [(c.index, c.name) for c in named] == [(0, "get_weather"), (1, "get_time")]
    assert all(c.id and c.id.startswith("call_") for c in named)
    assert "".join(c.arguments for c in calls(openai) if c.index == 1) == '{"tz": "Europe/Paris"}'
    assert ReasoningDelta("", redacted="EmwKAhgB") in anthropic
    named = [c for c in calls(anthropic) if c.id]
    assert [(c.index, c.name) for c in named] == [(1, "get_weather"), (2, "get_time")]
    assert all(c.id and c.id.startswith("toolu_") for c in named)
    assert text(openai) == text(anthropic) == ""


def test_then_queues_answers_for_the_next_requests(fake: FakeModelServer) -> None:
    fake.then([FakeToolCall("lookup", {"q": "x"}, id="call_q")], "From the lookup: x.")
    p = OpenAICompatible(fake.base_url, "fake")
    first = list(p.stream(ASK))
    assert [c.name for c in calls(first) if c.name] == ["lookup"] and text(first) == ""
    history: list[dict[str, Any]] = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_q", "type": "function",
             "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]},
        {"role": "tool", "tool_call_id": "call_q", "content": "x"},
    ]  # fmt: skip
    second = list(p.stream(history))
    assert text(second) == "From the lookup: x." and Finish("stop") in second
    third = list(p.stream(ASK))  # the queue is used up: the server's own answer again
    assert text(third) == "Let me look that up."


def test_a_text_answer_is_continued_after_an_anthropic_prefill() -> None:
    answer = "One two three four five."
    with FakeModelServer(answer, chunk_chars=3, delay=0.001) as fake:
        prefill = {"role": "assistant", "content": [{"type": "text", "text": "One two"}]}
        history: list[dict[str, Any]] = [*ASK, prefill]
        chunks = list(Anthropic("fake", base_url=fake.anthropic_base_url).stream(history))
    assert text(chunks) == " three four five." and Finish("end_turn") in chunks


def test_unknown_script_steps_are_refused() -> None:
    with pytest.raises(TypeError, match="FakeToolCall"):
        FakeModelServer(["text", 42])  # type: ignore[list-item]


# The real SDKs on the fake server: they must get the shapes the real APIs send.


def test_openai_sdk_reads_the_scripted_tool_call(fake: FakeModelServer) -> None:
    openai = pytest.importorskip("openai")
    with openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0, timeout=10) as client:
        chunks = list(client.chat.completions.create(model="m", messages=ASK, stream=True))
        done = client.chat.completions.create(model="m", messages=ASK)
    deltas = [c.choices[0].delta for c in chunks]
    fragments = [t.function.arguments for d in deltas for t in (d.tool_calls or [])]
    assert "".join(a or "" for a in fragments) == ARGS
    assert "".join(d.model_extra.get("reasoning_content") or "" for d in deltas) == THOUGHT
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    message = done.choices[0].message
    assert (
        message.content == "Let me look that up." and done.choices[0].finish_reason == "tool_calls"
    )
    assert message.tool_calls[0].id == "call_1"
    assert json.loads(message.tool_calls[0].function.arguments) == json.loads(ARGS)


def test_anthropic_sdk_reads_the_scripted_answer(fake: FakeModelServer) -> None:
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="x", max_retries=0)
    try:
        with client.messages.stream(model="fake", max_tokens=100, messages=ASK) as stream:
            final = stream.get_final_message()
        whole = client.messages.create(model="fake", max_tokens=100, messages=ASK)
    finally:
        client.close()
    for message in (final, whole):
        assert [b.type for b in message.content] == ["thinking", "tool_use", "text"]
        think, call, words = message.content
        assert think.thinking == THOUGHT and think.signature.startswith("fakesig-")
        assert (call.id, call.name, call.input) == ("call_1", "get_weather", json.loads(ARGS))
        assert words.text == "Let me look that up." and message.stop_reason == "tool_use"


# Strict mode


def post(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url, json=body, timeout=10)


def test_strict_openai_answers_400_naming_the_rule() -> None:
    broken: list[dict[str, Any]] = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Pa'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]  # fmt: skip
    with FakeModelServer("ok", delay=0.001, strict=True) as fake:
        r = post(fake.base_url + "/chat/completions", {"model": "m", "messages": broken})
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["code"] == "tool_arguments_json" and error["param"] == "messages"
        assert error["message"].startswith("tool_arguments_json: messages[1]")
        with pytest.raises(ProviderHTTPError, match="HTTP 400.*tool_arguments_json") as raised:
            list(OpenAICompatible(fake.base_url, "m").stream(broken))
        assert raised.value.status == 400 and not raised.value.retryable
        broken[1]["tool_calls"][0]["function"]["arguments"] = '{"city": "Paris"}'
        assert text(list(OpenAICompatible(fake.base_url, "m").stream(broken))) == "ok"


def test_not_strict_lets_a_broken_history_through() -> None:
    with FakeModelServer("ok", delay=0.001) as fake:
        orphan: list[dict[str, Any]] = [
            *ASK,
            {"role": "tool", "tool_call_id": "nope", "content": "?"},
        ]
        assert text(list(OpenAICompatible(fake.base_url, "m").stream(orphan))) == "ok"
        r = post(fake.anthropic_base_url + "/v1/messages",
                 {"model": "m", "max_tokens": 5, "messages": [{"role": "assistant",
                                                               "content": "x "}]})  # fmt: skip
        assert r.status_code == 200


def test_strict_anthropic_answers_400_in_anthropic_style() -> None:
    unanswered: list[dict[str, Any]] = [*ASK, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": "never mind"}]  # fmt: skip
    with FakeModelServer("ok", delay=0.001, strict=True) as fake:
        url = fake.anthropic_base_url + "/v1/messages"
        r = post(url, {"model": "m", "max_tokens": 5, "messages": unanswered})
        assert r.status_code == 400
        body = r.json()
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert body["error"]["message"].startswith("tool_use_answered: messages[1]")
        with pytest.raises(ProviderHTTPError, match="HTTP 400.*prefill_trailing_whitespace"):
            list(Anthropic("m", base_url=fake.anthropic_base_url).stream(
                [*ASK, {"role": "assistant", "content": "Partial answer "}]))  # fmt: skip
        # the request itself is checked too, strict or not
        r = post(url, {"model": "m", "messages": ASK})
        assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]


def test_strict_anthropic_refuses_a_changed_thinking_block() -> None:
    with FakeModelServer(SCRIPT, chunk_chars=50, delay=0.001, strict=True) as fake:
        p = Anthropic("m", base_url=fake.anthropic_base_url)
        chunks = list(p.stream(ASK))
        signature = next(
            c.signature for c in chunks if isinstance(c, ReasoningDelta) and c.signature
        )

        def history(thought: str) -> list[dict[str, Any]]:
            return [*ASK, {"role": "assistant", "content": [
                {"type": "thinking", "thinking": thought, "signature": signature},
                {"type": "tool_use", "id": "call_1", "name": "get_weather",
                 "input": json.loads(ARGS)}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}]}]  # fmt: skip

        assert text(list(p.stream(history(reasoning(chunks))))) == "Let me look that up."
        with pytest.raises(ProviderHTTPError, match="thinking_signature"):
            list(p.stream(history(reasoning(chunks)[:-1])))


def test_strict_failures_do_not_use_up_a_queued_answer() -> None:
    with FakeModelServer("default", delay=0.001, strict=True) as fake:
        fake.then("queued")
        p = OpenAICompatible(fake.base_url, "m")
        with pytest.raises(ProviderHTTPError):
            list(p.stream([*ASK, {"role": "assistant", "content": None}]))
        assert text(list(p.stream(ASK))) == "queued"
        assert len(fake.requests) == 2
