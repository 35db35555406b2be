"""The history sent back to a model, in OpenAI's and Anthropic's shapes: answers with
reasoning, tool calls and their results, and answers cut at every point of their
stream, repaired so that each API's ordering rules hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chatpersist import COMPLETE, STREAMING, Message
from chatpersist._history import (
    CUT_CALL_ERROR,
    NO_RESULT_ERROR,
    CutToolCalls,
    HistoryFormat,
    for_model,
    merge_user_turns,
)
from chatpersist._message import build_message
from chatpersist.providers._validate import check_anthropic_messages, check_openai_messages

NOW = datetime(2025, 1, 1, tzinfo=UTC)
FORMATS: list[HistoryFormat] = ["openai", "anthropic"]
POLICIES: list[CutToolCalls] = ["drop", "error"]

_seq = iter(range(1, 1_000_000))


def text_for_model(
    history: list[Message], interrupted: str, before: str | None
) -> list[dict[str, Any]]:
    """The history builder of the release before parts (text only), for comparison."""
    out = []
    for m in history:
        if str(m.id) == str(before):
            break
        if m.live or (m.interrupted and (interrupted == "drop" or not m.content)):
            continue
        out.append({"role": m.role, "content": m.content})
    return out


def message(
    role: str,
    content: str = "",
    parts: list[dict[str, Any]] | None = None,
    *,
    state: str = "complete",
    id: str | None = None,
) -> Message:
    """A stored message as the loader builds it: complete, interrupted or live."""
    n = next(_seq)
    status = COMPLETE if state == "complete" else STREAMING
    return build_message(
        id=id or f"m{n}", session_id="s", role=role, content=content, status=status,
        finish_reason="disconnected" if state == "interrupted" else None, seq=n,
        created_at=NOW, updated_at=NOW, now=NOW, lease=timedelta(seconds=30),
        marker="(response interrupted)", parts=parts,
    )  # fmt: skip


# -- an answer as its stream delivered it, and what a cut at any point left ---------

#: (kind, part key, *values): reasoning, signature, text, call (id, name, arguments),
#: args (more arguments), result (call id, content).
ANSWER: list[tuple[str, ...]] = [
    ("reasoning", "r", "The user wants the weather"),
    ("reasoning", "r", " and the time.\nTwo tools."),
    ("signature", "r", "sig-1"),
    ("text", "t1", "Let me check "),
    ("text", "t1", "both."),
    ("call", "c1", "call_1", "get_weather", '{"city": '),
    ("args", "c1", '"Paris"}'),
    ("call", "c2", "call_2", "get_time", '{"tz": "CET"}'),
    ("result", "x1", "call_1", "sunny, 21 C"),
    ("result", "x2", "call_2", "12:00"),
    ("text", "t2", "It is sunny "),
    ("text", "t2", "at noon."),
]


def record(events: list[tuple[str, ...]]) -> tuple[str, list[dict[str, Any]]]:
    """The content and the stored segments of an answer streamed up to `events`."""
    content = ""
    segments: list[dict[str, Any]] = []
    index: dict[str, int] = {}

    def part(key: str) -> tuple[int, bool]:
        new = key not in index
        if new:
            index[key] = len(index)
        return index[key], new

    for kind, key, *values in events:
        i, new = part(key)
        if kind == "reasoning":
            segments.append({"i": i, "type": "reasoning", "text": values[0]} if new else
                            {"i": i, "text": values[0]})  # fmt: skip
        elif kind == "signature":
            segments.append({"i": i, "signature": values[0]})
        elif kind == "text":
            if new:
                segments.append({"i": i, "type": "text", "start": len(content)})
            content += values[0]
        elif kind == "call":
            call_id, name, arguments = values
            segments.append(
                {"i": i, "type": "tool_call", "id": call_id, "name": name, "arguments": arguments}
            )
        elif kind == "args":
            segments.append({"i": i, "arguments": values[0]})
        elif kind == "result":
            segments.append(
                {"i": i, "type": "tool_result", "tool_call_id": values[0], "content": values[1]}
            )
    return content, segments


def answer(events: list[tuple[str, ...]], state: str = "interrupted") -> Message:
    content, segments = record(events)
    return message("assistant", content, segments, state=state)


CUTS = list(range(len(ANSWER)))  # after 0 .. len-1 events: every point of the stream
FIRST_TEXT = next(n for n, event in enumerate(ANSWER) if event[0] == "text")


def cut_name(n: int) -> str:
    kind, key = ANSWER[n][:2] if n < len(ANSWER) else ("end", "")
    return f"{n:02d}-before-{kind}-{key}"


def conversation(reply: Message, follow_up: bool = True) -> list[Message]:
    turns = [message("user", "Weather and time in Paris?"), reply]
    if follow_up:
        turns.append(message("user", "Go on."))
    return turns


def check(messages: list[dict[str, Any]], fmt: str) -> None:
    """The API's ordering rules hold, and what no API takes is never sent."""
    if fmt == "openai":
        check_openai_messages(messages)
        for m in messages:
            for call in m.get("tool_calls") or []:
                assert isinstance(json.loads(call["function"]["arguments"]), dict), call
    else:
        check_anthropic_messages(messages)
        for m in messages:
            if isinstance(m["content"], list):
                for block in m["content"]:
                    if block["type"] == "tool_use":
                        assert isinstance(block["input"], dict), block
                    if block["type"] == "thinking":
                        assert block["signature"], block


