"""Starlette / FastAPI integration: answers streamed over SSE that survive the client.

    streams = ChatStreams(store, authorize=owns)     # owns(request, session_id) -> bool
    return streams.response(session_id, provider.astream(history))   # in an endpoint
    return streams.follow(message_id)                # re-attach to a live answer
    app.add_route("/messages/{message_id}/partial", streams.save_partial_endpoint())

With policy "cancel" the client owns cancellation: when it disconnects, generation
stops and the draft gets its final flush, interrupted with finish_reason
'disconnected'. With policy "finish", generation goes on in the background and
completes the message; a returning client follows it with `follow()`.

`authorize(request, session_id)` guards every endpoint here that reads or writes a
stored answer (`follow`, the save-partial endpoint); without one they refuse to run.
`response()` trusts its caller: check the session before you write to it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ._async_store import AsyncChatStore
from ._draft import _DraftBase
from ._errors import ChatPersistError, MessageConflict, UnknownMessage, UnknownSession
from ._fanout import FLUSH_CHANNEL, Hub, Position, end_payload, follow_events, parse_event_id
from ._schema import MAX_INT, REASON_LENGTH
from ._store import ChatStore
from .providers import ProviderError, ReasoningDelta, feed, to_chunks
from .providers._pipe import _aiter

Policy = Literal["cancel", "finish"]
Authorize = Callable[[Request, str], bool | Awaitable[bool]]

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}

# Limits of the save-partial body: the columns' (a 32-bit INTEGER and a VARCHAR(64)).
MAX_SEQ = MAX_INT
MAX_FINISH_REASON = REASON_LENGTH


#: How long a browser's EventSource waits before it reconnects (sent as `retry:`).
RETRY_MS = 1000


def sse(
    event: str, data: dict[str, Any], id: str | None = None, retry: int | None = None
) -> str:
    """One server-sent event; `id` is what the client sends back as `Last-Event-ID`."""
    head = f"retry: {retry}\n" if retry is not None else ""
    if id is not None:
        head += f"id: {id}\n"
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


#: One event of an answer: its kind, its data, and the `id:` naming the text the
#: client then has (see `chatpersist._fanout.Position`).
Event = tuple[str, dict[str, Any], str]


async def _as_sse(events: AsyncIterator[Event]) -> AsyncIterator[str]:
    """chatpersist's own SSE format (the first event carries the `retry:` hint)."""
    retry: int | None = RETRY_MS
    try:
        async for kind, data, event_id in events:
            yield sse(kind, data, event_id, retry)
            retry = None
    finally:
        await events.aclose()  # type: ignore[attr-defined]


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


class _Deferred(Response):
    """A response chosen when it is served, from the request it answers: checks that
    end in a 404 or 403 run before a stream sends its headers."""

    def __init__(self, decide: Callable[[Request], Awaitable[Response]]) -> None:
        super().__init__()
        self._decide = decide

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._decide(Request(scope, receive))
        # Keep what a framework added to this one (FastAPI: cookies, background tasks).
        response.raw_headers += [
            h for h in self.raw_headers if h[0] not in (b"content-length", b"content-type")
        ]
        response.background = response.background or self.background
        await response(scope, receive, send)


