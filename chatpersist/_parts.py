"""Structured answers: the parts of a message (text, reasoning, tool calls, tool
results), and how they are stored.

Stored form (the `parts` column, a JSON array): a log of *segments*. Every segment
names its part by index `"i"`; the first segment of a part carries its `"type"`.
Later segments of the same part continue it: their `text`, `arguments` and `content`
are appended, any other field is set. So a flush only appends the segments that are
new (`parts || new` in SQL), never rewriting the document; whole rewrites (a journal
replay, `save_partial`) store one segment per part. The answer's text lives in the
`content` column, as always: a text part is only `{"i": k, "type": "text", "start": n}`,
the character of `content` where it starts, so appending text never touches `parts`.
A message that never had anything but text has no parts stored (NULL).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: Segment fields whose later values are appended to the part's, not set.
APPENDED = ("text", "arguments", "content")
KNOWN = frozenset({"text", "reasoning", "tool_call", "tool_result"})


@dataclass(frozen=True)
class TextPart:
    """Text of the answer (`Message.content` is all text parts joined)."""

    text: str
    type: Literal["text"] = "text"

    def to_dict(self) -> dict[str, Any]:
        """The part as plain JSON-ready values, with its `type`."""
        return {"type": "text", "text": self.text}


@dataclass(frozen=True)
class ReasoningPart:
    """The model's reasoning (not part of the answer). `signature` is what Anthropic
    needs sent back with a thinking block; `redacted` holds a redacted block's data."""

    text: str
    signature: str | None = None
    redacted: str | None = None
    type: Literal["reasoning"] = "reasoning"

    def to_dict(self) -> dict[str, Any]:
        """The part as plain JSON-ready values, with its `type`."""
        out: dict[str, Any] = {"type": "reasoning", "text": self.text}
        if self.signature is not None:
            out["signature"] = self.signature
        if self.redacted is not None:
            out["redacted"] = self.redacted
        return out


@dataclass(frozen=True)
class ToolCallPart:
    """A call of a tool by the model. `arguments` is the JSON text as streamed, which
    may be cut short: `complete` says whether the call was finished."""

    id: str
    name: str
    arguments: str
    complete: bool = True
    type: Literal["tool_call"] = "tool_call"

    @property
    def input(self) -> Any:
        """The arguments parsed (None when they are not valid JSON, e.g. cut short)."""
        try:
            return json.loads(self.arguments) if self.arguments.strip() else {}
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
        """The part as plain JSON-ready values, with its `type`."""
        return {
            "type": "tool_call", "id": self.id, "name": self.name,
            "arguments": self.arguments, "complete": self.complete,
        }  # fmt: skip


@dataclass(frozen=True)
class ToolResultPart:
    """What a tool returned for the call `tool_call_id`."""

    tool_call_id: str
    content: str
    is_error: bool = False
    type: Literal["tool_result"] = "tool_result"

    def to_dict(self) -> dict[str, Any]:
        """The part as plain JSON-ready values, with its `type`."""
        return {
            "type": "tool_result", "tool_call_id": self.tool_call_id,
            "content": self.content, "is_error": self.is_error,
        }  # fmt: skip


