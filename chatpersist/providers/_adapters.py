"""Duck-typed adapters: the chunks of any SDK stream, without depending on the SDK."""

from __future__ import annotations

from typing import Any

from ._chunks import Chunk, Finish, ModelName, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from ._parse import anthropic_chunks, get, openai_chunks

_OURS = (TextDelta, ReasoningDelta, ToolCallDelta, Finish, Usage, ModelName)
_ANTHROPIC_EVENTS = {
    "message_start", "content_block_start", "content_block_delta", "content_block_stop",
    "message_delta", "message_stop", "ping", "error",
}  # fmt: skip


def to_chunks(obj: Any) -> list[Chunk]:
    """Chunks from a `str`, our own chunk, an OpenAI SDK `ChatCompletionChunk` (or its
    dict), a LiteLLM chunk, an Anthropic SDK stream event, or a LangChain
    `AIMessageChunk`: text, reasoning (with Anthropic's signatures and redacted
    blocks), tool-call pieces, finish reason, usage and model name. Anything else is a
    `TypeError` naming its type."""
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
            out += _langchain_block(block)
    if not any(isinstance(c, ReasoningDelta) for c in out):
        # DeepSeek, Ollama, Groq, xAI... through LangChain: reasoning beside the content.
        kwargs = getattr(obj, "additional_kwargs", None) or {}
        reasoning = get(kwargs, "reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            out.insert(0, ReasoningDelta(reasoning))
    # Tool calls are read from `tool_call_chunks` only: the content blocks that say
    # the same (Anthropic's tool_use and input_json_delta, v1's tool_call_chunk) are
    # skipped above.
    for position, call in enumerate(getattr(obj, "tool_call_chunks", None) or []):
        index = get(call, "index")
        args = get(call, "args")
        delta = ToolCallDelta(
            index if isinstance(index, int) and not isinstance(index, bool) else position,
            id=get(call, "id") or None,
            name=get(call, "name") or None,
            arguments=args if isinstance(args, str) else "",
        )
        if delta.id or delta.name or delta.arguments:
            out.append(delta)
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


def _langchain_block(block: Any) -> list[Chunk]:
    """One content block of a LangChain message: Anthropic's own blocks (v0) or
    LangChain's standard ones (v1, where a thinking signature sits in `extras`)."""
    if isinstance(block, str):
        return [TextDelta(block)] if block else []
    kind = get(block, "type")
    if kind == "text" and get(block, "text"):
        return [TextDelta(str(get(block, "text")))]
    if kind in ("thinking", "reasoning"):
        text = get(block, "thinking") or get(block, "reasoning") or ""
        signature = get(block, "signature") or get(get(block, "extras"), "signature")
        if text or signature:
            return [ReasoningDelta(str(text), signature=str(signature) if signature else None)]
    if kind == "redacted_thinking" and get(block, "data"):
        return [ReasoningDelta("", redacted=str(get(block, "data")))]
    return []