class ChatStreams:
    """SSE endpoints bound to one store: answers, re-attach, and client-held saves.

    `authorize(request, session_id)` (sync or async) says whether the request may read
    or write that session's answers; `follow` and `save_partial_endpoint` use it (each
    also takes one of its own). `allowed_origins` lists the origins ("https://host[:port]")
    besides the request's own from which browsers may save partials.
    """

    def __init__(
        self,
        store: ChatStore | AsyncChatStore,
        *,
        policy: Policy = "cancel",
        follow_poll: float = 0.25,
        authorize: Authorize | None = None,
        allowed_origins: Iterable[str] = (),
    ) -> None:
        if policy not in ("cancel", "finish"):
            raise ValueError("policy must be 'cancel' or 'finish'")
        #: The store, awaitable: every database call runs off the event loop.
        self.astore = store if isinstance(store, AsyncChatStore) else AsyncChatStore(store)
        self.store = self.astore.sync
        self.policy: Policy = policy
        self.follow_poll = follow_poll
        self.authorize = authorize
        self.allowed_origins = _origins(allowed_origins)
        # Answers that outlive their client (policy "finish"): referenced until done.
        self._background: set[asyncio.Task[None]] = set()
        # Answers being generated in this process, by message id (for `stop`).
        self._stops: dict[str, asyncio.Event] = {}
        #: This process's answers in flight and their followers (see `_fanout`).
        self.hub = Hub(self.astore)

    async def stop(self, message_id: str, *, wait: float = 5.0) -> bool:
        """A user's Stop: end the answer as interrupted ('stopped'), keeping its text,
        wherever it is being generated (this process at once; another worker within
        its store's `stop_poll`). Returns once the answer has ended (its final flush
        committed) or after `wait` seconds; False when it was not being generated."""
        event = self._stops.get(message_id)
        if event is not None:
            event.set()
        else:
            try:
                if not await self.astore.request_stop(message_id):
                    return False
            except (UnknownMessage, ValueError):
                return False
        deadline = asyncio.get_running_loop().time() + wait
        while asyncio.get_running_loop().time() < deadline:
            if self.hub.local(message_id) is None and message_id not in self._stops:
                if not (await self.astore.get_message(message_id)).live:
                    break
            await asyncio.sleep(0.05)
        return True

    # -- answers --

    def response(
        self,
        session_id: str,
        source: AsyncIterable[Any] | Iterable[Any],
        *,
        message_id: str | None = None,
        policy: Policy | None = None,
        recover_with: str | None = None,
    ) -> StreamingResponse:
        """Stream `source` (e.g. `provider.astream(history)`) to the client as SSE,
        into a draft. Events: `start` {message_id}, `delta` {text}, `end` {status,
        finish_reason}, `error` {message}.

        With policy "finish", `recover_with` opts the answer in to completion after a
        crash (see `ChatStore.draft`): a `recovery.Recoverer` in any worker completes
        it if this process dies, and followers see it through."""
        client = _Disconnect()
        if recover_with is not None and (policy or self.policy) != "finish":
            raise ValueError(
                "recover_with needs policy 'finish': a client-owned answer ends with its client"
            )
        events = self._events(session_id, source, message_id, policy, client, recover_with)
        return DraftStreamResponse(_as_sse(events), client)

    def _events(
        self,
        session_id: str,
        source: AsyncIterable[Any] | Iterable[Any],
        message_id: str | None,
        policy: Policy | None,
        client: _Disconnect,
        recover_with: str | None = None,
    ) -> AsyncIterator[Event]:
        """The answer's events, whatever protocol the client speaks."""
        if (policy or self.policy) == "finish":
            return self._finishing(session_id, source, message_id, client, recover_with)
        return self._cancelling(session_id, source, message_id, client)

    async def _cancelling(
        self,
        session_id: str,
        source: AsyncIterable[Any] | Iterable[Any],
        message_id: str | None,
        client: _Disconnect,
    ) -> AsyncIterator[Event]:
        items = _aiter(source)
        draft = self.astore.draft(session_id, message_id=message_id)
        d = await draft.__aenter__()
        stop = self._stops[d.message_id] = asyncio.Event()
        pos = self.hub.begin(d.message_id, d.text)
        failure: BaseException | None = None
        try:
            yield "start", {"message_id": d.message_id, "session_id": session_id}, pos.event_id
            async for event in _pump(d, items, stop, self.hub, pos):
                yield event
        except BaseException as exc:  # the client left (cancelled, or closed at a yield)
            d.stop("disconnected" if client.gone else "cancelled")
            failure = exc
            raise
        finally:
            # Shielded: the request's scope is cancelled once the client is gone, but
            # the final flush and closing the provider's stream must still happen.
            self._stops.pop(d.message_id, None)
            ended: dict[str, Any] = {"message_id": d.message_id, "interrupted": True}
            with anyio.CancelScope(shield=True):
                try:
                    await draft.__aexit__(type(failure) if failure else None, failure, None)
                    await items.aclose()  # stops generation: the provider's connection closes
                    ended = end_payload(await self.astore.get_message(d.message_id))
                finally:
                    self.hub.end(d.message_id, ended)  # followers here get it too
        yield "end", ended, pos.event_id

    async def _finishing(
        self,
        session_id: str,
        source: AsyncIterable[Any] | Iterable[Any],
        message_id: str | None,
        client: _Disconnect,
        recover_with: str | None = None,
    ) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        opened: asyncio.Future[tuple[str, Position]] = asyncio.get_running_loop().create_future()

        async def generate() -> None:
            items = _aiter(source)
            try:
                draft = self.astore.draft(
                    session_id, message_id=message_id, recover_with=recover_with
                )
                async with draft as d:
                    pos = self.hub.begin(d.message_id, d.text)
                    opened.set_result((d.message_id, Position(pos.offset, pos.crc)))
                    stop = self._stops[d.message_id] = asyncio.Event()
                    async for event in _pump(d, items, stop, self.hub, pos):
                        queue.put_nowait(event)
                m = await self.astore.get_message(d.message_id)
                self.hub.end(d.message_id, end_payload(m))
                queue.put_nowait(("end", end_payload(m), pos.event_id))
            except BaseException as exc:
                if not opened.done():
                    opened.set_exception(exc)
                raise
            finally:
                if opened.done() and not opened.exception():
                    mid = opened.result()[0]
                    self._stops.pop(mid, None)
                    if self.hub.local(mid) is not None:  # failed before its end
                        self.hub.end(mid, {"message_id": mid, "interrupted": True})
                await items.aclose()
                queue.put_nowait(None)

        task = asyncio.create_task(generate())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        mid, start = await asyncio.shield(opened)
        yield "start", {"message_id": mid, "session_id": session_id}, start.event_id
        # The client leaving ends only this loop; the task writes on to the end.
        while (event := await queue.get()) is not None:
            yield event

    async def wait_background(self) -> None:
        """Wait for answers still generating for clients that left (e.g. at shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- re-attach --

    def follow(self, message_id: str, *, authorize: Authorize | None = None) -> Response:
        """Follow a message as it is written (another tab, another worker, policy
        "finish"): `snapshot` {text, status, live}, then `delta` {text} as it grows
        (every delta at once when it is generated in this process; from another
        process through PostgreSQL's NOTIFY, or as flushes land), then `end` {status,
        finish_reason, interrupted, length}.

        Every event has an `id:` naming the text the client then has; a client that
        reconnects with it (`Last-Event-ID`, which EventSource sends by itself, or
        `?last_event_id=`; `?offset=N` for N characters) gets a `delta` with exactly
        the text after it instead of the snapshot, or the snapshot when the text was
        rewritten meanwhile. Before the stream starts: 404 for an unknown message, 403
        when `authorize(request, session_id)` says no (the hook given here, else the
        ChatStreams one; the request is the one the response answers)."""
        check = self._hook(authorize, "follow")

        async def decide(request: Request) -> Response:
            try:
                m = await self.astore.get_message(message_id)
            except (UnknownMessage, ValueError):  # ValueError: not a valid id
                return _problem(404, f"unknown message {message_id!r}")
            if not await _allowed(check, request, str(m.session_id)):
                return _problem(403, "not your conversation")
            q = request.query_params
            given = (
                request.headers.get("last-event-id") or q.get("last_event_id") or q.get("offset")
            )
            resume = parse_event_id(given)
            if given is not None and resume is None:
                return _problem(400, f"not an event id or offset: {given!r:.40}")
            events = self._follow_events(str(m.id), resume)
            return DraftStreamResponse(events, _Disconnect())

        return _Deferred(decide)

    async def _follow_events(
        self, message_id: str, resume: tuple[int, int | None] | None
    ) -> AsyncIterator[str]:
        first = True
        async for kind, payload, pos in follow_events(
            self.hub, message_id, resume=resume, poll=self.follow_poll
        ):
            yield sse(kind, payload, pos.event_id, RETRY_MS if first else None)
            first = False

    async def aclose(self) -> None:
        """Close the process's listener and publisher connections (at shutdown)."""
        await self.hub.close()

    # -- client-held streams --

    def _hook(self, authorize: Authorize | None, what: str) -> Authorize:
        hook = authorize or self.authorize
        if hook is None:  # fail closed: no hook is no access, not everyone's
            raise TypeError(f"{what} needs an authorize hook: ChatStreams(store, authorize=...)")
        return hook

    def save_partial_endpoint(
        self,
        authorize: Authorize | None = None,
        *,
        max_bytes: int = 2 * 1024 * 1024,
        allowed_origins: Iterable[str] | None = None,
    ) -> Callable[[Request], Awaitable[Response]]:
        """A PUT/POST endpoint for `/.../{message_id}/partial` taking JSON
        `{session_id, seq, content, done, finish_reason}` from a client that holds the
        stream. Idempotent and seq-guarded (see `ChatStore.save_partial`).

        Refused: 403 for an `Origin` other than the request's own or a listed one
        (`allowed_origins`, else the ChatStreams list; no `Origin` is allowed: not a
        browser's cross-origin request), 415 for a body not sent as `application/json`
        (HTML forms cannot send it, so no cross-site form post gets in), 413 past
        `max_bytes`, 400 for a malformed body, 403 when `authorize(request, session_id)`
        (given here, else the ChatStreams one) says no."""
        store = self.astore
        check = self._hook(authorize, "save_partial_endpoint")
        origins = self.allowed_origins if allowed_origins is None else _origins(allowed_origins)

        async def endpoint(request: Request) -> Response:
            if not _origin_allowed(request, origins):
                return _problem(403, "cross-origin request refused")
            ctype = request.headers.get("content-type", "")
            if ctype.split(";")[0].strip().lower() != "application/json":
                return _problem(415, "expected content-type: application/json")
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                return _problem(413, f"body larger than {max_bytes} bytes")
            body = b""
            async for part in request.stream():
                body += part
                if len(body) > max_bytes:
                    return _problem(413, f"body larger than {max_bytes} bytes")
            try:
                session_id, seq, content, done, reason = _partial_body(body)
            except ValueError as exc:
                return _problem(400, f"expected JSON {{session_id, seq, content, done}}: {exc}")
            if not await _allowed(check, request, session_id):
                return _problem(403, "not your conversation")
            try:
                applied, m = await store.save_partial(
                    session_id,
                    request.path_params["message_id"],
                    content,
                    seq,
                    done=done,
                    finish_reason=reason,
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
    store: ChatStore | AsyncChatStore,
    message_id: str,
    *,
    poll: float = 0.25,
    last_event_id: str | None = None,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Events of a message as it is written: ("snapshot", ...) (or, from
    `last_event_id`, a ("delta", ...) with what was missed), ("delta", ...) and a final
    ("end", ...). Polls the row; on PostgreSQL, NOTIFY wakes it at once."""
    astore = store if isinstance(store, AsyncChatStore) else AsyncChatStore(store)
    hub = Hub(astore)
    try:
        resume = parse_event_id(last_event_id)
        async for kind, payload, _ in follow_events(hub, message_id, resume=resume, poll=poll):
            yield kind, payload
    finally:
        await hub.close()


NOTIFY_CHANNEL = FLUSH_CHANNEL


async def _pump(
    d: _DraftBase, items: AsyncIterator[Any], stop: asyncio.Event, hub: Hub, pos: Position
) -> AsyncIterator[Event]:
    """Feed a draft from the provider; the SSE events for the client (each with the
    position it leaves the client at), and the same deltas for the followers here."""
    try:
        async for item in items:
            text = ""
            for chunk in to_chunks(item):
                if isinstance(chunk, ReasoningDelta):  # stored as a part, and shown live
                    feed(d, chunk)
                    if chunk.text:
                        yield "reasoning", {"text": chunk.text}, pos.event_id
                else:
                    text += feed(d, chunk)
            if text:
                hub.append(d.message_id, text)
                pos.advance(text)
                yield "delta", {"text": text}, pos.event_id
            if stop.is_set() or d.stop_requested:  # here, or from another worker
                d.stop("stopped")
                return
    except ProviderError as exc:
        d.set_error(str(exc))
        d.stop("provider_error")
        yield "error", {"message": str(exc)}, pos.event_id


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"error": detail}, status_code=status)


async def _allowed(authorize: Authorize, request: Request, session_id: str) -> bool:
    allowed = authorize(request, session_id)
    if inspect.isawaitable(allowed):
        allowed = await allowed
    return bool(allowed)


def _partial_body(body: bytes) -> tuple[str, int, str, bool, str | None]:
    """The fields of a save-partial body, checked here so that bad input is a 400,
    not a database error (seq and finish_reason must fit their columns)."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    session_id, seq, content = data.get("session_id"), data.get("seq"), data.get("content")
    done, reason = data.get("done", False), data.get("finish_reason")
    if not isinstance(session_id, str):
        raise ValueError("session_id must be a string")
    if not isinstance(content, str):
        raise ValueError("content must be a string")
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:  # type(): not a bool
        raise ValueError(f"seq must be an integer from 1 to {MAX_SEQ}")
    if not isinstance(done, bool):  # "false" would count as done
        raise ValueError("done must be true or false")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_FINISH_REASON):
        raise ValueError(f"finish_reason must be a string of at most {MAX_FINISH_REASON} chars")
    return session_id, seq, content, done, reason


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(value: str) -> str | None:
    """An origin as `scheme://host:port`, lower case, the port spelled out; None when
    `value` is no http(s) origin (e.g. "null", sent by sandboxed pages)."""
    try:
        u = urlsplit(value.strip())
        scheme, host = u.scheme.lower(), u.hostname
        port = u.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if scheme not in _DEFAULT_PORTS or not host or u.path not in ("", "/"):
        return None
    return f"{scheme}://{host}:{port}"


def _origins(values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, str):
        values = [values]
    out = set()
    for value in values:
        origin = _origin(value)
        if origin is None:
            raise ValueError(f"not an origin (scheme://host[:port]): {value!r}")
        out.add(origin)
    return frozenset(out)


def _origin_allowed(request: Request, allowed: frozenset[str]) -> bool:
    """No Origin header (not a browser's cross-origin request), the request's own
    origin (its scheme and Host header), or a listed one."""
    header = request.headers.get("origin")
    if header is None:
        return True
    origin = _origin(header)
    if origin is None:
        return False
    return origin in allowed or origin == _origin(f"{request.url.scheme}://{request.url.netloc}")


__all__ = ["NOTIFY_CHANNEL", "Authorize", "ChatStreams", "DraftStreamResponse", "follow"]
