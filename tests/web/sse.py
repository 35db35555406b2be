"""Helpers for the web tests: reading the example server's SSE streams (answers and
follows), shared by the tests that drive it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
from web.webserver import Server


@dataclass
class Sse:
    events: list[tuple[str, str | None, dict[str, object]]] = field(default_factory=list)
    retry: int | None = None
    #: The x-webchat-worker header of the response (the pid of the worker that served it).
    worker: str | None = None
    #: The transport error that cut the stream, when `ask` was told the server may die.
    broken: httpx.TransportError | None = None

    def text(self, start: str = "") -> str:
        out = start
        for kind, _, data in self.events:
            if kind == "snapshot":
                out = str(data["text"])
            elif kind == "delta":
                out += str(data["text"])
        return out

    @property
    def last_id(self) -> str | None:
        ids = [i for _, i, _ in self.events if i is not None]
        return ids[-1] if ids else None


def read_sse(lines: Iterator[str], into: Sse, stop_after: int | None = None) -> Sse:
    kind, eid, data = "message", None, ""
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("id: "):
            eid = line[4:]
        elif line.startswith("retry: "):
            into.retry = int(line[7:])
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            into.events.append((kind, eid, json.loads(data)))
            kind, eid, data = "message", None, ""
            if into.events[-1][0] == "end":
                break
            if stop_after is not None and len(into.events) >= stop_after:
                break
    return into


def new_session(server: Server) -> str:
    r = httpx.post(server.url + "/api/sessions", json={}, cookies=server.cookies)
    return str(r.json()["id"])


def ask(
    server: Server, sid: str, result: Sse, started: threading.Event, may_break: bool = False
) -> None:
    try:
        with httpx.stream(
            "POST", f"{server.url}/api/sessions/{sid}/messages", json={"text": "why?"},
            cookies=server.cookies, timeout=60,
        ) as r:  # fmt: skip
            result.worker = r.headers.get("x-webchat-worker")
            lines = r.iter_lines()
            read_sse(lines, result, stop_after=1)
            started.set()
            read_sse(lines, result)
    except httpx.TransportError as exc:
        if not may_break:
            raise
        result.broken = exc


def follow(
    server: Server,
    mid: str,
    into: Sse,
    last_id: str | None = None,
    stop_after: int | None = None,
    client: httpx.Client | None = None,
) -> str | None:
    """Follow until the end (or `stop_after` events); the worker that answered. On a
    connection of its own, or of `client` (which carries the identity cookie)."""
    headers = {"last-event-id": last_id} if last_id else {}
    url = f"{server.url}/api/messages/{mid}/follow"
    with (
        client.stream("GET", url, headers=headers)
        if client is not None
        else httpx.stream("GET", url, cookies=server.cookies, headers=headers, timeout=60)
    ) as r:
        assert r.status_code == 200, r.read()
        read_sse(r.iter_lines(), into, stop_after)
        worker: str | None = r.headers.get("x-webchat-worker")
        return worker


def start_answer(server: Server, may_break: bool = False) -> tuple[str, Sse, threading.Thread]:
    """Ask in a thread; once the `start` event came, the message id, the answer's
    events so far (growing) and the thread. With `may_break`, a stream the server
    cuts (a killed worker) ends the thread quietly, the error in `Sse.broken`."""
    sid = new_session(server)
    result, started = Sse(), threading.Event()
    t = threading.Thread(target=ask, args=(server, sid, result, started, may_break))
    t.start()
    assert started.wait(20)
    kind, eid, data = result.events[0]
    assert kind == "start" and eid is not None and result.retry == 1000
    return str(data["message_id"]), result, t
