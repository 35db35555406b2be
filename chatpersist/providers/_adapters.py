"""Duck-typed adapters: the chunks of any SDK stream, without depending on the SDK."""

from __future__ import annotations

from typing import Any

from ._chunks import Chunk, Finish, ModelName, ReasoningDelta, TextDelta, Usage
from ._parse import anthropic_chunks, get, openai_chunks

_OURS = (TextDelta, ReasoningDelta, Finish, Usage, ModelName)
_ANTHROPIC_EVENTS = {
    "message_start", "content_block_start", "content_block_delta", "content_block_stop",
    "message_delta", "message_stop", "ping", "error",
}  # fmt: skip


def to_chunks(obj: Any) -> list[Chunk]:
    """Chunks from a `str`, our own chunk, an OpenAI SDK `ChatCompletionChunk` (or its
    dict), a LiteLLM chunk, an Anthropic SDK stream event, or a LangChain
    `AIMessageChunk`. Anything else is a `TypeError` naming its type."""
    if isinstance(obj, str):
        return [TextDelta(obj)] if obj else []
    if isinstance(obj, _OURS):
        return [obj]
    if get(obj, "choices") is not None or get(obj, "object") == "chat.completion.chunk":
        return openai_chunks(obj)
    if get(obj, "type") in _ANTHROPIC_EVENTS:
        return anthropic_chunks(obj)
    if hasattr(obj, "content") and (
        hasattr(obj, "response_metadata") or hasattr(obj, "usage_metadata")
    ):
        return _langchain_chunks(obj)
    raise TypeError(
        f"cannot read a stream chunk of type {type(obj).__module__}.{type(obj).__name__}"
    )


def _langchain_chunks(obj: Any) -> list[Chunk]:
    out: list[Chunk] = []
    content = obj.content
    if isinstance(content, str):
        if content:
            out.append(TextDelta(content))
    else:  # a list of content blocks
        for block in content or []:
            if isinstance(block, str):
                out.append(TextDelta(block))
            elif get(block, "type") == "text" and get(block, "text"):
                out.append(TextDelta(str(get(block, "text"))))
            elif get(block, "type") in ("thinking", "reasoning"):
                text = get(block, "thinking") or get(block, "reasoning")
                if text:
                    out.append(ReasoningDelta(str(text)))
    meta = getattr(obj, "response_metadata", None) or {}
    model = get(meta, "model_name") or get(meta, "model")
    if model:
        out.append(ModelName(str(model)))
    reason = get(meta, "finish_reason") or get(meta, "stop_reason")
    if reason:
        out.append(Finish(str(reason)))
    usage = getattr(obj, "usage_metadata", None)
    if usage:
        # LangChain's chunks add up: a 0 means "counted in another chunk" (e.g. the
        # input tokens on Anthropic's last chunk), not a count to record.
        tokens = (get(usage, "input_tokens") or None, get(usage, "output_tokens") or None)
        if tokens != (None, None):
            out.append(Usage(*tokens))
    return out
