"""A built-in fake OpenAI-compatible model server, for demos and tests (no API key,
no network): it streams a canned answer at a human pace over real SSE."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

CANNED_ANSWER = (
    "Saving an answer only when it is finished bets everything on the last moment. "
    "People switch conversations, close laptops, lose their train's wifi or press "
    "Ctrl-C while a model is still writing, and each time the work done so far is "
    "thrown away. When they come back, their question sits there unanswered, as if "
    "the model had never said a word.\n\n"
    "Writing a draft every few chunks, or every couple of seconds, changes the bet. "
    "The cost is a handful of small writes per answer, batched with every other answer "
    "in flight. In exchange, whatever happens to the client, the text generated so far "
    "is already in the database, labelled as interrupted, ready to be read, continued "
    "or regenerated.\n\n"
    "The same drafts let a second tab, or a user who comes back a minute later, follow "
    "an answer that is still being written, and let an operator count how often answers "
    "are cut short, and why."
)


class FakeModelServer:
    """`with FakeModelServer() as server: OpenAICompatible(server.base_url, "fake")`.

    Each request streams `answer` in `chunk_chars`-character pieces every `delay`
    seconds. A request whose last message is the assistant's partial text, or asks to
    continue after it, gets the rest of the answer from where that text stops.
    """

    def __init__(
        self,
        answer: str | None = None,
        *,
        chunk_chars: int = 4,
        delay: float = 0.05,
        port: int = 0,
        model: str = "fake-model",
    ) -> None:
        self.answer = answer or CANNED_ANSWER
        self.chunk_chars = chunk_chars
        self.delay = delay
        self.model = model
        self.requests: list[dict[str, Any]] = []
        #: Answers cut short because the client went away (the server then stops).
        self.disconnects = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeModelServer:
        # A short poll interval: stop() waits for the serving loop to notice.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def remaining(self, messages: list[dict[str, Any]]) -> str:
        """What to stream: the whole answer, or the rest after a partial one."""
        partial = ""
        for m in reversed(messages):
            if m.get("role") == "assistant":
                partial = str(m.get("content") or "")
                break
            if m.get("role") == "user" and "continue" not in str(m.get("content", "")).lower():
                break
        if partial and self.answer.startswith(partial.rstrip()):
            return (
                self.answer[len(partial) :]
                if self.answer.startswith(partial)
                else (self.answer[len(partial.rstrip()) :])
            )
        return self.answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep demos quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(body)
                text = server.remaining(list(body.get("messages") or []))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                try:
                    self._stream(text)
                except (BrokenPipeError, ConnectionResetError):
                    with server._lock:  # the client went away: stop generating
                        server.disconnects += 1

            def _send(self, payload: dict[str, Any] | str) -> None:
                data = payload if isinstance(payload, str) else json.dumps(payload)
                self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()

            def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                return {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "model": server.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }

            def _stream(self, text: str) -> None:
                self._send(self._chunk({"role": "assistant", "content": ""}))
                n = server.chunk_chars
                for i in range(0, len(text), n):
                    time.sleep(server.delay)
                    self._send(self._chunk({"content": text[i : i + n]}))
                self._send(self._chunk({}, finish="stop"))
                words = max(1, len(text) // 4)
                self._send(
                    {
                        "object": "chat.completion.chunk",
                        "model": server.model,
                        "choices": [],
                        "usage": {"prompt_tokens": 12, "completion_tokens": words},
                    }
                )
                self._send("[DONE]")

        return Handler
