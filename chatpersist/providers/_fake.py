"""A built-in fake OpenAI-compatible model server, for demos and tests (no API key,
no network): it streams a canned answer at a human pace over real SSE.

It speaks the subset of the OpenAI API that chat clients use, in the same shapes:
`POST /v1/chat/completions` (a `chat.completion` object, or with `"stream": true`
`chat.completion.chunk` events then `data: [DONE]`, with a final usage chunk only when
`stream_options.include_usage` asks for one), `GET /v1/models` and
`GET /v1/models/{id}`; bad requests get a 400 with an OpenAI-style error body.
Run it on its own with `chatpersist fake-server --port 8123`.
"""

from __future__ import annotations

import json
import secrets
import socket
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


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_activate(self) -> None:
        super().server_activate()
        # A client that resets its connection between select() and accept() would leave
        # a blocking accept() waiting forever, and stop() with it: never block there.
        self.socket.setblocking(False)


class _HTTPServerV6(_HTTPServer):
    address_family = socket.AF_INET6


class _BadRequest(Exception):
    def __init__(
        self, message: str, param: str | None = None, code: str | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


def _tokens(text: str) -> int:
    """A rough token count (about four characters a token), never zero."""
    return max(1, len(text) // 4)


def _completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(14)


class FakeModelServer:
    """`with FakeModelServer() as server: OpenAICompatible(server.base_url, "fake")`.

    Each request streams `answer` in `chunk_chars`-character pieces every `delay`
    seconds. A request whose last message is the assistant's partial text, or asks to
    continue after it, gets the rest of the answer from where that text stops.
    Without `"stream": true` the same text comes back at once as one `chat.completion`.
    """

    def __init__(
        self,
        answer: str | None = None,
        *,
        chunk_chars: int = 4,
        delay: float = 0.05,
        port: int = 0,
        model: str = "fake-model",
        host: str = "127.0.0.1",
    ) -> None:
        self.answer = answer or CANNED_ANSWER
        self.chunk_chars = chunk_chars
        self.delay = delay
        self.model = model
        self.host = host
        #: Every JSON body posted to /chat/completions, in order.
        self.requests: list[dict[str, Any]] = []
        #: Answers cut short because the client went away (the server then stops).
        self.disconnects = 0
        self.created = int(time.time())
        self._lock = threading.Lock()
        server_class = _HTTPServerV6 if ":" in host else _HTTPServer
        self._httpd = server_class((host, port), self._handler())
        self._thread: threading.Thread | None = None
        self._serving = False

    @property
    def port(self) -> int:
        """The port it listens on (the one the OS chose for port 0)."""
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL to give a client, ending in /v1."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    def start(self) -> FakeModelServer:
        """Serves from a background thread (see `serve_forever` for the foreground)."""
        # A short poll interval: stop() waits for the serving loop to notice.
        self._serving = True
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serves in this thread until Ctrl-C (KeyboardInterrupt) or `stop()`."""
        try:
            self._serve()
        finally:
            self._httpd.server_close()

    def _serve(self) -> None:
        self._serving = True
        self._httpd.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._serving:  # shutdown() would wait forever for a loop never started
            self._httpd.shutdown()
            self._serving = False
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
            if not isinstance(m, dict):
                continue
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

    def model_object(self) -> dict[str, Any]:
        """The fake model as `GET /v1/models` lists it."""
        return {
            "id": self.model,
            "object": "model",
            "created": self.created,
            "owned_by": "chatpersist",
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep demos quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path = self.path.split("?", 1)[0].rstrip("/")
                if path == "/v1/models":
                    self._json(200, {"object": "list", "data": [server.model_object()]})
                elif path.startswith("/v1/models/") and path[len("/v1/models/") :] == server.model:
                    self._json(200, server.model_object())
                elif path.startswith("/v1/models/"):
                    name = path[len("/v1/models/") :]
                    self._error(
                        _BadRequest(
                            f"The model '{name}' does not exist", "model", "model_not_found", 404
                        )
                    )
                else:
                    self._not_found()

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path.split("?", 1)[0].rstrip("/") != "/v1/chat/completions":
                    self._read_body()
                    self._not_found()
                    return
                try:
                    body = self._request()
                except _BadRequest as exc:
                    self._error(exc)
                    return
                text = server.remaining(body["messages"])
                cid, created = _completion_id(), int(time.time())
                prompt = _tokens(" ".join(str(m.get("content") or "") for m in body["messages"]))
                usage = {
                    "prompt_tokens": prompt,
                    "completion_tokens": _tokens(text),
                    "total_tokens": prompt + _tokens(text),
                }
                if not body.get("stream"):
                    self._json(200, self._completion(cid, created, text, usage))
                    return
                options = body.get("stream_options") or {}
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                try:
                    self._stream(
                        cid, created, text, usage if options.get("include_usage") else None
                    )
                except (BrokenPipeError, ConnectionResetError):
                    with server._lock:  # the client went away: stop generating
                        server.disconnects += 1

            def _read_body(self) -> bytes:
                try:
                    length = int(self.headers.get("content-length") or 0)
                except ValueError:
                    length = 0
                return self.rfile.read(length) if length > 0 else b""

            def _request(self) -> dict[str, Any]:
                """The request body, checked the way the real API checks it."""
                try:
                    body = json.loads(self._read_body() or b"null")
                except ValueError:
                    raise _BadRequest(
                        "We could not parse the JSON body of your request. (HINT: This likely "
                        "means you aren't using your HTTP library correctly. The OpenAI API "
                        "expects a JSON payload.)"
                    ) from None
                if not isinstance(body, dict):
                    raise _BadRequest("The request body must be a JSON object.")
                with server._lock:
                    server.requests.append(body)
                messages = body.get("messages")
                if messages is None:
                    raise _BadRequest(
                        "Missing required parameter: 'messages'.",
                        "messages",
                        "missing_required_parameter",
                    )
                if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                    raise _BadRequest(
                        "Invalid type for 'messages': expected an array of objects.",
                        "messages",
                        "invalid_type",
                    )
                if not messages:
                    raise _BadRequest(
                        "Invalid 'messages': empty array. Expected an array with minimum "
                        "length 1, but got an empty array instead.",
                        "messages",
                        "empty_array",
                    )
                options = body.get("stream_options")
                if options is not None and not body.get("stream"):
                    raise _BadRequest(
                        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                        "stream_options",
                        "invalid_value",
                    )
                if options is not None and not isinstance(options, dict):
                    raise _BadRequest(
                        "Invalid type for 'stream_options': expected an object.",
                        "stream_options",
                        "invalid_type",
                    )
                return body

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(data)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _error(self, exc: _BadRequest) -> None:
                error = {
                    "message": exc.message,
                    "type": "invalid_request_error",
                    "param": exc.param,
                    "code": exc.code,
                }
                self._json(exc.status, {"error": error})

            def _not_found(self) -> None:
                self._error(
                    _BadRequest(f"Unknown request URL: {self.command} {self.path}.", None,
                                "unknown_url", 404)
                )  # fmt: skip

            def _completion(
                self, cid: str, created: int, text: str, usage: dict[str, int]
            ) -> dict[str, Any]:
                return {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": server.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                    "system_fingerprint": None,
                }

            def _send(self, payload: dict[str, Any] | str) -> None:
                data = payload if isinstance(payload, str) else json.dumps(payload)
                self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()

            def _stream(
                self, cid: str, created: int, text: str, usage: dict[str, int] | None
            ) -> None:
                def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
                    payload = {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": server.model,
                        "system_fingerprint": None,
                        "choices": choices,
                    }
                    if usage is not None:  # the real API then sends "usage": null until the end
                        payload["usage"] = None
                    return {**payload, **extra}

                def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

                self._send(chunk([choice({"role": "assistant", "content": "", "refusal": None})]))
                n = server.chunk_chars
                for i in range(0, len(text), n):
                    time.sleep(server.delay)
                    self._send(chunk([choice({"content": text[i : i + n]})]))
                self._send(chunk([choice({}, finish="stop")]))
                if usage is not None:
                    self._send(chunk([], usage=usage))
                self._send("[DONE]")

        return Handler
