"""A backend for the AI SDK's `useChat` (the `ai` package on npm, UI message stream
protocol v1, tested with ai 7): answers that survive the tab, the network and the
server process, and a `resume: true` that always has something to resume from.

    chat = UIChat(streams, provider)                   # streams: a ChatStreams
    app.add_route("/api/chat", chat.send, methods=["POST"])
    app.add_route("/api/chat/{chat_id}/stream", chat.resume, methods=["GET"])
    app.add_route("/api/chat/{chat_id}/messages", chat.messages, methods=["GET"])
    app.add_route("/api/chat/{chat_id}/messages/{message_id}/stop", chat.stop, methods=["POST"])
    app.add_route("/api/chat/{chat_id}/messages/{message_id}/continue", chat.continue_,
                  methods=["POST"])

A chat id is a session id. `send` takes `DefaultChatTransport`'s body, stores the
user's message and streams the answer into a draft; `resume` (what the transport's
`reconnectToStream` calls) answers 204 when no answer of the chat is being written,
and otherwise replays it from the database, then its live deltas, then its finish;
`continue_` goes on with an interrupted answer in the background (the page then calls
`resumeStream()`); `stop` works from any worker. Every endpoint asks the ChatStreams'
`authorize(request, chat_id)` first.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._errors import MessageConflict, UnknownMessage, UnknownSession
from ._fanout import follow_events
from ._history import format_of
from ._message import Message
from ._parts import ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from .asgi import ChatStreams, DraftStreamResponse, Event, _allowed, _Disconnect
from .recovery import continuation

#: The response headers the protocol asks for.
HEADERS = {
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-vercel-ai-ui-message-stream": "v1",
    "x-accel-buffering": "no",
}
_TEXT = "text-1"
# chatpersist's finish reasons as the AI SDK names them.
_REASONS = {
    "stop": "stop", "length": "length", "content_filter": "content-filter",
    "tool_calls": "tool-calls", "provider_error": "error", "error": "error",
}  # fmt: skip


def ui_message(m: Message) -> dict[str, Any]:
    """A stored message as a `UIMessage`: its parts (text, reasoning, tool calls with
    their results as `dynamic-tool` parts), and its state (live, interrupted, finish
    reason) as metadata, so a page can mark a cut answer."""
    return {
        "id": str(m.id),
        "role": m.role,
        "parts": _ui_parts(m),
        "metadata": {
            "status": m.status,
            "finishReason": m.finish_reason,
            "interrupted": m.interrupted,
            "live": m.live,
        },
    }


def _ui_parts(m: Message) -> list[dict[str, Any]]:
    results = {p.tool_call_id: p for p in m.parts if isinstance(p, ToolResultPart)}
    out: list[dict[str, Any]] = []
    for p in m.parts:
        if isinstance(p, TextPart):
            out.append({"type": "text", "text": p.text})
        elif isinstance(p, ReasoningPart) and p.text:
            out.append({"type": "reasoning", "text": p.text})
        elif isinstance(p, ToolCallPart):
            part: dict[str, Any] = {
                "type": "dynamic-tool", "toolName": p.name, "toolCallId": p.id,
                "state": "input-available", "input": p.input,
            }  # fmt: skip
            result = results.get(p.id)
            if not p.complete:
                part |= {"state": "output-error", "errorText": "interrupted", "input": None}
            elif result is not None and result.is_error:
                part |= {"state": "output-error", "errorText": result.content}
            elif result is not None:
                part |= {"state": "output-available", "output": result.content}
            out.append(part)
    return out


def _chunk(value: dict[str, Any]) -> str:
    return f"data: {json.dumps(value, ensure_ascii=False)}\n\n"


async def ui_chunks(events: AsyncIterator[Event] | AsyncIterator[Any]) -> AsyncIterator[str]:
    """chatpersist's answer events (`start`/`reasoning`/`snapshot`/`delta`/`error`/`end`)
    as the UI message stream: start, start-step, reasoning-start/delta/end (live; the
    history has them as reasoning parts), text-start/delta/end, finish-step, `abort` for an
    answer a user ended, finish, any error, then the terminator."""
    started_text = False
    reasoning = False  # a reasoning part is open
    # An `error` chunk ends useChat's reading: held until after `finish`, so the
    # message still gets its end (its text part done, its metadata) before it.
    errors: list[str] = []
    try:
        async for kind, data, *_ in events:
            if kind == "start":
                metadata = {"status": "streaming", "interrupted": False, "live": True}
                yield _chunk(
                    {"type": "start", "messageId": str(data["message_id"]),
                     "messageMetadata": metadata}
                )  # fmt: skip
                yield _chunk({"type": "start-step"})
            elif kind == "reasoning":
                if not reasoning:
                    yield _chunk({"type": "reasoning-start", "id": "reasoning-1"})
                    reasoning = True
                yield _chunk({"type": "reasoning-delta", "id": "reasoning-1",
                              "delta": data["text"]})  # fmt: skip
            elif kind in ("delta", "snapshot"):
                if not data.get("text"):
                    continue
                if reasoning:
                    yield _chunk({"type": "reasoning-end", "id": "reasoning-1"})
                    reasoning = False
                if not started_text:
                    yield _chunk({"type": "text-start", "id": _TEXT})
                    started_text = True
                yield _chunk({"type": "text-delta", "id": _TEXT, "delta": data["text"]})
            elif kind == "error":
                errors.append(str(data.get("message")))
            elif kind == "end":
                if reasoning:
                    yield _chunk({"type": "reasoning-end", "id": "reasoning-1"})
                if started_text:
                    yield _chunk({"type": "text-end", "id": _TEXT})
                yield _chunk({"type": "finish-step"})
                reason = data.get("finish_reason")
                finish = "interrupted" if data.get("interrupted") else _REASONS.get(
                    str(reason), "stop" if reason is None else "other"
                )
                metadata = {
                    "status": data.get("status"),
                    "finishReason": reason,
                    "interrupted": bool(data.get("interrupted")),
                    "live": False,
                }
                if reason in ("stopped", "disconnected", "cancelled"):
                    yield _chunk({"type": "abort", "reason": reason})  # ended by a user
                yield _chunk(
                    {"type": "finish", "finishReason": finish, "messageMetadata": metadata}
                )
        for error in errors:
            yield _chunk({"type": "error", "errorText": error})
        yield "data: [DONE]\n\n"
    finally:
        await events.aclose()  # type: ignore[union-attr]


class UIChat:
    """The endpoints `useChat` talks to, on one `ChatStreams` and one provider (anything
    with `astream(messages)`, e.g. `OpenAICompatible` or `Anthropic`)."""

    def __init__(self, streams: ChatStreams, provider: Any) -> None:
        self.streams = streams
        self.provider = provider
        self.store = streams.astore

    async def send(self, request: Request) -> Response:
        """POST: `{id, messages, trigger, messageId}` as `DefaultChatTransport` sends it."""
        try:
            body = json.loads(await request.body())
            chat_id, text, user_id, trigger = _request(body)
        except ValueError as exc:
            return _problem(400, str(exc))
        if not await self._allowed(request, chat_id):
            return _problem(403, "not your conversation")
        await self._ensure_session(chat_id)
        target: str | None = None
        if trigger == "regenerate-message":
            target = str(body.get("messageId") or "") or None
            if target is None:
                return _problem(400, "regenerate-message needs messageId")
            try:
                await self.store.restart(target)
            except (UnknownMessage, MessageConflict) as exc:
                return _problem(409, str(exc))
        elif text:
            try:
                await self.store.add_message(chat_id, "user", text, message_id=user_id)
            except MessageConflict:
                pass  # the same message sent again (a retry): it is stored already
        shape = format_of(self.provider)
        history = await self.store.history_for_model(chat_id, before=target, format=shape)
        client = _Disconnect()
        events = self.streams._events(
            chat_id, self.provider.astream(history), target, None, client
        )
        return _ui_response(events, client)

    async def resume(self, request: Request) -> Response:
        """GET `{chat_id}/stream`: 204 when no answer of the chat is being written;
        otherwise the answer replayed from the database, then live, then its finish."""
        chat_id = request.path_params["chat_id"]
        if not await self._allowed(request, chat_id):
            return _problem(403, "not your conversation")
        try:
            history = await self.store.history(chat_id)
        except (UnknownSession, ValueError):
            return Response(status_code=204)
        live = [m for m in history if m.live and m.role == "assistant"]
        if not live:
            return Response(status_code=204)
        mid = str(live[-1].id)
        client = _Disconnect()
        return _ui_response(self._replay(mid), client)

    async def _replay(self, message_id: str) -> AsyncIterator[Event]:
        yield "start", {"message_id": message_id}, ""
        async for kind, data, pos in follow_events(
            self.streams.hub, message_id, poll=self.streams.follow_poll
        ):
            yield kind, data, pos.event_id

    async def messages(self, request: Request) -> Response:
        """GET `{chat_id}/messages`: the chat as `UIMessage[]` ([] for a new chat)."""
        chat_id = request.path_params["chat_id"]
        if not await self._allowed(request, chat_id):
            return _problem(403, "not your conversation")
        try:
            history = await self.store.history(chat_id)
        except (UnknownSession, ValueError):
            history = []
        return JSONResponse([ui_message(m) for m in history])

    async def stop(self, request: Request) -> Response:
        """POST `{chat_id}/messages/{message_id}/stop`: a user's Stop, from any worker;
        answers once the answer has ended, with it as a `UIMessage`."""
        m = await self._own_message(request)
        if isinstance(m, Response):
            return m
        stopped = await self.streams.stop(str(m.id))
        # The answer as it ended, so the page can show it cut (its text and marker).
        final = await self.store.get_message(str(m.id))
        return JSONResponse({"stopped": stopped, "message": ui_message(final)})

    async def continue_(self, request: Request) -> Response:
        """POST `{chat_id}/messages/{message_id}/continue`: go on with an interrupted
        answer in the background (202); the page follows it with `resumeStream()`."""
        m = await self._own_message(request)
        if isinstance(m, Response):
            return m
        if not m.interrupted:
            return _problem(409, f"message {m.id!r} is not interrupted")
        prefill = bool(getattr(self.provider, "prefill", False))
        shape = format_of(self.provider)
        messages = continuation(self.store.sync, str(m.id), prefill=prefill, format=shape)
        events = self.streams._events(
            str(m.session_id), self.provider.astream(messages), str(m.id), "finish", _Disconnect()
        )
        first = await anext(events)  # the draft is open: resume() finds it live
        await events.aclose()  # type: ignore[attr-defined]  # the answer goes on regardless
        return JSONResponse({"message_id": first[1]["message_id"]}, status_code=202)

    # -- helpers --

    async def _allowed(self, request: Request, chat_id: str) -> bool:
        return await _allowed(self.streams._hook(None, "UIChat"), request, chat_id)

    async def _own_message(self, request: Request) -> Message | Response:
        chat_id = request.path_params["chat_id"]
        if not await self._allowed(request, chat_id):
            return _problem(403, "not your conversation")
        try:
            m = await self.store.get_message(request.path_params["message_id"])
        except (UnknownMessage, ValueError):
            return _problem(404, "unknown message")
        if str(m.session_id) != chat_id:
            return _problem(404, "unknown message")
        return m

    async def _ensure_session(self, chat_id: str) -> None:
        try:
            await self.store.history(chat_id)
        except UnknownSession:
            try:
                await self.store.create_session(session_id=chat_id)
            except Exception:  # noqa: BLE001 - created meanwhile by another request
                await self.store.history(chat_id)


def _request(body: Any) -> tuple[str, str, str | None, str]:
    """The chat id, the new user text, its message id and the trigger of a request."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    chat_id, messages = body.get("id"), body.get("messages")
    trigger = body.get("trigger") or "submit-message"
    if not isinstance(chat_id, str) or not chat_id:
        raise ValueError("id (the chat id) must be a non-empty string")
    if trigger not in ("submit-message", "regenerate-message"):
        raise ValueError(f"unknown trigger {trigger!r}")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of UIMessages")
    last = messages[-1]
    if not isinstance(last, dict):
        raise ValueError("a message must be an object")
    if trigger == "regenerate-message" or last.get("role") != "user":
        return chat_id, "", None, trigger
    parts = last.get("parts")
    if not isinstance(parts, list):
        raise ValueError("the last message must have a list of parts")
    text = "".join(
        str(p.get("text", "")) for p in parts if isinstance(p, dict) and p.get("type") == "text"
    )
    if not text:
        raise ValueError("the last message has no text")
    user_id = last.get("id")
    return chat_id, text, user_id if isinstance(user_id, str) and user_id else None, trigger


def _ui_response(events: AsyncIterator[Any], client: _Disconnect) -> Response:
    response = DraftStreamResponse(ui_chunks(events), client)
    response.headers.update(HEADERS)
    return response


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"error": detail}, status_code=status)


__all__ = ["HEADERS", "UIChat", "ui_chunks", "ui_message"]