@dataclass(frozen=True)
class OtherPart:
    """A part of a type this release does not know (from a newer provider): kept
    as it came, never dropped."""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The part as plain JSON-ready values, with its `type`."""
        return {**self.data, "type": self.type}


Part = TextPart | ReasoningPart | ToolCallPart | ToolResultPart | OtherPart


def merge(segments: Iterable[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """The stored segments folded into one dict per part, by part index in order.
    Segments that are not objects with an integer `i` are skipped (a damaged
    document must not hide the rest)."""
    parts: dict[int, dict[str, Any]] = {}
    pieces: dict[tuple[int, str], list[str]] = {}
    for seg in segments:
        if not isinstance(seg, Mapping):
            continue
        i = seg.get("i")
        if not isinstance(i, int) or isinstance(i, bool):
            continue
        part = parts.setdefault(i, {})
        for key, value in seg.items():
            if key == "i":
                continue
            if key in APPENDED and isinstance(value, str):
                pieces.setdefault((i, key), []).append(value)
            else:
                part[key] = value
    for (i, key), values in pieces.items():
        parts[i][key] = "".join(values)
    return {i: parts[i] for i in sorted(parts)}


def decode(stored: Any) -> list[Any]:
    """The stored column as a list of segments (drivers give a list, or JSON text)."""
    if stored is None:
        return []
    if isinstance(stored, (str, bytes)):
        try:
            stored = json.loads(stored)
        except ValueError:
            return []
    return stored if isinstance(stored, list) else []


def build_parts(stored: Any, content: str, *, complete: bool, offset: int = 0) -> tuple[Part, ...]:
    """A message's parts from its stored column and its text. `offset` says where
    `content` starts in the whole text (a read of only the new text)."""
    merged = list(merge(decode(stored)).values())
    if not merged:
        return (TextPart(content),) if content else ()
    out: list[Part] = []
    starts = [_int(p.get("start")) - offset for p in merged if p.get("type") == "text"]
    # Text before the first text part that says where it starts (an old row, a
    # client's document) comes first.
    first = max(0, min(starts)) if starts else len(content)
    if first > 0:
        out.append(TextPart(content[:first]))
    n_text = 0
    for k, p in enumerate(merged):
        kind = p.get("type")
        if kind == "text":
            start = max(0, starts[n_text])
            end = starts[n_text + 1] if n_text + 1 < len(starts) else len(content)
            n_text += 1
            if content[start : max(start, end)]:
                out.append(TextPart(content[start : max(start, end)]))
        elif kind == "reasoning":
            out.append(
                ReasoningPart(
                    text=_str(p.get("text")),
                    signature=_opt(p.get("signature")),
                    redacted=_opt(p.get("redacted")),
                )
            )
        elif kind == "tool_call":
            args = _str(p.get("arguments"))
            later = k + 1 < len(merged)
            out.append(
                ToolCallPart(
                    id=_str(p.get("id")), name=_str(p.get("name")), arguments=args,
                    # Marked cut when another writer took over: never finished.
                    complete=not p.get("cut") and (complete or later or _is_json(args)),
                )
            )  # fmt: skip
        elif kind == "tool_result":
            out.append(
                ToolResultPart(
                    tool_call_id=_str(p.get("tool_call_id")),
                    content=_str(p.get("content")),
                    is_error=bool(p.get("is_error", False)),
                )
            )
        elif isinstance(kind, str):
            out.append(OtherPart(kind, {k2: v for k2, v in p.items() if k2 != "type"}))
    if not starts and content:
        # Text was never placed among the parts (e.g. a document saved by a client).
        out.append(TextPart(content))
    return tuple(out)


def compact(segments: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One segment per part (what a whole rewrite stores)."""
    return [{"i": i, **p} for i, p in merge(segments).items()]


def encode(segments: list[dict[str, Any]]) -> str:
    """Segments as the JSON text bound to the parts column."""
    return json.dumps(segments, ensure_ascii=False, separators=(",", ":"))


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return bool(text.strip())


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _opt(value: Any) -> str | None:
    return None if value is None else _str(value)


