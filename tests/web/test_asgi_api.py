"""The save-partial endpoint and `follow`, on all three databases (the app runs in
process through httpx's ASGI transport)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator
from typing import Any, cast

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from chatpersist import COMPLETE, STREAMING, ChatStore
from chatpersist.asgi import ChatStreams, follow


def app_for(store: ChatStore, max_bytes: int = 1000) -> Starlette:
    streams = ChatStreams(store)

    def authorize(request: Request, session_id: str) -> bool:
        return request.headers.get("x-user") == "alice"

    endpoint = streams.save_partial_endpoint(authorize, max_bytes=max_bytes)
    return Starlette(routes=[Route("/m/{message_id}/partial", endpoint, methods=["PUT", "POST"])])


def test_save_partial_api(store: ChatStore) -> None:
    sid = store.create_session()
    other = store.create_session()

    async def run() -> None:
        transport = httpx.ASGITransport(app=app_for(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            alice = {"x-user": "alice"}

            async def put(body: dict[str, object], headers: dict[str, str] = alice, mid: str = "c1") -> httpx.Response:
                return await http.put(f"/m/{mid}/partial", json=body, headers=headers)

            r = await put({"session_id": sid, "seq": 2, "content": "Hello wo"})
            assert r.status_code == 200 and r.json()["applied"] is True
            r = await put({"session_id": sid, "seq": 1, "content": "Hel"})  # older
            assert r.status_code == 200 and r.json()["applied"] is False
            r = await put({"session_id": sid, "seq": 2, "content": "Hello wo"})  # repeated
            assert r.json()["seq"] == 2
            r = await put({"session_id": sid, "seq": 3, "content": "Hello world", "done": True})
            assert r.json() == {"applied": True, "seq": 3, "status": COMPLETE, "length": 11}
            r = await put({"session_id": sid, "seq": 4, "content": "Hello world!!"})  # after done
            assert r.json()["applied"] is False and r.json()["length"] == 11
            r = await put({"session_id": sid, "seq": 9, "content": "x"}, headers={"x-user": "mallory"})
            assert r.status_code == 403
            r = await put({"session_id": sid, "seq": 9, "content": "x" * 2000})
            assert r.status_code == 413
            r = await http.put("/m/c1/partial", content=b"{not json", headers={**alice, "content-type": "application/json"})
            assert r.status_code == 400
            r = await put({"session_id": other, "seq": 9, "content": "hijack"})
            assert r.status_code == 409
            r = await put({"session_id": "nope", "seq": 1, "content": "x"}, mid="c2")
            assert r.status_code == 404
            r = await put({"session_id": sid, "seq": 1, "content": "cut", "done": True,
                           "finish_reason": "disconnected"}, mid="c3")  # fmt: skip
            assert r.json()["status"] == STREAMING

    asyncio.run(run())
    m = store.get_message("c1")
    assert (m.content, m.status) == ("Hello world", COMPLETE)
    assert store.get_message("c3").interrupted


def test_follow_sees_the_answer_grow(store: ChatStore) -> None:
    sid = store.create_session()
    d = store.draft(sid, every_chunks=2)
    d.__enter__()
    d.append("first ")
    d.flush(timeout=10)

    def write() -> None:
        for i in range(20):
            d.append(f"w{i} ")
            time.sleep(0.02)
        d.__exit__(None, None, None)

    async def run() -> list[tuple[str, dict[str, object]]]:
        threading.Thread(target=write).start()
        return [e async for e in follow(store, d.message_id, poll=0.05)]

    events = asyncio.run(run())
    assert events[0] == ("snapshot", {"text": "first ", "status": STREAMING, "live": True})
    text = "first " + "".join(str(p["text"]) for k, p in events if k == "delta")
    assert text == "first " + "".join(f"w{i} " for i in range(20))
    assert sum(k == "delta" for k, _ in events) > 2  # it grew in steps
    assert events[-1][0] == "end" and events[-1][1]["status"] == COMPLETE


def test_follow_is_woken_by_postgres_notify(tmp_path: object) -> None:
    from support import fresh_database

    for url in fresh_database("postgresql", tmp_path):  # type: ignore[arg-type]
        with ChatStore(url, every_chunks=1) as store:
            store.migrate()
            sid = store.create_session()
            d = store.draft(sid)
            d.__enter__()
            d.flush(timeout=10)

            async def run(d: Any = d) -> float:
                # polling alone would take 30 s
                events = cast(
                    AsyncGenerator[tuple[str, dict[str, Any]], None],
                    follow(store, d.message_id, poll=30.0),
                )
                assert (await anext(events))[0] == "snapshot"
                start = time.monotonic()
                await asyncio.to_thread(d.append, "notified")
                kind, payload = await anext(events)
                assert (kind, payload) == ("delta", {"text": "notified"})
                await events.aclose()
                return time.monotonic() - start

            assert asyncio.run(run()) < 5
            d.__exit__(None, None, None)
