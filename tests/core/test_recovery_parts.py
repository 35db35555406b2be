"""Continuing and regenerating answers with parts (reasoning, tool calls, results)
cut at any point: the history goes to each provider in its API's shape, repaired, and
a strict fake model server (which answers a broken history with HTTP 400) accepts it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatpersist import COMPLETE, ChatStore
from chatpersist._draft import Draft
from chatpersist._history import CutToolCalls, HistoryFormat, for_model
from chatpersist._parts import ToolCallPart
from chatpersist.providers import (
    Anthropic,
    FakeModelServer,
    FakeReasoning,
    FakeToolCall,
    HTTPProvider,
    OpenAICompatible,
    ProviderHTTPError,
    feed,
)
from chatpersist.providers._validate import check_anthropic_messages, check_openai_messages
from chatpersist.recovery import CONTINUE_INSTRUCTION, continuation, continue_answer, regenerate

#: An answer as its stream delivered it: (kind, *values).
STEPS: list[tuple[str, ...]] = [
    ("reasoning", "The user wants the weather"),
    ("reasoning", " and the time."),
    ("signature", "sig-1"),
    ("text", "Let me check "),
    ("text", "both."),
    ("call", "call_1", "get_weather", '{"city": '),
    ("args", "call_1", '"Paris"}'),
    ("call", "call_2", "get_time", '{"tz": "CET"}'),
    ("result", "call_1", "sunny"),
    ("result", "call_2", "12:00"),
    ("text", "It is sunny"),
    ("text", " at noon."),
]
INSIDE_ARGS, AFTER_ONE_RESULT, INSIDE_FINAL_TEXT = 6, 9, 11
FIRST_TEXT = next(n for n, step in enumerate(STEPS) if step[0] == "text")
FORMATS: list[HistoryFormat] = ["openai", "anthropic"]
POLICIES: list[CutToolCalls] = ["drop", "error"]


def play(d: Draft, steps: list[tuple[str, ...]]) -> None:
    for kind, *v in steps:
        if kind == "reasoning":
            d.append_reasoning(v[0])
        elif kind == "signature":
            d.append_reasoning(signature=v[0])
        elif kind == "text":
            d.append(v[0])
        elif kind == "call":
            d.append_tool_call(v[0], v[1], v[2])
        elif kind == "args":
            d.append_tool_call(v[0], None, v[1])
        elif kind == "result":
            d.add_tool_result(v[0], v[1])


def cut_answer(store: ChatStore, steps: int, *, earlier: bool = False) -> tuple[str, str]:
    """A session whose last answer was cut after `steps` steps (with `earlier`, a
    finished answer with parts comes first); returns (session id, message id)."""
    sid = store.create_session()
    if earlier:
        store.add_message(sid, "user", "Weather in Rome?")
        with store.draft(sid) as first:
            play(first, STEPS)
    store.add_message(sid, "user", "Weather and time in Paris?")
    with store.draft(sid) as d:
        play(d, STEPS[:steps])
        d.stop("disconnected")
    assert store.get_message(d.message_id).interrupted
    return sid, d.message_id


def provider(fake: FakeModelServer, fmt: HistoryFormat) -> HTTPProvider:
    if fmt == "anthropic":
        return Anthropic("fake-model", base_url=fake.anthropic_base_url)
    return OpenAICompatible(fake.base_url, "fake-model")


def check(messages: list[dict[str, Any]], fmt: HistoryFormat) -> None:
    if fmt == "openai":
        check_openai_messages(messages)
    else:
        check_anthropic_messages([m for m in messages if m["role"] != "system"])


def strict(answer: str | list[Any]) -> FakeModelServer:
    return FakeModelServer(answer, strict=True, delay=0, chunk_chars=64)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[ChatStore]:
    with ChatStore(f"sqlite:///{tmp_path}/parts.db") as store:
        store.migrate()
        yield store


# -- the request for every cut point ----------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_continuation_at_every_cut_point_keeps_the_rules(
    sqlite_store: ChatStore, fmt: HistoryFormat, policy: CutToolCalls
) -> None:
    for steps in range(len(STEPS)):
        for prefill in (False, True):
            sid, mid = cut_answer(sqlite_store, steps, earlier=True)
            sent = continuation(
                sqlite_store, mid, prefill=prefill, format=fmt, cut_tool_calls=policy
            )
            check(sent, fmt)
            flat = json.dumps(sent)
            where = (steps, prefill)
            # The cut answer's reasoning is never sent; the finished one's goes back to
            # Anthropic (signed thinking), not to OpenAI.
            assert flat.count("The user wants") == int(fmt == "anthropic"), where
            last = sent[-1]
            if prefill and last["role"] == "assistant":
                tail = last["content"] if isinstance(last["content"], str) else (
                    last["content"][-1]["text"])  # fmt: skip
                assert tail == tail.rstrip() and tail, where
            elif steps > FIRST_TEXT:  # something of the answer is sent back: continue it
                assert CONTINUE_INSTRUCTION in json.dumps(last), where
            else:  # nothing but reasoning: the question is answered afresh
                assert CONTINUE_INSTRUCTION not in flat, where
                assert last["role"] == "user" and "Paris" in json.dumps(last), where


def test_the_exact_requests(sqlite_store: ChatStore) -> None:
    _, mid = cut_answer(sqlite_store, INSIDE_ARGS)
    question = {"role": "user", "content": "Weather and time in Paris?"}
    assert continuation(sqlite_store, mid) == [
        question,
        {"role": "assistant", "content": "Let me check both."},
        {"role": "user", "content": CONTINUE_INSTRUCTION},
    ]
    assert continuation(sqlite_store, mid, prefill=True, format="anthropic") == [
        question,
        {"role": "assistant", "content": "Let me check both."},
    ]
    _, mid = cut_answer(sqlite_store, AFTER_ONE_RESULT)
    assert continuation(sqlite_store, mid, prefill=True, format="anthropic") == [
        question,
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check both."},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },  # fmt: skip
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_1",
                    "content": "sunny",
                    "is_error": False,
                },
                {"type": "text", "text": CONTINUE_INSTRUCTION},
            ],
        },  # fmt: skip
    ]


# -- through a strict server, on every database -------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_continue_a_cut_inside_tool_arguments(store: ChatStore, fmt: HistoryFormat) -> None:
    sid, mid = cut_answer(store, INSIDE_ARGS, earlier=True)
    with strict("Let me check both. I will look it up.") as fake:
        m = continue_answer(store, mid, provider(fake, fmt))
        sent = fake.requests[-1]["messages"]
    assert (m.id, m.status) == (mid, COMPLETE)
    assert m.content == "Let me check both. I will look it up."
    assert "get_weather" not in json.dumps(sent[-2:])  # the cut call is not sent
    # The finished answer keeps its cut call, never sent again, in either shape.
    for shape in FORMATS:
        check(for_model(store.history(sid), format=shape), shape)
        check(for_model(store.history(sid), format=shape, cut_tool_calls="error"), shape)


@pytest.mark.parametrize("fmt", FORMATS)
def test_continue_after_a_tool_result(store: ChatStore, fmt: HistoryFormat) -> None:
    sid, mid = cut_answer(store, AFTER_ONE_RESULT)
    with strict("It is sunny.") as fake:
        m = continue_answer(store, mid, provider(fake, fmt), cut_tool_calls="error")
        sent = fake.requests[-1]["messages"]
    assert m.status == COMPLETE and m.content == "Let me check both.It is sunny."
    flat = json.dumps(sent)
    assert "no result was recorded" in flat  # call_2 closed by an error result
    assert CONTINUE_INSTRUCTION in flat  # a prefill cannot end with a tool result
    for shape in FORMATS:
        check(for_model(store.history(sid), format=shape), shape)


@pytest.mark.parametrize("fmt", FORMATS)
def test_continue_inside_the_final_text(store: ChatStore, fmt: HistoryFormat) -> None:
    sid, mid = cut_answer(store, INSIDE_FINAL_TEXT)
    with strict("It is sunny at noon.") as fake:
        m = continue_answer(store, mid, provider(fake, fmt))
        sent = fake.requests[-1]["messages"]
    assert m.content == "Let me check both.It is sunny at noon."
    if fmt == "anthropic":  # the prefill: the partial answer, ending with its text
        assert sent[-1] == {"role": "assistant", "content": "It is sunny"}
    else:
        assert sent[-2:] == [
            {"role": "assistant", "content": "It is sunny"},
            {"role": "user", "content": CONTINUE_INSTRUCTION},
        ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_continue_a_cut_inside_reasoning(store: ChatStore, fmt: HistoryFormat) -> None:
    sid, mid = cut_answer(store, 1)
    with strict("Sunny, at noon.") as fake:
        m = continue_answer(store, mid, provider(fake, fmt))
        sent = fake.requests[-1]["messages"]
    assert sent == [{"role": "user", "content": "Weather and time in Paris?"}]
    assert (m.content, m.status) == ("Sunny, at noon.", COMPLETE)


@pytest.mark.parametrize("fmt", FORMATS)
def test_regenerate_after_an_answer_with_parts(store: ChatStore, fmt: HistoryFormat) -> None:
    sid, mid = cut_answer(store, INSIDE_ARGS, earlier=True)
    with strict("Fresh answer.") as fake:
        m = regenerate(store, mid, provider(fake, fmt))
        sent = fake.requests[-1]["messages"]
    assert (m.id, m.content, m.status) == (mid, "Fresh answer.", COMPLETE)
    assert [t["role"] for t in sent] == (
        ["user", "assistant", "tool", "tool", "assistant", "user"] if fmt == "openai"
        else ["user", "assistant", "user", "assistant", "user"]
    )  # fmt: skip


def test_a_model_that_thinks_and_calls_tools_then_is_cut(store: ChatStore) -> None:
    """The provider's own stream recorded (signed thinking, a tool call), then an
    answer cut in its reasoning: continuing sends the first answer's thinking back
    unchanged, as the API wants."""
    sid = store.create_session()
    store.add_message(sid, "user", "Weather in Rome?")
    script = [FakeReasoning("Rome: call the tool."), FakeToolCall("get_weather", {"city": "Rome"})]
    with strict(script) as fake:
        anthropic = provider(fake, "anthropic")
        with store.draft(sid) as first:  # the app streams the answer, then runs the tool
            for chunk in anthropic.stream(for_model(store.history(sid), format="anthropic")):
                feed(first, chunk)
            call = first.parts[-1]
            assert isinstance(call, ToolCallPart) and call.complete
            first.add_tool_result(call.id, "cloudy")
        store.add_message(sid, "user", "And Paris?")
        with store.draft(sid) as d:
            d.append_reasoning("Paris: call the")
            d.stop("disconnected")
        fake.then("Paris is sunny.")
        m = continue_answer(store, d.message_id, anthropic)
        sent = fake.requests[-1]["messages"]
    assert m.content == "Paris is sunny."
    thinking = sent[1]["content"][0]
    assert thinking["type"] == "thinking" and thinking["thinking"] == "Rome: call the tool."
    assert [t["role"] for t in sent] == ["user", "assistant", "user"]
    assert [b["type"] for b in sent[2]["content"]] == ["tool_result", "text"]


# -- the provider's shape -----------------------------------------------------------------


class Recording:
    """A provider with no `history_format`: it gets OpenAI's shape."""

    def __init__(self) -> None:
        self.seen: list[list[dict[str, Any]]] = []

    def stream(self, messages: list[dict[str, Any]]) -> Iterator[str]:
        self.seen.append(messages)
        yield "done."


