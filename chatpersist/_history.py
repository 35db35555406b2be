"""The history sent back to a model, in the shape of its API: OpenAI's chat
completions or Anthropic's Messages.

A message of text only is one turn, `{"role": ..., "content": "..."}`, in both shapes.
An answer with parts (reasoning, tool calls, the results of those calls) becomes the
turns its API expects: an assistant turn with its calls, their results (OpenAI: one
`tool` message each; Anthropic: `tool_result` blocks in the next user turn), then a
further assistant turn for what the model wrote after them.

Answers cut short are repaired on the way, so that no API refuses the history: a tool
call whose arguments were cut is never sent as it is, every call sent is closed by a
result, a result without its call is left out, and the reasoning of a cut answer is
left out unless asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ._message import Message
from ._parts import Part, ReasoningPart, TextPart, ToolCallPart, ToolResultPart

HistoryFormat = Literal["openai", "anthropic"]
CutToolCalls = Literal["drop", "error"]

#: The error result that closes a call whose arguments were cut (cut_tool_calls="error").
CUT_CALL_ERROR = "the call was interrupted before its arguments were complete"
#: ... a finished call whose arguments are not a JSON object.
BAD_ARGUMENTS_ERROR = "the call's arguments were not a valid JSON object"
#: ... a call no result was stored for.
NO_RESULT_ERROR = "no result was recorded for this call"

#: What Anthropic accepts as a tool_use id.
_ANTHROPIC_ID = re.compile(r"[^A-Za-z0-9_-]")


def format_of(provider: object) -> HistoryFormat:
    """The shape of history `provider` takes: its `history_format`, else OpenAI's."""
    fmt = getattr(provider, "history_format", "openai")
    if fmt not in ("openai", "anthropic"):
        raise ValueError(f"unknown history_format {fmt!r}: 'openai' or 'anthropic'")
    return "anthropic" if fmt == "anthropic" else "openai"


def for_model(
    history: Iterable[Message],
    interrupted: Literal["keep", "drop"] = "keep",
    before: str | int | None = None,
    *,
    format: HistoryFormat = "openai",
    cut_tool_calls: CutToolCalls = "drop",
    keep_reasoning: bool = False,
) -> list[dict[str, Any]]:
    """The turns to send a model, in the shape of `format`'s API.

    Live drafts are left out, interrupted ones kept or dropped by `interrupted` (never
    empty ones); with `before`, only what precedes that message id. A tool call that
    cannot be sent as stored (cut short, or with no result) is left out with
    `cut_tool_calls="drop"`; with `"error"` it is sent, closed by an error result.
    Reasoning: Anthropic's thinking blocks of finished answers go back (those with a
    signature: the API refuses the others); the rest only with `keep_reasoning`, which
    also keeps the reasoning of cut answers and sends OpenAI's shape reasoning as
    `reasoning_content` (which servers such as DeepSeek's or vLLM take; OpenAI does not).
    """
    if interrupted not in ("keep", "drop"):
        raise ValueError("interrupted must be 'keep' or 'drop'")
    if format not in ("openai", "anthropic"):
        raise ValueError("format must be 'openai' or 'anthropic'")
    if cut_tool_calls not in ("drop", "error"):
        raise ValueError("cut_tool_calls must be 'drop' or 'error'")
    out: list[dict[str, Any]] = []
    for m in history:
        if str(m.id) == str(before):
            break
        if m.live or (m.interrupted and interrupted == "drop"):
            continue
        out.extend(message_turns(m, format, cut_tool_calls, keep_reasoning))
    return merge_user_turns(out) if format == "anthropic" else out


def message_turns(
    m: Message,
    format: HistoryFormat = "openai",
    cut_tool_calls: CutToolCalls = "drop",
    keep_reasoning: bool = False,
) -> list[dict[str, Any]]:
    """The turns one message becomes (none for a message left with nothing to send)."""
    if m.role != "assistant" or all(isinstance(p, TextPart) for p in m.parts):
        if m.interrupted and not m.content:
            return []
        return [{"role": m.role, "content": m.content}]
    reasoning = keep_reasoning or (format == "anthropic" and not m.interrupted)
    calls, results = _plan_calls(m, cut_tool_calls, format)
    turns = _turns(m.parts, calls, results, format, reasoning)
    render = _openai_turn if format == "openai" else _anthropic_turn
    return [msg for turn in turns for msg in render(turn)]


