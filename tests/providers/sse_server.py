"""A scriptable HTTP server on 127.0.0.1 for provider tests: each request plays the
next script of raw actions (status line, bytes, pauses, abrupt close)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Status:
    code: int
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = "OK"


@dataclass
class Raw:
    data: bytes


@dataclass
class Sleep:
    seconds: float


@dataclass
class Close:
    """Close the connection now (mid-answer, without an end marker)."""


Action = Status | Raw | Sleep | Close


def sse(payload: Any, event: str | None = None, eol: str = "\n") -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    head = f"event: {event}{eol}" if event else ""
    return f"{head}data: {data}{eol}{eol}".encode()


def openai_delta(text: str | None = None, finish: str | None = None, **delta: Any) -> bytes:
    d = dict(delta)
    if text is not None:
        d["content"] = text
    return sse({"model": "m-1", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]})


def stream_ok(*pieces: str) -> list[Action]:
    """A complete OpenAI-style answer made of `pieces`."""
    return [
        Status(200, {"content-type": "text/event-stream"}),
        *[Raw(openai_delta(p)) for p in pieces],
        Raw(openai_delta(finish="stop")),
        Raw(sse({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}})),
        Raw(sse("[DONE]")),
    ]


def error(code: int, message: str, headers: dict[str, str] | None = None) -> list[Action]:
    body = json.dumps({"error": {"message": message, "type": "x"}}).encode()
    return [
        Status(code, {"content-type": "application/json", **(headers or {})}, reason="Error"),
        Raw(body),
    ]


class ScriptedServer:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.scripts: deque[list[Action]] = deque()
        self.requests: list[dict[str, Any]] = []
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def then(self, *scripts: list[Action]) -> ScriptedServer:
        self.scripts.extend(scripts)
        return self

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while b"\r\n\r\n" not in buf:
                part = conn.recv(65536)
                if not part:
                    return
                buf += part
            head, _, body = buf.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            headers = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
            length = int(headers.get("content-length", 0))
            while len(body) < length:
                body += conn.recv(65536)
            self.requests.append(
                {"line": lines[0], "headers": headers, "json": json.loads(body or b"null")}
            )
            script = self.scripts.popleft() if self.scripts else error(500, "no script left")
            try:
                for action in script:
                    if isinstance(action, Status):
                        hdrs = {"connection": "close", **action.headers}
                        text = f"HTTP/1.1 {action.code} {action.reason}\r\n" + "".join(
                            f"{k}: {v}\r\n" for k, v in hdrs.items()
                        )
                        conn.sendall(text.encode() + b"\r\n")
                    elif isinstance(action, Raw):
                        conn.sendall(action.data)
                    elif isinstance(action, Sleep):
                        time.sleep(action.seconds)
                    else:
                        break
            except OSError:
                pass
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def free_port() -> int:
    """A port with nothing listening on it (connections are refused)."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        port: int = s.getsockname()[1]
    return port
