"""Streaming any source (a provider, an SDK stream, plain strings) into a draft."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .._schema import MODEL_LENGTH, REASON_LENGTH
from ._adapters import to_chunks
from ._chunks import Chunk, Finish, ModelName, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from ._errors import ProviderError

log = logging.getLogger("chatpersist")

if TYPE_CHECKING:
    from .._draft import _DraftBase
    from .._message import Message
    from .._store import ChatStore


def feed(draft: _DraftBase, item: Any) -> str:
    """Record one item of a stream on `draft`; returns the answer text it carried.

    Reasoning and tool calls are recorded as parts of the answer (reasoning is not
    answer text: it is not returned). A fact the database cannot hold (an odd
    provider's 300-character model name, a token count past 2**31) is clipped or left
    out, never allowed to break the stream.
    """
    return _feed_chunks(draft, to_chunks(item))


def _feed_chunks(draft: _DraftBase, chunks: list[Chunk]) -> str:
    text = ""
    for chunk in chunks:
        if isinstance(chunk, TextDelta):
            draft.append(chunk.text)
            text += chunk.text
        elif isinstance(chunk, ReasoningDelta):
            draft.append_reasoning(chunk.text, signature=chunk.signature, redacted=chunk.redacted)
        elif isinstance(chunk, ToolCallDelta):
            # The id and name come with a call's first piece; later pieces are
            # matched to it by the id when they repeat it, else by the stream index.
            try:
                draft.append_tool_call(chunk.id, chunk.name, chunk.arguments, index=chunk.index)
            except ValueError:
                if chunk.id is not None:
                    raise
                # A server that never names the call: it gets an id of its own.
                draft.append_tool_call(
                    f"call_{chunk.index}", chunk.name, chunk.arguments, index=chunk.index
                )
        elif isinstance(chunk, Finish):
            draft.finish_reason = None if chunk.reason is None else chunk.reason[:REASON_LENGTH]
        elif isinstance(chunk, ModelName):
            draft.set_model(chunk.name[:MODEL_LENGTH])
        elif isinstance(chunk, Usage):
            try:
                draft.set_usage(chunk.input_tokens, chunk.output_tokens)
            except ValueError as exc:
                log.warning("chatpersist: usage left out: %s", exc)
    return text


def _record(
    draft: _DraftBase,
    item: Any,
    on_text: Callable[[str], object] | None,
    on_chunk: Callable[[Chunk], object] | None,
) -> None:
    chunks = to_chunks(item)
    text = _feed_chunks(draft, chunks)
    if text and on_text is not None:
        on_text(text)
    if on_chunk is not None:
        for chunk in chunks:
            on_chunk(chunk)


@contextmanager
def _provider_failure(draft: _DraftBase) -> Iterator[None]:
    """A provider error keeps the text already streamed; the answer is marked as cut."""
    try:
        yield
    except ProviderError as exc:
        draft.set_error(str(exc))
        draft.stop("provider_error")
        exc.message_id = draft.message_id
        raise


def stream_into(
    store: ChatStore,
    session_id: str,
    source: Iterable[Any],
    *,
    message_id: str | None = None,
    on_text: Callable[[str], object] | None = None,
    on_chunk: Callable[[Chunk], object] | None = None,
) -> Message:
    """Stream `source` (e.g. `provider.stream(messages)`) into a new draft and return
    the stored message. A `ProviderError` ends the draft interrupted
    (finish_reason 'provider_error', partial text kept) and propagates.

    `on_text` gets each piece of answer text as it is recorded; `on_chunk` every chunk
    (reasoning and tool calls included), after it is recorded."""
    with store.draft(session_id, message_id=message_id) as d, _provider_failure(d):
        for item in source:
            _record(d, item, on_text, on_chunk)
            if d.stop_requested:  # a user's Stop, from any worker
                d.stop("stopped")
                _close(source)
                break
    return store.get_message(d.message_id)


async def astream_into(
    store: ChatStore,
    session_id: str,
    source: AsyncIterable[Any] | Iterable[Any],
    *,
    message_id: str | None = None,
    on_text: Callable[[str], object] | None = None,
    on_chunk: Callable[[Chunk], object] | None = None,
) -> Message:
    """The asyncio twin of `stream_into` (for `provider.astream(messages)`)."""
    async with store.draft_async(session_id, message_id=message_id) as d:
        with _provider_failure(d):
            async for item in _aiter(source):
                _record(d, item, on_text, on_chunk)
                if d.stop_requested:  # a user's Stop, from any worker
                    d.stop("stopped")
                    await _aclose(source)
                    break
    return await store.aget_message(d.message_id)


def _close(source: object) -> None:
    """Stop a generator (a provider's stream closes its connection: generation stops)."""
    close = getattr(source, "close", None)
    if callable(close):
        close()


async def _aclose(source: object) -> None:
    close = getattr(source, "aclose", None) or getattr(source, "close", None)
    if callable(close):
        result = close()
        if hasattr(result, "__await__"):
            await result


async def _aiter(source: AsyncIterable[Any] | Iterable[Any]) -> AsyncGenerator[Any, None]:
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item