def merge_user_turns(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Anthropic's turns with consecutive user turns joined into one (a user message
    after tool results: its text after the `tool_result` blocks), so that roles
    alternate."""
    out: list[dict[str, Any]] = []
    for turn in turns:
        prev = out[-1] if out else None
        if prev is not None and prev.get("role") == "user" and turn.get("role") == "user":
            blocks = [*_blocks(prev.get("content")), *_blocks(turn.get("content"))]
            # The API wants the tool results first in their turn.
            blocks.sort(key=lambda b: b.get("type") != "tool_result")
            if blocks:
                out[-1] = {**prev, "content": blocks}
        else:
            out.append(turn)
    return out


# -- tool calls and their results ---------------------------------------------------


@dataclass
class _Call:
    id: str
    name: str
    arguments: str
    input: dict[str, Any]
    result: ToolResultPart | None = None
    #: The error result that closes it when there is no usable result.
    error: str | None = None

    @property
    def closed(self) -> bool:
        return self.result is not None or self.error is not None


def _plan_calls(
    m: Message, policy: CutToolCalls, fmt: HistoryFormat
) -> tuple[dict[int, _Call], dict[int, _Call]]:
    """The calls that are sent (by part index), and the results that close them (by
    part index): each call with its first result after it."""
    calls: dict[int, _Call] = {}
    open_calls: dict[str, _Call] = {}
    results: dict[int, _Call] = {}
    seen: set[str] = set()
    for k, p in enumerate(m.parts):
        if isinstance(p, ToolCallPart):
            if not p.name or (p.id and p.id in seen):
                continue  # nothing to call, or a second call under the same id
            seen.add(p.id)
            parsed = p.input
            call_id = _ANTHROPIC_ID.sub("_", p.id) if fmt == "anthropic" else p.id
            if p.complete and isinstance(parsed, dict) and call_id:
                calls[k] = open_calls[p.id] = _Call(call_id, p.name, p.arguments, parsed)
            elif policy == "error":
                why = BAD_ARGUMENTS_ERROR if p.complete and call_id else CUT_CALL_ERROR
                made_up = _ANTHROPIC_ID.sub("_", f"call_{m.id}_{k}")
                calls[k] = _Call(call_id or made_up, p.name, "{}", {}, error=why)
        elif isinstance(p, ToolResultPart):
            call = open_calls.pop(p.tool_call_id, None)
            if call is not None:
                call.result = p
                results[k] = call
    for k, call in list(calls.items()):
        if not call.closed:
            if policy == "error":
                call.error = NO_RESULT_ERROR
            else:
                del calls[k]
    return calls, results


# -- turns ---------------------------------------------------------------------------


@dataclass
class _Turn:
    #: ("text", str), ("reasoning", ReasoningPart) or ("call", _Call), in order.
    items: list[tuple[str, Any]] = field(default_factory=list)
    calls: list[_Call] = field(default_factory=list)
    #: A result of one of its calls came: what follows is a new turn.
    answered: bool = False


def _turns(
    parts: Iterable[Part],
    calls: dict[int, _Call],
    results: dict[int, _Call],
    fmt: HistoryFormat,
    reasoning: bool,
) -> list[_Turn]:
    turns = [_Turn()]
    owner: dict[int, _Turn] = {}
    for k, p in enumerate(parts):
        item: tuple[str, Any] | None = None
        if isinstance(p, TextPart) and p.text:
            item = ("text", p.text)
        elif isinstance(p, ReasoningPart) and reasoning and _sendable(p, fmt):
            item = ("reasoning", p)
        elif isinstance(p, ToolCallPart) and k in calls:
            item = ("call", calls[k])
        elif isinstance(p, ToolResultPart) and k in results:
            owner[id(results[k])].answered = True
        if item is None:
            continue
        turn = turns[-1]
        if turn.answered:
            turn = _Turn()
            turns.append(turn)
        if item[0] == "text" and turn.items and turn.items[-1][0] == "text":
            turn.items[-1] = ("text", turn.items[-1][1] + item[1])
        else:
            turn.items.append(item)
        if item[0] == "call":
            turn.calls.append(item[1])
            owner[id(item[1])] = turn
    return turns


def _sendable(p: ReasoningPart, fmt: HistoryFormat) -> bool:
    if fmt == "openai":
        return bool(p.text)
    return p.redacted is not None or p.signature is not None


def _text(turn: _Turn) -> str:
    return "".join(value for kind, value in turn.items if kind == "text")


def _openai_turn(turn: _Turn) -> list[dict[str, Any]]:
    text = _text(turn)
    if not text and not turn.calls:
        return []  # reasoning alone is no answer
    msg: dict[str, Any] = {"role": "assistant", "content": text or None}
    reasoning = "".join(v.text for kind, v in turn.items if kind == "reasoning")
    if reasoning:
        msg["reasoning_content"] = reasoning
    if turn.calls:
        msg["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in turn.calls
        ]
    out = [msg]
    for c in turn.calls:
        content = c.result.content if c.result is not None else c.error
        out.append({"role": "tool", "tool_call_id": c.id, "content": content})
    return out


def _anthropic_turn(turn: _Turn) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for kind, value in turn.items:
        if kind == "text" and value.strip():  # the API refuses blank text blocks
            blocks.append({"type": "text", "text": value})
        elif kind == "reasoning" and value.redacted is not None:
            blocks.append({"type": "redacted_thinking", "data": value.redacted})
        elif kind == "reasoning":
            blocks.append(
                {"type": "thinking", "thinking": value.text, "signature": value.signature}
            )
        elif kind == "call":
            blocks.append(
                {"type": "tool_use", "id": value.id, "name": value.name, "input": value.input}
            )
    if not any(b["type"] in ("text", "tool_use") for b in blocks):
        return []  # reasoning alone is no answer
    if all(b["type"] == "text" for b in blocks):
        return [{"role": "assistant", "content": _text(turn)}]
    out: list[dict[str, Any]] = [{"role": "assistant", "content": blocks}]
    if turn.calls:
        out.append({"role": "user", "content": [_tool_result(c) for c in turn.calls]})
    return out


def _tool_result(c: _Call) -> dict[str, Any]:
    if c.result is not None:
        content, is_error = c.result.content, c.result.is_error
    else:
        content, is_error = c.error or "", True
    return {"type": "tool_result", "tool_use_id": c.id, "content": content, "is_error": is_error}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return list(content)
    text = "" if content is None else str(content)
    return [{"type": "text", "text": text}] if text.strip() else []