def kinds(messages: list[dict[str, Any]]) -> list[str]:
    """A compact picture of the turns: role, then block or field kinds."""
    out = []
    for m in messages:
        c = m["content"]
        if isinstance(c, list):
            out.append(m["role"] + ":" + ",".join(b["type"] for b in c))
        else:
            extra = [k for k in ("reasoning_content", "tool_calls") if k in m]
            out.append(m["role"] + (":" + ",".join(extra) if extra else ""))
    return out


# -- cut at every point ---------------------------------------------------------------


@pytest.mark.parametrize("keep_reasoning", [False, True])
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("cut", CUTS, ids=cut_name)
def test_an_answer_cut_at_any_point_is_accepted(
    cut: int, fmt: HistoryFormat, policy: CutToolCalls, keep_reasoning: bool
) -> None:
    reply = answer(ANSWER[:cut])
    for follow_up in (True, False):
        sent = for_model(
            conversation(reply, follow_up), format=fmt, cut_tool_calls=policy,
            keep_reasoning=keep_reasoning,
        )  # fmt: skip
        if not follow_up and sent[-1]["role"] == "assistant" and fmt == "anthropic":
            continue  # a last assistant turn is a prefill: see the recovery tests
        check(sent, fmt)
        flat = json.dumps(sent)
        # The reasoning of a cut answer goes back only when asked for, and never alone.
        assert ("The user wants" in flat) == (keep_reasoning and cut > FIRST_TEXT)
        if policy == "drop":
            assert CUT_CALL_ERROR not in flat and NO_RESULT_ERROR not in flat
        if cut <= FIRST_TEXT:  # nothing but reasoning: the answer is left out
            assert [m["role"] for m in sent] == ["user"] * (len(sent))


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_cuts_cover_every_kind_of_point(fmt: HistoryFormat) -> None:
    """Inside reasoning, after it, inside call 1's arguments, between the calls,
    before the results, after one result, inside the final text."""
    shapes = {}
    for n in CUTS:
        for policy in POLICIES:
            sent = for_model(conversation(answer(ANSWER[:n])), format=fmt, cut_tool_calls=policy)
            shapes[n, policy] = kinds(sent)
    inside_args, between, after_one, inside_final = 6, 7, 9, 11
    assert ANSWER[inside_args - 1][0] == "call" and ANSWER[inside_args][0] == "args"
    assert ANSWER[after_one - 1][0] == "result" and ANSWER[after_one][0] == "result"
    if fmt == "openai":
        assert shapes[inside_args, "drop"] == ["user", "assistant", "user"]
        assert shapes[inside_args, "error"] == [
            "user", "assistant:tool_calls", "tool", "user",
        ]  # fmt: skip
        assert shapes[between, "drop"] == ["user", "assistant", "user"]
        assert shapes[after_one, "drop"] == ["user", "assistant:tool_calls", "tool", "user"]
        assert shapes[after_one, "error"] == [
            "user", "assistant:tool_calls", "tool", "tool", "user",
        ]  # fmt: skip
        assert shapes[inside_final, "drop"] == [
            "user", "assistant:tool_calls", "tool", "tool", "assistant", "user",
        ]  # fmt: skip
    else:
        assert shapes[inside_args, "drop"] == ["user", "assistant", "user"]
        assert shapes[inside_args, "error"] == [
            "user", "assistant:text,tool_use", "user:tool_result,text",
        ]  # fmt: skip
        assert shapes[after_one, "error"] == [
            "user", "assistant:text,tool_use,tool_use", "user:tool_result,tool_result,text",
        ]  # fmt: skip
        assert shapes[inside_final, "drop"] == [
            "user", "assistant:text,tool_use,tool_use", "user:tool_result,tool_result",
            "assistant", "user",
        ]  # fmt: skip


@pytest.mark.parametrize("keep_reasoning", [False, True])
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_the_finished_answer(
    fmt: HistoryFormat, policy: CutToolCalls, keep_reasoning: bool
) -> None:
    sent = for_model(
        conversation(answer(ANSWER, state="complete")), format=fmt,
        cut_tool_calls=policy, keep_reasoning=keep_reasoning,
    )  # fmt: skip
    check(sent, fmt)
    flat = json.dumps(sent)
    assert CUT_CALL_ERROR not in flat and NO_RESULT_ERROR not in flat
    assert ("The user wants" in flat) == (keep_reasoning or fmt == "anthropic")