def split(segments: list[dict[str, Any]], budget: int) -> list[str]:
    """Segments as JSON texts of at most about `budget` characters each (a 10 MB tool
    result must fit the server's packet limit): long strings are cut into several
    segments of the same part, which `merge` joins again."""
    step = max(1, budget // 8)  # a character may be escaped into up to 6
    pieces: list[dict[str, Any]] = []
    for seg in segments:
        long = [k for k in APPENDED if isinstance(seg.get(k), str) and len(seg[k]) > step]
        if not long:
            pieces.append(seg)
            continue
        head = {k: v for k, v in seg.items() if k not in long}
        pieces.append(head)
        for k in long:
            value = seg[k]
            pieces += [{"i": seg["i"], k: value[n : n + step]} for n in range(0, len(value), step)]
    out: list[str] = []
    batch: list[dict[str, Any]] = []
    size = 0
    for seg in pieces:
        n = len(encode([seg]))
        if batch and size + n > budget:
            out.append(encode(batch))
            batch, size = [], 0
        batch.append(seg)
        size += n
    if batch:
        out.append(encode(batch))
    return out


TEXT, REASONING, TOOL_CALL = "text", "reasoning", "tool_call"


class PartsLog:
    """The parts of one open draft as a writer keeps them: segments committed, in
    flight and pending, and what the next appended piece continues. Not thread-safe:
    the writer holds its lock around every call."""

    def __init__(self, committed: list[dict[str, Any]], text_len: int) -> None:
        self.committed = committed
        self.pending: list[dict[str, Any]] = []
        merged = merge(committed)
        self.next_i = max(merged, default=-1) + 1
        self.calls = {_str(p.get("id")): i for i, p in merged.items() if p.get("type") == TOOL_CALL}
        self.by_index: dict[int, str] = {}
        last = merged[max(merged)] if merged else None
        # What the next piece continues: text goes on in the same part after a takeover.
        self.open: tuple[str, int] | None = None
        if last is not None and last.get("type") == TEXT:
            self.open = (TEXT, max(merged))
        if committed or not text_len:
            return
        # The first part of another kind: the text so far becomes part 0.
        self.text(0)

    @classmethod
    def resumed(cls, stored: Any, text_len: int) -> PartsLog | None:
        """The log of a draft that takes a stored message over (None: text only).
        A tool call cut inside its arguments is marked cut: it is never completed."""
        committed = decode(stored)
        if not committed:
            return None
        log = cls([s for s in committed if isinstance(s, dict)], text_len)
        merged = merge(log.committed)
        if merged:
            i = max(merged)
            last = merged[i]
            if last.get("type") == TOOL_CALL and not _is_json(_str(last.get("arguments"))):
                log.pending.append({"i": i, "cut": True})
        return log

    def _new(self, kind: str, **fields: Any) -> int:
        i = self.next_i
        self.next_i += 1
        self.pending.append({"i": i, "type": kind, **fields})
        self.open = (kind, i)
        return i

    def _more(self, i: int, **fields: Any) -> None:
        last = self.pending[-1] if self.pending else None
        if last is not None and last["i"] == i and "type" not in fields:
            for k, v in fields.items():
                last[k] = last.get(k, "") + v if k in APPENDED and isinstance(v, str) else v
            return
        self.pending.append({"i": i, **fields})

    def text(self, start: int) -> None:
        """Text goes on at character `start` of the content: a new text part unless
        the last part is text."""
        if self.open is None or self.open[0] != TEXT:
            self._new(TEXT, start=start)

    def reasoning(self, text: str, signature: str | None, redacted: str | None) -> None:
        fields: dict[str, Any] = {}
        if text:
            fields["text"] = text
        if signature is not None:
            fields["signature"] = signature
        if redacted is not None:
            self._new(REASONING, text=text, redacted=redacted)
            self.open = None  # a redacted block is whole
            return
        if self.open is not None and self.open[0] == REASONING:
            self._more(self.open[1], **fields)
        else:
            self._new(
                REASONING, text=text, **({} if signature is None else {"signature": signature})
            )
        if signature is not None:
            self.open = None  # a signature ends a thinking block

    def tool_call(
        self, call_id: str | None, name: str | None, arguments: str, index: int | None
    ) -> None:
        if call_id is None and index is not None:
            call_id = self.by_index.get(index)
        if call_id is None:
            raise ValueError(
                "a tool call needs its id (or the stream index of a call already named)"
            )
        if index is not None:
            self.by_index[index] = call_id
        i = self.calls.get(call_id)
        if i is None:
            self.calls[call_id] = self._new(
                TOOL_CALL, id=call_id, name=name or "", arguments=arguments
            )
            return
        fields: dict[str, Any] = {}
        if arguments:
            fields["arguments"] = arguments
        if name:
            fields["name"] = name
        if fields:
            self._more(i, **fields)
        self.open = (TOOL_CALL, i)

    def tool_result(self, call_id: str, content: str, is_error: bool) -> None:
        self._new("tool_result", tool_call_id=call_id, content=content, is_error=is_error)
        self.open = None

    def other(self, part: Mapping[str, Any]) -> None:
        self._new(str(part["type"]), **{k: v for k, v in part.items() if k not in ("type", "i")})
        self.open = None

    def take(self) -> list[dict[str, Any]]:
        """The pending segments, handed to a write (the caller commits them after)."""
        out, self.pending = self.pending, []
        return out

    def all(self, *more: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Committed segments, then `more` (a write in flight), then pending ones."""
        out = list(self.committed)
        for m in more:
            out += m
        return out + self.pending
