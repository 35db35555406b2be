"""Drafts: what the caller appends to while an answer streams.

`Draft` and `AsyncDraft` differ only in how they open and wait for the final
flush; buffering and every write go through the store's one shared `Writer`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ._errors import DraftNotOpen
from ._message import ends_complete
from ._parts import KNOWN, Part, PartsLog, build_parts
from ._schema import COMPLETE, MAX_INT, REASON_LENGTH, STREAMING
from ._writer import DraftState, Writer


@dataclass(frozen=True)
class DraftOptions:
    """Everything a draft needs, checked by the store that opens it."""

    session_id: str
    message_id: str | None
    role: str
    every_chunks: int
    every_seconds: float
    final_timeout: float | None
    model_length: int
    #: Complete it after a crash with what this names (see `recovery.Recoverer`).
    recover_with: str | None = None


#: Creates (or takes over) the draft's row and registers it with the writer.
Opener = Callable[[DraftOptions], DraftState]


def end_state(
    exc_type: type[BaseException] | None, stop_reason: str | None, finish_reason: str | None
) -> tuple[str, str | None]:
    """How a draft ends: only a normal exit that nobody stopped, with a reason that
    does not say it was cut, is complete."""
    if stop_reason is not None:
        return STREAMING, stop_reason
    if exc_type is None:
        if not ends_complete(finish_reason):
            return STREAMING, finish_reason
        return COMPLETE, finish_reason or "stop"
    if is_disconnect(exc_type):
        return STREAMING, "disconnected"
    # KeyboardInterrupt, GeneratorExit, asyncio cancellation, SystemExit.
    if not issubclass(exc_type, Exception):
        return STREAMING, "cancelled"
    return STREAMING, "error"


# How transports say the client went away; matched by name, so that none of them has to
# be installed: Starlette's WebSocketDisconnect and ClientDisconnect, anyio's closed and
# broken streams (and EndOfStream), websockets' ConnectionClosed, aiohttp's
# ClientConnectionResetError.
_DISCONNECTS = frozenset(
    {
        "WebSocketDisconnect", "ClientDisconnect", "BrokenResourceError",
        "ClosedResourceError", "EndOfStream", "ConnectionClosed", "ConnectionClosedError",
        "ConnectionClosedOK", "ClientConnectionResetError",
    }
)  # fmt: skip


def _describe(exc: BaseException) -> str:
    """An exception as stored in `error`: its type and text, or a websocket's close code
    and reason (`WebSocketDisconnect` has no text of its own)."""
    detail = str(exc) or " ".join(
        str(v) for v in (getattr(exc, "code", None), getattr(exc, "reason", None)) if v
    )
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def is_disconnect(exc_type: type[BaseException]) -> bool:
    """Whether an exception says the client went away (any transport), not a fault."""
    if issubclass(exc_type, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return True
    return any(t.__name__ in _DISCONNECTS for t in exc_type.__mro__)


def _check_str(**values: object) -> None:
    for name, value in values.items():
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a str, not {type(value).__name__}")


class _DraftBase:
    def __init__(self, writer: Writer, opener: Opener, options: DraftOptions) -> None:
        self._writer = writer
        self._opener = opener
        self._options = options
        self._state: DraftState | None = None
        self._stop_reason: str | None = None
        self._ended = False
        self._finish_reason: str | None = None

    @property
    def finish_reason(self) -> str | None:
        """Recorded on a normal end (e.g. "length"); "stop" when left unset."""
        return self._finish_reason

    @finish_reason.setter
    def finish_reason(self, reason: str | None) -> None:
        if reason is not None and (not isinstance(reason, str) or len(reason) > REASON_LENGTH):
            raise ValueError(
                f"finish_reason must be a string of at most {REASON_LENGTH} characters: "
                f"{reason!r:.80}"
            )
        self._finish_reason = reason

    @property
    def superseded(self) -> bool:
        """Another writer took the message over (or completed it): this draft stopped
        writing at its last flush, and its later text is kept in memory only."""
        return self._opened().superseded

    @property
    def stop_requested(self) -> bool:
        """A user asked to stop this answer (`ChatStore.request_stop`, from any worker):
        stop streaming into it; `stream_into` and `chatpersist.asgi` do, ending it
        'stopped'."""
        return self._opened().stop_requested

    @property
    def deleted(self) -> bool:
        """The message (or its session) was deleted: this draft stopped writing it."""
        return self._opened().deleted

    @property
    def message_id(self) -> str:
        return self._opened().message_id

    @property
    def session_id(self) -> str:
        return self._options.session_id

    @property
    def text(self) -> str:
        """All text appended so far, flushed or not."""
        return self._writer.text(self._opened())

    @property
    def seq(self) -> int:
        """Sequence number of the last committed flush."""
        return self._opened().seq

    @property
    def parts(self) -> tuple[Part, ...]:
        """The answer so far in parts (text, reasoning, tool calls and results)."""
        text, segments = self._writer.segments(self._opened())
        return build_parts(segments, text, complete=False)

    def append(self, piece: str) -> None:
        """Buffer a piece of the answer. No I/O: the writer flushes it when due."""
        if not isinstance(piece, str):
            raise TypeError(f"Draft.append() takes str, not {type(piece).__name__}")
        state = self._opened()
        if self._ended:
            raise DraftNotOpen("the draft has ended; open a new one")
        if piece:
            self._writer.add(state, piece)

    def append_reasoning(
        self, text: str = "", *, signature: str | None = None, redacted: str | None = None
    ) -> None:
        """Buffer a piece of the model's reasoning. A `signature` (Anthropic's, which
        must be sent back) ends the block; `redacted` is a redacted block's data."""
        _check_str(text=text, signature=signature, redacted=redacted)
        if text or signature is not None or redacted is not None:
            self._add_part(lambda log: log.reasoning(text, signature, redacted))

    def append_tool_call(
        self,
        call_id: str | None = None,
        name: str | None = None,
        arguments: str = "",
        *,
        index: int | None = None,
    ) -> None:
        """Start a tool call (a new `call_id`), or add the next fragment of its JSON
        `arguments`. `index` is the stream's own number for the call (OpenAI names a
        call by index after its first delta): given with the id once, it stands for it."""
        _check_str(call_id=call_id, name=name, arguments=arguments)
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            raise TypeError(f"index must be an int, not {type(index).__name__}")
        if call_id is None and index is None:
            raise ValueError("a tool call needs its id (or the stream index of a named call)")
        if call_id is not None and not call_id:
            raise ValueError("a tool call's id must not be empty")
        self._add_part(lambda log: log.tool_call(call_id, name, arguments, index))

    def add_tool_result(self, call_id: str, content: str, *, is_error: bool = False) -> None:
        """Record what a tool returned for the call `call_id` (written with the answer)."""
        _check_str(call_id=call_id, content=content)
        if not call_id:
            raise ValueError("a tool result needs the id of its call")
        self._add_part(lambda log: log.tool_result(call_id, content, bool(is_error)))

    def add_part(self, part: Mapping[str, Any]) -> None:
        """Record a part of a type this release does not know (kept as it is): a
        mapping with a string `type` and JSON values."""
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            raise TypeError("a part is a mapping with a string 'type'")
        if part["type"] in KNOWN:
            raise ValueError(
                f"use append(), append_reasoning(), append_tool_call() or add_tool_result() "
                f"for a {part['type']!r} part"
            )
        try:
            copy = json.loads(json.dumps(dict(part)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a part must hold JSON values only: {exc}") from None
        self._add_part(lambda log: log.other(copy))

    def _add_part(self, record: Callable[[PartsLog], None]) -> None:
        state = self._opened()
        if self._ended:
            raise DraftNotOpen("the draft has ended; open a new one")
        self._writer.add_part(state, record)

    def set_model(self, model: str) -> None:
        """Record which model wrote the answer (saved with the next flush).

        A value the column cannot hold raises `ValueError` here, never at flush time."""
        if not isinstance(model, str) or len(model) > self._options.model_length:
            raise ValueError(
                f"model must be a string of at most {self._options.model_length} characters: "
                f"{model!r:.80}"
            )
        self._set_extra("model", model)

    def set_usage(self, input_tokens: int | None = None, output_tokens: int | None = None) -> None:
        """Record token usage (saved with the next flush); counts from 0 to 2**31 - 1."""
        counts = {"input_tokens": input_tokens, "output_tokens": output_tokens}
        for name, n in counts.items():
            if n is not None and (isinstance(n, bool) or not 0 <= int(n) <= MAX_INT):
                raise ValueError(f"{name} must be from 0 to {MAX_INT}: {n!r}")
        for name, n in counts.items():
            if n is not None:
                self._set_extra(name, int(n))

    def set_error(self, message: str) -> None:
        """Record why the answer was cut (e.g. the provider's error message)."""
        self._set_extra("error", str(message)[:2000])

    def _set_extra(self, field: str, value: object) -> None:
        self._writer.set_extra(self._opened(), field, value)

    def stop(self, reason: str = "stopped") -> None:
        """End as interrupted with `reason` even if the block exits normally (a user's Stop)."""
        self._stop_reason = reason

    def _opened(self) -> DraftState:
        if self._state is None:
            raise DraftNotOpen("the draft is not open: use it in a `with` block")
        return self._state

    def _end(
        self, exc_type: type[BaseException] | None, exc: BaseException | None = None
    ) -> DraftState:
        state = self._opened()
        self._ended = True
        status, reason = end_state(exc_type, self._stop_reason, self.finish_reason)
        if exc is not None and isinstance(exc, Exception) and "error" not in state.extras:
            # Why it ended, e.g. "WebSocketDisconnect: 1001" or the app's own error.
            self.set_error(_describe(exc))
        self._writer.finish(state, status, reason)
        return state


class Draft(_DraftBase):
    """`with store.draft(session_id) as d: d.append(piece)`"""

    def __enter__(self) -> Draft:
        self._state = self._opener(self._options)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        state = self._end(exc_type, exc)
        # The same wake-up as the async twin: a callback run once the end is committed.
        done = threading.Event()
        self._writer.on_done(state, done.set)
        done.wait(self._options.final_timeout)
        self._writer.raise_if_lost(state, self._options.final_timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Write what is buffered now and wait until it is committed."""
        self._writer.flush_now(self._opened(), timeout)


class AsyncDraft(_DraftBase):
    """`async with store.draft_async(session_id) as d: d.append(piece)`"""

    async def __aenter__(self) -> AsyncDraft:
        self._state = await asyncio.to_thread(self._opener, self._options)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        state = self._end(exc_type, exc)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not done.done():
                done.set_result(None)

        def wake() -> None:
            loop.call_soon_threadsafe(resolve)

        self._writer.on_done(state, wake)
        try:
            # Shielded: a second cancellation must not abandon the wait silently;
            # the write itself happens in the writer thread regardless.
            await asyncio.wait_for(asyncio.shield(done), self._options.final_timeout)
        except TimeoutError:
            pass
        self._writer.raise_if_lost(state, self._options.final_timeout)

    async def flush(self, timeout: float | None = None) -> None:
        """Write what is buffered now and wait (off the event loop) until it is committed."""
        await asyncio.to_thread(self._writer.flush_now, self._opened(), timeout)