# -- the exact shapes ----------------------------------------------------------------


def test_openai_shape_of_two_calls_with_results_then_text() -> None:
    sent = for_model(conversation(answer(ANSWER, state="complete")))
    assert sent == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": "Let me check both.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                },
            ],
        },  # fmt: skip
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
        {"role": "assistant", "content": "It is sunny at noon."},
        {"role": "user", "content": "Go on."},
    ]
    kept = for_model(conversation(answer(ANSWER, state="complete")), keep_reasoning=True)
    assert kept[1]["reasoning_content"] == "The user wants the weather and the time.\nTwo tools."
    assert "reasoning_content" not in kept[4]


def test_anthropic_shape_of_two_calls_with_results_then_text() -> None:
    sent = for_model(conversation(answer(ANSWER, state="complete")), format="anthropic")
    assert sent == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "thinking",
                    "signature": "sig-1",
                    "thinking": "The user wants the weather and the time.\nTwo tools.",
                },
                {"type": "text", "text": "Let me check both."},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {"tz": "CET"}},
            ],
        },  # fmt: skip
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_1",
                    "content": "sunny, 21 C",
                    "is_error": False,
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2",
                    "content": "12:00",
                    "is_error": False,
                },
            ],
        },  # fmt: skip
        {"role": "assistant", "content": "It is sunny at noon."},
        {"role": "user", "content": "Go on."},
    ]


def test_a_cut_inside_the_arguments_closed_by_an_error() -> None:
    reply = answer(ANSWER[:6])  # reasoning, text, and half of call 1's arguments
    assert for_model(conversation(reply)) == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": "Let me check both."},
        {"role": "user", "content": "Go on."},
    ]
    assert for_model(conversation(reply), format="anthropic", cut_tool_calls="error") == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check both."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_1",
                    "content": CUT_CALL_ERROR,
                    "is_error": True,
                },
                {"type": "text", "text": "Go on."},
            ],
        },  # fmt: skip
    ]
    sent = for_model(conversation(answer(ANSWER[:8])), cut_tool_calls="error")
    assert sent[1]["tool_calls"][1]["function"] == {
        "name": "get_time",
        "arguments": '{"tz": "CET"}',
    }
    assert sent[2:4] == [
        {"role": "tool", "tool_call_id": "call_1", "content": NO_RESULT_ERROR},
        {"role": "tool", "tool_call_id": "call_2", "content": NO_RESULT_ERROR},
    ]


# -- more shapes -----------------------------------------------------------------------


def test_reasoning_then_text() -> None:
    parts = [
        {"i": 0, "type": "reasoning", "text": "hmm", "signature": "s"},
        {"i": 1, "type": "text", "start": 0},
    ]
    done = conversation(message("assistant", "Hello.", parts))
    assert for_model(done)[1] == {"role": "assistant", "content": "Hello."}
    assert for_model(done, keep_reasoning=True)[1] == {
        "role": "assistant", "content": "Hello.", "reasoning_content": "hmm",
    }  # fmt: skip
    assert for_model(done, format="anthropic")[1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Hello."},
        ],
    }
    cut = conversation(message("assistant", "Hel", parts, state="interrupted"))
    for fmt in FORMATS:
        assert for_model(cut, format=fmt)[1] == {"role": "assistant", "content": "Hel"}
    assert for_model(cut, format="anthropic", keep_reasoning=True)[1]["content"][0] == {
        "type": "thinking", "thinking": "hmm", "signature": "s",
    }  # fmt: skip


