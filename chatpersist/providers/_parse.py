"""Turning one provider event (a parsed SSE payload, or an SDK's object of the same
shape) into chunks. Shared by the HTTP clients and the SDK adapters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._chunks import Chunk, Finish, ModelName, ReasoningDelta, TextDelta, Usage
from ._errors import ProviderError


def get(obj: Any, key: str) -> Any:
    """`obj[key]` for dicts, `obj.key` for SDK objects; None when absent."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


class StreamState:
    """What the parser of one HTTP stream remembers between events."""

    def __init__(self) -> None:
        #: The stream's end marker was seen ([DONE], message_stop).
        self.done = False
        #: A finish reason was seen: the connection closing after it is a normal end.
        self.finished = False
        self._model: str | None = None

    def note(self, chunks: list[Chunk]) -> list[Chunk]:
        """Notes a finish, and drops a model name already reported (OpenAI-style
        servers repeat it on every event)."""
        out: list[Chunk] = []
        for chunk in chunks:
            if isinstance(chunk, ModelName):
                if chunk.name == self._model:
                    continue
                self._model = chunk.name
            elif isinstance(chunk, Finish):
                self.finished = True
            out.append(chunk)
        return out


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def openai_chunks(payload: Any) -> list[Chunk]:
    """An OpenAI chat-completion chunk (also LiteLLM's and most compatible servers')."""
    error = get(payload, "error")
    if error:
        message = get(error, "message") or str(error)
        kind = str(get(error, "type") or get(error, "code") or "")
        raise ProviderError(
            f"provider error mid-stream: {message}",
            retryable=any(k in kind for k in ("overloaded", "server_error", "rate_limit")),
        )
    out: list[Chunk] = []
    model = get(payload, "model")
    if isinstance(model, str) and model:
        out.append(ModelName(model))
    choices = get(payload, "choices") or []
    if choices:
        choice = choices[0]
        delta = get(choice, "delta") or {}
        reasoning = get(delta, "reasoning_content") or get(delta, "reasoning")
        if isinstance(reasoning, str) and reasoning:
            out.append(ReasoningDelta(reasoning))
        text = get(delta, "content")
        if isinstance(text, str) and text:
            out.append(TextDelta(text))
        reason = get(choice, "finish_reason")
        if reason:
            out.append(Finish(str(reason)))
    usage = get(payload, "usage")
    if usage:
        out.append(Usage(_int(get(usage, "prompt_tokens")), _int(get(usage, "completion_tokens"))))
    return out


def anthropic_chunks(event: Any, kind: str | None = None) -> list[Chunk]:
    """An Anthropic Messages stream event (raw JSON or the SDK's event object)."""
    kind = kind or get(event, "type")
    if kind == "message_start":
        message = get(event, "message")
        out: list[Chunk] = []
        if get(message, "model"):
            out.append(ModelName(str(get(message, "model"))))
        usage = get(message, "usage")
        if usage is not None:
            out.append(Usage(input_tokens=_int(get(usage, "input_tokens"))))
        return out
    if kind == "content_block_delta":
        delta = get(event, "delta")
        dtype = get(delta, "type")
        if dtype == "text_delta" and get(delta, "text"):
            return [TextDelta(str(get(delta, "text")))]
        if dtype == "thinking_delta" and get(delta, "thinking"):
            return [ReasoningDelta(str(get(delta, "thinking")))]
        return []
    if kind == "message_delta":
        out = []
        reason = get(get(event, "delta"), "stop_reason")
        if reason:
            out.append(Finish(str(reason)))
        usage = get(event, "usage")
        if usage is not None and get(usage, "output_tokens") is not None:
            out.append(Usage(output_tokens=_int(get(usage, "output_tokens"))))
        return out
    if kind == "error":
        error = get(event, "error")
        etype = str(get(error, "type") or "error")
        raise ProviderError(
            f"provider error mid-stream: {etype}: {get(error, 'message') or ''}".rstrip(": "),
            retryable=etype in ("overloaded_error", "api_error", "rate_limit_error"),
        )
    return []  # ping, message_stop, content_block_start/stop