def test_a_provider_without_history_format_gets_openai_shapes(sqlite_store: ChatStore) -> None:
    _, mid = cut_answer(sqlite_store, AFTER_ONE_RESULT)
    p = Recording()
    continue_answer(sqlite_store, mid, p)  # type: ignore[arg-type]
    assert [t["role"] for t in p.seen[0]] == ["user", "assistant", "tool", "user"]
    p.history_format = "gemini"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="history_format"):
        regenerate(sqlite_store, mid, p)  # type: ignore[arg-type]


def test_keep_reasoning_reaches_the_history_before(sqlite_store: ChatStore) -> None:
    _, mid = cut_answer(sqlite_store, INSIDE_ARGS, earlier=True)
    p = Recording()
    continue_answer(sqlite_store, mid, p, keep_reasoning=True)  # type: ignore[arg-type]
    reasoning = [t.get("reasoning_content") for t in p.seen[0] if t.get("reasoning_content")]
    assert reasoning == ["The user wants the weather and the time."]  # the earlier answer's


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_strict_server_refuses_an_unrepaired_history(fmt: HistoryFormat) -> None:
    """The check the tests above rely on: a call left without its result is a 400."""
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    broken: list[dict[str, Any]] = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [call]}
        if fmt == "openai"
        else {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}]},
        {"role": "user", "content": "go on"},
    ]  # fmt: skip
    with strict("x") as fake, pytest.raises(ProviderHTTPError) as refused:
        list(provider(fake, fmt).stream(broken))
    assert refused.value.status == 400