def test_reasoning_without_signature_and_redacted_thinking() -> None:
    parts = [
        {"i": 0, "type": "reasoning", "text": "unsigned"},
        {"i": 1, "type": "reasoning", "text": "", "redacted": "opaque"},
        {"i": 2, "type": "text", "start": 0},
    ]
    done = conversation(message("assistant", "Hi.", parts))
    anthropic = for_model(done, format="anthropic", keep_reasoning=True)
    assert anthropic[1]["content"] == [
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Hi."},
    ]
    check(anthropic, "anthropic")
    openai = for_model(done, keep_reasoning=True)
    assert openai[1] == {"role": "assistant", "content": "Hi.", "reasoning_content": "unsigned"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_orphans_duplicates_and_unknown_parts(fmt: HistoryFormat) -> None:
    parts = [
        {"i": 0, "type": "tool_result", "tool_call_id": "late", "content": "before its call"},
        {"i": 1, "type": "tool_call", "id": "late", "name": "f", "arguments": "{}"},
        {"i": 2, "type": "tool_call", "id": "ok", "name": "g", "arguments": '{"x": 1}'},
        {"i": 3, "type": "tool_result", "tool_call_id": "ok", "content": "1"},
        {"i": 4, "type": "tool_result", "tool_call_id": "ok", "content": "again"},
        {"i": 5, "type": "tool_result", "tool_call_id": "nobody", "content": "orphan"},
        {"i": 6, "type": "citation", "url": "https://example.com"},
        {"i": 7, "type": "text", "start": 0},
    ]
    for policy in POLICIES:
        sent = for_model(
            conversation(message("assistant", "Done.", parts)),
            format=fmt,
            cut_tool_calls=policy,
        )
        check(sent, fmt)
        flat = json.dumps(sent)
        for absent in ("before its call", "again", "orphan", "example.com"):
            assert absent not in flat
        assert ('"late"' in flat) == (policy == "error")


@pytest.mark.parametrize("fmt", FORMATS)
def test_interleaved_calls_and_text(fmt: HistoryFormat) -> None:
    parts = [
        {"i": 0, "type": "text", "start": 0},
        {"i": 1, "type": "tool_call", "id": "a", "name": "f", "arguments": "{}"},
        {"i": 2, "type": "tool_result", "tool_call_id": "a", "content": "A", "is_error": True},
        {"i": 3, "type": "text", "start": 6},
        {"i": 4, "type": "tool_call", "id": "b", "name": "f", "arguments": "{}"},
        {"i": 5, "type": "tool_result", "tool_call_id": "b", "content": "B"},
        {"i": 6, "type": "text", "start": 12},
    ]
    sent = for_model(conversation(message("assistant", "first second third", parts)), format=fmt)
    check(sent, fmt)
    if fmt == "openai":
        assert kinds(sent) == [
            "user", "assistant:tool_calls", "tool", "assistant:tool_calls", "tool", "assistant",
            "user",
        ]  # fmt: skip
        assert [m["content"] for m in sent[1:6]] == ["first ", "A", "second", "B", " third"]
    else:
        assert kinds(sent) == [
            "user", "assistant:text,tool_use", "user:tool_result", "assistant:text,tool_use",
            "user:tool_result", "assistant", "user",
        ]  # fmt: skip
        assert sent[2]["content"][0]["is_error"] is True


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_answer_left_with_nothing_is_left_out(fmt: HistoryFormat) -> None:
    parts = [
        {"i": 0, "type": "reasoning", "text": "thinking..."},
        {"i": 1, "type": "tool_call", "id": "c", "name": "f", "arguments": '{"a": '},
    ]
    history = conversation(message("assistant", "", parts, state="interrupted"))
    assert for_model(history, format=fmt) == (
        [{"role": "user", "content": "Weather and time in Paris?"}, {"role": "user", "content": "Go on."}]
        if fmt == "openai"
        else [{"role": "user", "content": [
            {"type": "text", "text": "Weather and time in Paris?"},
            {"type": "text", "text": "Go on."},
        ]}]
    )  # fmt: skip


def test_ids_anthropic_refuses_are_rewritten_alike_in_call_and_result() -> None:
    parts = [
        {"i": 0, "type": "tool_call", "id": "functions.f:0", "name": "f", "arguments": "{}"},
        {"i": 1, "type": "tool_result", "tool_call_id": "functions.f:0", "content": "r"},
    ]
    sent = for_model(conversation(message("assistant", "", parts)), format="anthropic")
    check(sent, "anthropic")
    assert sent[1]["content"][0]["id"] == sent[2]["content"][0]["tool_use_id"] == "functions_f_0"
    assert for_model(conversation(message("assistant", "", parts)))[1]["tool_calls"][0]["id"] == (
        "functions.f:0"
    )


# -- text only: exactly as before ---------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_text_only_histories_are_unchanged(fmt: HistoryFormat) -> None:
    history = [
        message("system", "Be brief."),
        message("user", "q1"),
        message("assistant", "a1"),
        message("user", "q2"),
        message("assistant", "cut sh", state="interrupted", id="cut"),
        message("user", "q3"),
        message("assistant", "", state="interrupted"),
        message("user", "q4"),
        message("assistant", "", id="empty-but-complete"),
        message("user", "q5"),
        message("assistant", "still writing", state="live"),
    ]
    for interrupted in ("keep", "drop"):
        for before in (None, "cut"):
            old = text_for_model(history, interrupted, before)
            new = for_model(history, interrupted, before, format=fmt)
            # The same turns (for Anthropic, user turns that meet are one).
            assert new == (old if fmt == "openai" else merge_user_turns(old))
            assert all(isinstance(m["content"], str) for m in new if m["role"] != "user")


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="format"):
        for_model([], format="gemini")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cut_tool_calls"):
        for_model([], cut_tool_calls="keep")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interrupted"):
        for_model([], "sometimes")  # type: ignore[arg-type]
