"""Turning one provider event (a parsed SSE payload, or an SDK's object of the same
shape) into chunks. Shared by the HTTP clients and the SDK adapters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._chunks import Chunk, Finish, ModelName, ReasoningDelta, TextDelta, ToolCallDelta, Usage
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


def _str(value: Any) -> str | None:
    """A non-empty string, or None."""
    return value if isinstance(value, str) and value else None


def openai_tool_calls(calls: Any) -> list[Chunk]:
    """`delta.tool_calls` (OpenAI's shape): `id` and `function.name` come with a call's
    first delta, `function.arguments` fragments with the next ones. A call without an
    `index` (some compatible servers leave it out) is named by its place in the list."""
    out: list[Chunk] = []
    if not isinstance(calls, list | tuple):
        return out
    for position, call in enumerate(calls):
        index = get(call, "index")
        if not isinstance(index, int) or isinstance(index, bool):
            index = position
        function = get(call, "function")
        arguments = get(function, "arguments")
        delta = ToolCallDelta(
            index,
            id=_str(get(call, "id")),
            name=_str(get(function, "name")),
            arguments=arguments if isinstance(arguments, str) else "",
        )
        if delta.id or delta.name or delta.arguments:
            out.append(delta)
    return out


def _thinking_blocks(blocks: Any) -> list[Chunk]:
    """LiteLLM's `delta.thinking_blocks` (Anthropic's thinking through LiteLLM): only
    what `reasoning_content` does not carry, the signature and redacted blocks."""
    out: list[Chunk] = []
    for block in blocks if isinstance(blocks, list | tuple) else ():
        kind = get(block, "type")
        if kind == "thinking" and _str(get(block, "signature")):
            out.append(ReasoningDelta("", signature=get(block, "signature")))
        elif kind == "redacted_thinking" and _str(get(block, "data")):
            out.append(ReasoningDelta("", redacted=get(block, "data")))
    return out


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
        # `reasoning_content` (DeepSeek, llama.cpp, LiteLLM, older vLLM) or `reasoning`
        # (OpenRouter, newer vLLM); a server that sends both repeats itself.
        reasoning = _str(get(delta, "reasoning_content")) or _str(get(delta, "reasoning"))
        if reasoning:
            out.append(ReasoningDelta(reasoning))
        out += _thinking_blocks(get(delta, "thinking_blocks"))
        text = get(delta, "content")
        if isinstance(text, str) and text:
            out.append(TextDelta(text))
        out += openai_tool_calls(get(delta, "tool_calls"))
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
    if kind == "content_block_start":
        return _anthropic_block_start(get(event, "content_block"), get(event, "index"))
    if kind == "content_block_delta":
        delta = get(event, "delta")
        dtype = get(delta, "type")
        if dtype == "text_delta" and get(delta, "text"):
            return [TextDelta(str(get(delta, "text")))]
        if dtype == "thinking_delta" and get(delta, "thinking"):
            return [ReasoningDelta(str(get(delta, "thinking")))]
        if dtype == "signature_delta" and _str(get(delta, "signature")):
            return [ReasoningDelta("", signature=get(delta, "signature"))]
        if dtype == "input_json_delta" and _str(get(delta, "partial_json")):
            index = _int(get(event, "index"))
            return [ToolCallDelta(index or 0, arguments=get(delta, "partial_json"))]
        return []  # citations_delta, and kinds newer than this release
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
    return []  # ping, message_stop, content_block_stop


def _anthropic_block_start(block: Any, index: Any) -> list[Chunk]:
    """A content block's opening: a tool call's id and name, a redacted thinking
    block's data (it comes whole), and whatever a block already holds (in a stream,
    text and thinking start empty and `input` is `{}`)."""
    kind = get(block, "type")
    if kind == "tool_use":
        start = _int(index)
        value = get(block, "input")
        arguments = json.dumps(value) if isinstance(value, Mapping) and value else ""
        return [
            ToolCallDelta(
                start or 0,
                id=_str(get(block, "id")),
                name=_str(get(block, "name")),
                arguments=arguments,
            )
        ]
    if kind == "redacted_thinking" and _str(get(block, "data")):
        return [ReasoningDelta("", redacted=get(block, "data"))]
    if kind == "thinking":
        text, signature = get(block, "thinking"), _str(get(block, "signature"))
        if (isinstance(text, str) and text) or signature:
            return [ReasoningDelta(text if isinstance(text, str) else "", signature=signature)]
        return []
    if kind == "text" and _str(get(block, "text")):
        return [TextDelta(get(block, "text"))]
    return []  # server tools' blocks, and kinds newer than this release
