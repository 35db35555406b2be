"""Starlette / FastAPI integration: answers streamed over SSE that survive the client.

    streams = ChatStreams(store)                     # policy="cancel" (default) or "finish"
    return streams.response(session_id, provider.astream(history))   # in an endpoint
    return streams.follow(message_id)                # re-attach to a live answer
    app.add_route("/messages/{message_id}/partial", streams.save_partial_endpoint(authorize))

With policy "cancel" the client owns cancellation: when it disconnects, generation
stops and the draft gets its final flush, interrupted with finish_reason
'disconnected'. With policy "finish", generation goes on in the background and
completes the message; a returning client follows it with `follow()`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Literal

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ._draft import _DraftBase
from ._errors import ChatPersistError, MessageConflict, UnknownSession
from ._message import Message
from ._store import ChatStore
from .providers import ProviderError, feed
from .providers._pipe import _aiter

Policy = Literal["cancel", "finish"]
Authorize = Callable[[Request, str], bool | Awaitable[bool]]

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


class _Disconnect:
    """Set by the response when the client goes away, before it cancels the stream."""

    def __init__(self) -> None:
        self.gone = False


class DraftStreamResponse(StreamingResponse):
    """A StreamingResponse that tells its generator, at once, that the client left."""

    def __init__(self, content: AsyncIterator[str], client: _Disconnect) -> None:
        super().__init__(content, media_type="text/event-stream", headers=SSE_HEADERS)
        self._client = client
        self._content = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    self._client.gone = True
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                try:
                    await self.stream_response(send)
                except OSError:  # writing to a closed connection
                    self._client.gone = True
                tg.cancel_scope.cancel()
        finally:
            # End the generator now (not whenever it is garbage-collected), so the
            # draft's final flush happens while the request is still ours.
            await self._content.aclose()  # type: ignore[attr-defined]


class ChatStreams:
    """SSE endpoints bound to one store: answers, re-attach, and client-held saves."""

    def __init__(
        self, store: ChatStore, *, policy: Policy = "cancel", follow_poll: float = 0.25
    ) -> None:
        if policy not in ("cancel", "finish"):
            raise ValueError("policy must be 'cancel' or 'finish'")
        self.store = store
        self.policy: Policy = policy
        self.follow_poll = follow_poll
        # Answers that outlive their client (policy "finish"): referenced until done.
        self._background: set[asyncio.Task[None]] = set()
        # Answers being generated in this process, by message id (for `stop`).
        self._stops: dict[str, asyncio.Event] = {}

    def stop(self, message_id: str) -> bool:
        """A user's Stop: end the answer being generated here as interrupted
        ('stopped'), keeping its text. False when no such answer runs here."""
        event = self._stops.get(message_id)
        if event is None:
            return False
        event.set()
        return True

    # -- answers --

    def response(
        self,
        session_id: str,
        source: AsyncIterable[Any] | Iterable[Any],
        *,
        message_id: str | None = None,
        policy: Policy | None = None,
    ) -> StreamingResponse:
        """Stream `source` (e.g. `provider.astream(history)`) to the client as SSE,
        into a draft. Events: `start` {message_id}, `delta` {text}, `end` {status,
        finish_reason}, `error` {message}."""
        client = _Disconnect()
        if (policy or self.policy) == "finish":
            body = self._finishing(session_id, source, message_id, client)
        else:
            body = self._cancelling(session_id, source, message_id, client)
        return DraftStreamResponse(body, client)

    async def _cancelling(
        self,
        session_id: str,
        source: AsyncIterable[Any] | Iterable[Any],
        message_id: str | None,
        client: _Disconnect,
    ) -> AsyncIterator[str]:
        items = _aiter(source)
        draft = self.store.draft_async(session_id, message_id=message_id)
        d = await draft.__aenter__()
        stop = self._stops[d.message_id] = asyncio.Event()
        failure: BaseException | None = None
        try:
            yield sse("start", {"message_id": d.message_id, "session_id": session_id})
            async for event in _pump(d, items, stop):
                yield event
        except BaseException as exc:  # the client left (cancelled, or closed at a yield)
            d.stop("disconnected" if client.gone else "cancelled")
            failure = exc
            raise
        finally:
            # Shielded: the request's scope is cancelled once the client is gone, but
            # the final flush and closing the provider's stream must still happen.
            self._stops.pop(d.message_id, None)
            with anyio.CancelScope(shield=True):
                await draft.__aexit__(type(failure) if failure else None, failure, None)
                await items.aclose()  # stops generation: the provider's connection closes
        m = await self.store.aget_message(d.message_id)
        yield sse("end", _end(m))

    async def _finishing(
        self,
        session_id: str,
        source: AsyncIterable[Any] | Iterable[Any],
        message_id: str | None,
        client: _Disconnect,
    ) -> AsyncIterator[str]:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def generate() -> None:
            items = _aiter(source)
            try:
                async with self.store.draft_async(session_id, message_id=message_id) as d:
                    opened.set_result(d.message_id)
                    stop = self._stops[d.message_id] = asyncio.Event()
                    async for event in _pump(d, items, stop):
                        queue.put_nowait(event)
                m = await self.store.aget_message(d.message_id)
                queue.put_nowait(sse("end", _end(m)))
            except BaseException as exc:
                if not opened.done():
                    opened.set_exception(exc)
                raise
            finally:
                if opened.done() and not opened.exception():
                    self._stops.pop(opened.result(), None)
                await items.aclose()
                queue.put_nowait(None)

        task = asyncio.create_task(generate())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        mid = await asyncio.shield(opened)
        yield sse("start", {"message_id": mid, "session_id": session_id})
        # The client leaving ends only this loop; the task writes on to the end.
        while (event := await queue.get()) is not None:
            yield event

    async def wait_background(self) -> None:
        """Wait for answers still generating for clients that left (e.g. at shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- re-attach --

    def follow(self, message_id: str) -> StreamingResponse:
        """Follow a message as it is written (another tab, another worker, policy
        "finish"): `snapshot` {text, status}, then `delta` {text} as flushes land, then
        `end` {status, finish_reason, interrupted}."""
        client = _Disconnect()
        return DraftStreamResponse(self._follow_events(message_id), client)

    async def _follow_events(self, message_id: str) -> AsyncIterator[str]:
        async for kind, payload in follow(self.store, message_id, poll=self.follow_poll):
            yield sse(kind, payload)

    # -- client-held streams --

    def save_partial_endpoint(
        self, authorize: Authorize, *, max_bytes: int = 2 * 1024 * 1024
    ) -> Callable[[Request], Awaitable[Response]]:
        """A PUT/POST endpoint for `/.../{message_id}/partial` taking JSON
        `{session_id, seq, content, done, finish_reason}` from a client that holds the
        stream. Idempotent and seq-guarded (see `ChatStore.save_partial`); 403 when
        `authorize(request, session_id)` says no, 413 past `max_bytes`."""
        store = self.store

        async def endpoint(request: Request) -> Response:
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                return _problem(413, f"body larger than {max_bytes} bytes")
            body = b""
            async for part in request.stream():
                body += part
                if len(body) > max_bytes:
                    return _problem(413, f"body larger than {max_bytes} bytes")
            try:
                data = json.loads(body)
                session_id, seq, content = data["session_id"], data["seq"], data["content"]
                if not isinstance(session_id, str) or not isinstance(content, str):
                    raise TypeError("session_id and content must be strings")
                if not isinstance(seq, int) or isinstance(seq, bool):
                    raise TypeError("seq must be an integer")
            except (ValueError, KeyError, TypeError) as exc:
                return _problem(400, f"expected JSON {{session_id, seq, content, done}}: {exc}")
            allowed = authorize(request, session_id)
            if not isinstance(allowed, bool):
                allowed = await allowed
            if not allowed:
                return _problem(403, "not your conversation")
            try:
                applied, m = await asyncio.to_thread(
                    store.save_partial,
                    session_id,
                    request.path_params["message_id"],
                    content,
                    seq,
                    done=bool(data.get("done")),
                    finish_reason=data.get("finish_reason"),
                )
            except UnknownSession as exc:
                return _problem(404, str(exc))
            except MessageConflict as exc:
                return _problem(409, str(exc))
            except (ValueError, TypeError, ChatPersistError) as exc:
                return _problem(400, str(exc))
            return JSONResponse(
                {"applied": applied, "seq": m.seq, "status": m.status, "length": len(m.content)}
            )

        return endpoint


async def follow(
    store: ChatStore, message_id: str, *, poll: float = 0.25
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Events of a message as it is written: ("snapshot", ...), ("delta", ...) and a
    final ("end", ...). Polls the row; on PostgreSQL, a NOTIFY from the writer wakes
    it at once."""
    waiter = await _Notifications.open(store, poll)
    try:
        m = await store.aget_message(message_id)
        yield "snapshot", {"text": m.content, "status": m.status, "live": m.live}
        text = m.content
        while m.live:
            await waiter.wait(message_id)
            m = await store.aget_message(message_id)
            if m.content.startswith(text):
                if len(m.content) > len(text):
                    yield "delta", {"text": m.content[len(text) :]}
            else:  # rewritten (regenerated): start over
                yield "snapshot", {"text": m.content, "status": m.status, "live": m.live}
            text = m.content
        yield "end", _end(m)
    finally:
        await waiter.close()


class _Notifications:
    """Wait for the next flush of a message: LISTEN on PostgreSQL, else a poll."""

    def __init__(self, poll: float, conn: Any = None) -> None:
        self.poll = poll
        self.conn = conn

    @classmethod
    async def open(cls, store: ChatStore, poll: float) -> _Notifications:
        if store.engine.dialect.name != "postgresql":
            return cls(poll)
        try:
            import psycopg

            url = store.engine.url.set(drivername="postgresql")
            conninfo = url.render_as_string(hide_password=False)
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            return cls(poll, conn)
        except Exception:  # noqa: BLE001 - polling still works
            return cls(poll)

    async def wait(self, message_id: str) -> None:
        if self.conn is None:
            await asyncio.sleep(self.poll)
            return
        # A notification for this message, or the poll interval as a safety net.
        async for note in self.conn.notifies(timeout=self.poll):
            if message_id in note.payload.split(","):
                return

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


NOTIFY_CHANNEL = "chatpersist"


async def _pump(
    d: _DraftBase, items: AsyncIterator[Any], stop: asyncio.Event
) -> AsyncIterator[str]:
    """Feed a draft from the provider; the SSE events for the client."""
    try:
        async for item in items:
            text = feed(d, item)
            if text:
                yield sse("delta", {"text": text})
            if stop.is_set():
                d.stop("stopped")
                return
    except ProviderError as exc:
        d.set_error(str(exc))
        d.stop("provider_error")
        yield sse("error", {"message": str(exc)})


def _end(m: Message) -> dict[str, Any]:
    return {
        "message_id": m.id,
        "status": m.status,
        "finish_reason": m.finish_reason,
        "interrupted": m.interrupted,
    }


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"error": detail}, status_code=status)


__all__ = ["NOTIFY_CHANNEL", "ChatStreams", "DraftStreamResponse", "follow"]
