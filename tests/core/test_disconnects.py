"""A client that goes away is recorded the same way whatever it streamed over."""

from __future__ import annotations

import anyio
import pytest
from starlette.requests import ClientDisconnect
from starlette.websockets import WebSocketDisconnect

from chatpersist import ChatStore

GONE = [
    WebSocketDisconnect(1001, "going away"),
    ClientDisconnect(),
    anyio.BrokenResourceError(),
    anyio.ClosedResourceError(),
    anyio.EndOfStream(),
    ConnectionResetError(104, "Connection reset by peer"),
    BrokenPipeError(32, "Broken pipe"),
]


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("exc", GONE, ids=lambda e: type(e).__name__)
def test_every_transport_disconnect_is_disconnected_with_its_text(
    store: ChatStore, exc: BaseException
) -> None:
    sid = store.create_session()
    d = store.draft(sid)
    with pytest.raises(type(exc)), d:
        d.append("partial ")
        raise exc
    m = store.get_message(d.message_id)
    assert (m.content, m.finish_reason, m.interrupted) == ("partial ", "disconnected", True)
    assert m.error is not None and m.error.startswith(type(exc).__name__)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_app_error_keeps_its_text_too(store: ChatStore) -> None:
    sid = store.create_session()
    d = store.draft(sid)
    with pytest.raises(KeyError), d:
        d.append("partial ")
        raise KeyError("choices")
    m = store.get_message(d.message_id)
    assert (m.finish_reason, m.error) == ("error", "KeyError: 'choices'")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_async_drafts_too(store: ChatStore) -> None:
    import asyncio

    sid = store.create_session()

    async def run() -> str:
        d = store.draft_async(sid)
        with pytest.raises(WebSocketDisconnect):
            async with d:
                d.append("x")
                raise WebSocketDisconnect(1006)
        return d.message_id

    m = store.get_message(asyncio.run(run()))
    assert (m.finish_reason, m.error) == ("disconnected", "WebSocketDisconnect: 1006")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_websocket_close_code_is_kept(store: ChatStore) -> None:
    class Bare(WebSocketDisconnect):
        def __str__(self) -> str:  # as under uvicorn: no text of its own
            return ""

    sid = store.create_session()
    d = store.draft(sid)
    with pytest.raises(WebSocketDisconnect), d:
        d.append("x")
        raise Bare(1001, "going away")
    assert store.get_message(d.message_id).error == "Bare: 1001 going away"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_response_task_cancelled_by_its_server(store: ChatStore) -> None:
    """A cancellation is `cancelled` by default (a shutdown, a timeout); a server that
    cancels the response task because its client left says so with the documented
    `d.stop("disconnected")` (what `chatpersist.asgi` does): recorded as a disconnect,
    with the text kept."""
    import asyncio

    sid = store.create_session()

    async def respond(client_left: bool) -> str:
        d = store.draft_async(sid)
        streaming = asyncio.Event()

        async def generate() -> None:
            async with d:
                d.append("partial ")
                streaming.set()
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    if client_left:
                        d.stop("disconnected")
                    raise

        task = asyncio.create_task(generate())
        await streaming.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return d.message_id

    plain = store.get_message(asyncio.run(respond(client_left=False)))
    left = store.get_message(asyncio.run(respond(client_left=True)))
    assert (plain.finish_reason, plain.content) == ("cancelled", "partial ")
    assert (left.finish_reason, left.content, left.interrupted) == (
        "disconnected", "partial ", True,
    )  # fmt: skip
