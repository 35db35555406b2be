"""A built-in fake model server, for demos and tests (no API key, no network): it
streams a scripted answer at a human pace over real SSE, in OpenAI's and Anthropic's
wire formats.

It speaks the subset of the OpenAI API that chat clients use, in the same shapes:
`POST /v1/chat/completions` (a `chat.completion` object, or with `"stream": true`
`chat.completion.chunk` events then `data: [DONE]`, with a final usage chunk only when
`stream_options.include_usage` asks for one), `GET /v1/models` and
`GET /v1/models/{id}`; and Anthropic's `POST /v1/messages` (a `message` object, or
with `"stream": true` its event stream, message_start to message_stop). Bad requests
get a 400 with an error body in the API's style.
Run it on its own with `chatpersist fake-server --port 8123`.

An answer is a string, or a script of steps: strings (text), `FakeReasoning` and
`FakeToolCall`, e.g. `[FakeReasoning("The user wants the weather."),
FakeToolCall("get_weather", {"city": "Paris"}), "Let me look."]`. Text, reasoning and
tool arguments are streamed in `chunk_chars` pieces; with a tool call the answer
finishes with `tool_calls` (OpenAI) or `tool_use` (Anthropic).

With `strict=True` every request's messages are checked against the API's ordering
rules (`check_openai_messages`, `check_anthropic_messages`): a history that breaks one
gets the 400 the real API would send, naming the rule.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

from ._validate import HistoryRuleError, check_anthropic_messages, check_openai_messages

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


@dataclass(frozen=True)
class FakeReasoning:
    """A step of a fake answer: the model's reasoning. Anthropic's format streams it
    as a thinking block ended by `signature` (one derived from the text when None);
    with `redacted` it is a redacted_thinking block holding that data instead (which
    OpenAI's format leaves out). OpenAI's format streams the text as
    `delta.reasoning_content`."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None


@dataclass(frozen=True)
class FakeToolCall:
    """A step of a fake answer: a call of the tool `name`. `arguments` (an object, or
    JSON text sent as it is, valid or not) is streamed in several fragments; `id` is
    made up per request when None (`call_...` for OpenAI, `toolu_...` for Anthropic)."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None


Step = str | FakeReasoning | FakeToolCall


@dataclass(frozen=True)
class _Block:
    """One block of an answer to send, whatever the wire format."""

    kind: Literal["text", "reasoning", "tool_call"]
    text: str = ""  # the text, the reasoning, or the tool call's JSON arguments
    signature: str = ""
    redacted: str | None = None
    id: str = ""
    name: str = ""


def _signature(text: str) -> str:
    """The fake signature of a thinking block: derived from its text, so a block sent
    back changed no longer matches it."""
    return "fakesig-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _pieces(text: str, n: int) -> list[str]:
    return [text[i : i + n] for i in range(0, len(text), max(1, n))]


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text blocks of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text") or "")
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


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
    """`with FakeModelServer() as server: OpenAICompatible(server.base_url, "fake")`
    (or `Anthropic("fake", base_url=server.anthropic_base_url)`).

    Each request streams `answer` (a string, or a script of steps: see the module's
    doc) in `chunk_chars`-character pieces every `delay` seconds; `then(...)` queues
    other answers for the next requests. A request whose last message is the
    assistant's partial text, or asks to continue after it, gets the rest of a text
    answer from where that text stops. Without `"stream": true` the same answer comes
    back at once as one `chat.completion` (or Anthropic `message`). With `strict=True`
    a history that breaks the API's rules gets an HTTP 400 naming the rule.
    """

    def __init__(
        self,
        answer: str | Sequence[Step] | None = None,
        *,
        chunk_chars: int = 4,
        delay: float = 0.05,
        port: int = 0,
        model: str = "fake-model",
        host: str = "127.0.0.1",
        strict: bool = False,
    ) -> None:
        #: The answer's steps (a text answer is one step).
        self.script: tuple[Step, ...] = _script(answer or CANNED_ANSWER)
        #: The answer's text (its text steps joined).
        self.answer = "".join(s for s in self.script if isinstance(s, str))
        self.chunk_chars = chunk_chars
        self.delay = delay
        self.model = model
        self.host = host
        self.strict = strict
        #: Every JSON body posted to /chat/completions or /messages, in order.
        self.requests: list[dict[str, Any]] = []
        #: Answers cut short because the client went away (the server then stops).
        self.disconnects = 0
        self.created = int(time.time())
        self._lock = threading.Lock()
        self._queued: deque[tuple[Step, ...]] = deque()
        #: The thinking text of each signature it sent (strict mode checks them).
        self._signed: dict[str, str] = {}
        server_class = _HTTPServerV6 if ":" in host else _HTTPServer
        self._httpd = server_class((host, port), self._handler())
        self._thread: threading.Thread | None = None
        self._serving = False

    @property
    def port(self) -> int:
        """The port it listens on (the one the OS chose for port 0)."""
        return int(self._httpd.server_address[1])

    @property
    def anthropic_base_url(self) -> str:
        """The base URL to give an Anthropic client (the server's root: the client
        adds /v1/messages)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL to give a client, ending in /v1."""
        return self.anthropic_base_url + "/v1"

    def then(self, *answers: str | Sequence[Step]) -> FakeModelServer:
        """Queue `answers` for the next requests, one each, in order (the server's own
        `answer` comes back once they are used up): e.g. a tool call, then the text
        that follows its result."""
        with self._lock:
            self._queued.extend(_script(a) for a in answers)
        return self

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

    def remaining(self, messages: list[dict[str, Any]], answer: str | None = None) -> str:
        """What to stream of a text `answer` (the server's by default): the whole
        answer, or the rest after a partial one."""
        answer = self.answer if answer is None else answer
        partial = ""
        for m in reversed(messages):
            if not isinstance(m, dict):
                continue
            if m.get("role") == "assistant":
                partial = _text_of(m.get("content"))
                break
            if m.get("role") == "tool":
                break
            if m.get("role") == "user" and "continue" not in _text_of(m.get("content")).lower():
                break
        if partial and answer.startswith(partial.rstrip()):
            return (
                answer[len(partial) :]
                if answer.startswith(partial)
                else (answer[len(partial.rstrip()) :])
            )
        return answer

    def model_object(self) -> dict[str, Any]:
        """The fake model as `GET /v1/models` lists it."""
        return {
            "id": self.model,
            "object": "model",
            "created": self.created,
            "owned_by": "chatpersist",
        }

    def _next_script(self) -> tuple[Step, ...]:
        with self._lock:
            return self._queued.popleft() if self._queued else self.script

    def _plan(self, messages: list[dict[str, Any]], call_prefix: str) -> list[_Block]:
        """The blocks to send for the next answer (a text answer may be the rest of a
        partial one)."""
        script = self._next_script()
        if all(isinstance(s, str) for s in script):
            text = self.remaining(messages, "".join(str(s) for s in script))
            return [_Block("text", text)]
        blocks: list[_Block] = []
        for step in script:
            if isinstance(step, str):
                if blocks and blocks[-1].kind == "text":
                    blocks[-1] = _Block("text", blocks[-1].text + step)
                elif step:
                    blocks.append(_Block("text", step))
            elif isinstance(step, FakeReasoning):
                signature = step.signature or _signature(step.text)
                with self._lock:
                    self._signed[signature] = step.text
                blocks.append(
                    _Block("reasoning", step.text, signature=signature, redacted=step.redacted)
                )
            else:
                arguments = (
                    step.arguments if isinstance(step.arguments, str)
                    else json.dumps(dict(step.arguments))
                )  # fmt: skip
                call_id = step.id or call_prefix + secrets.token_hex(12)
                blocks.append(_Block("tool_call", arguments, id=call_id, name=step.name))
        return blocks

    def _check_signatures(self, messages: list[Any]) -> None:
        """A thinking block sent back must be the one sent (its signature says so)."""
        for i, m in enumerate(messages):
            content = m.get("content") if isinstance(m, dict) else None
            for block in content if isinstance(content, list) else ():
                if not isinstance(block, dict) or block.get("type") != "thinking":
                    continue
                with self._lock:
                    sent = self._signed.get(str(block.get("signature")))
                if sent is not None and sent != block.get("thinking"):
                    raise HistoryRuleError(
                        "thinking_signature", i,
                        "a thinking block was changed: its text does not match its signature",
                    )  # fmt: skip

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
                path = self.path.split("?", 1)[0].rstrip("/")
                if path == "/v1/messages":
                    self._anthropic()
                    return
                if path != "/v1/chat/completions":
                    self._read_body()
                    self._not_found()
                    return
                try:
                    body = self._request()
                except _BadRequest as exc:
                    self._error(exc)
                    return
                blocks = server._plan(body["messages"], "call_")
                cid, created = _completion_id(), int(time.time())
                prompt = _tokens(" ".join(str(m.get("content") or "") for m in body["messages"]))
                out = _tokens("".join(b.text for b in blocks))
                usage = {
                    "prompt_tokens": prompt,
                    "completion_tokens": out,
                    "total_tokens": prompt + out,
                }
                if not body.get("stream"):
                    self._json(200, self._completion(cid, created, blocks, usage))
                    return
                options = body.get("stream_options") or {}
                self._start_stream()
                try:
                    self._stream(
                        cid, created, blocks, usage if options.get("include_usage") else None
                    )
                except (BrokenPipeError, ConnectionResetError):
                    with server._lock:  # the client went away: stop generating
                        server.disconnects += 1

            def _start_stream(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()

            def _read_body(self) -> bytes:
                try:
                    length = int(self.headers.get("content-length") or 0)
                except ValueError:
                    length = 0
                return self.rfile.read(length) if length > 0 else b""

            def _body(self) -> dict[str, Any]:
                """The JSON object posted (recorded in `server.requests`)."""
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
                return body

            def _request(self) -> dict[str, Any]:
                """The request body, checked the way the real API checks it."""
                body = self._body()
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
                if server.strict:
                    try:
                        check_openai_messages(messages)
                    except HistoryRuleError as exc:
                        raise _BadRequest(str(exc), "messages", exc.rule) from None
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
                self, cid: str, created: int, blocks: list[_Block], usage: dict[str, int]
            ) -> dict[str, Any]:
                text = "".join(b.text for b in blocks if b.kind == "text")
                message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
                calls = [b for b in blocks if b.kind == "tool_call"]
                reasoning = "".join(b.text for b in blocks if b.kind == "reasoning")
                if reasoning:
                    message["reasoning_content"] = reasoning
                if calls:
                    message["content"] = text or None
                    message["tool_calls"] = [
                        {"id": b.id, "type": "function",
                         "function": {"name": b.name, "arguments": b.text}}
                        for b in calls
                    ]  # fmt: skip
                return {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": server.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "logprobs": None,
                            "finish_reason": "tool_calls" if calls else "stop",
                        }
                    ],
                    "usage": usage,
                    "system_fingerprint": None,
                }

            def _send(self, payload: dict[str, Any] | str, event: str | None = None) -> None:
                data = payload if isinstance(payload, str) else json.dumps(payload)
                head = f"event: {event}\n" if event else ""
                self.wfile.write(f"{head}data: {data}\n\n".encode())
                self.wfile.flush()

            def _stream(
                self, cid: str, created: int, blocks: list[_Block], usage: dict[str, int] | None
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

                def paced(delta: dict[str, Any]) -> None:
                    time.sleep(server.delay)
                    self._send(chunk([choice(delta)]))

                self._send(chunk([choice({"role": "assistant", "content": "", "refusal": None})]))
                n, calls = server.chunk_chars, 0
                for block in blocks:
                    if block.kind == "text":
                        for piece in _pieces(block.text, n):
                            paced({"content": piece})
                    elif block.kind == "reasoning" and block.redacted is None:
                        for piece in _pieces(block.text, n):
                            paced({"reasoning_content": piece})
                    elif block.kind == "tool_call":
                        first = {"index": calls, "id": block.id, "type": "function",
                                 "function": {"name": block.name, "arguments": ""}}  # fmt: skip
                        paced({"tool_calls": [first]})
                        for piece in _pieces(block.text, n):
                            more = {"index": calls, "function": {"arguments": piece}}
                            paced({"tool_calls": [more]})
                        calls += 1
                self._send(chunk([choice({}, finish="tool_calls" if calls else "stop")]))
                if usage is not None:
                    self._send(chunk([], usage=usage))
                self._send("[DONE]")

            # -- Anthropic's Messages API --

            def _anthropic_error(self, status: int, message: str, kind: str) -> None:
                self._json(status, {"type": "error", "error": {"type": kind, "message": message}})

            def _anthropic(self) -> None:
                try:
                    body = self._body()
                except _BadRequest as exc:
                    self._anthropic_error(400, exc.message, "invalid_request_error")
                    return
                problem = self._anthropic_problem(body)
                if problem:
                    self._anthropic_error(400, problem, "invalid_request_error")
                    return
                messages: list[dict[str, Any]] = body["messages"]
                blocks = server._plan(messages, "toolu_")
                mid = "msg_" + secrets.token_hex(12)
                prompt = _tokens(" ".join(_text_of(m.get("content")) for m in messages))
                out = _tokens("".join(b.text for b in blocks))
                stop = "tool_use" if any(b.kind == "tool_call" for b in blocks) else "end_turn"
                if not body.get("stream"):
                    self._json(200, {
                        "id": mid, "type": "message", "role": "assistant", "model": server.model,
                        "content": [self._content_block(b, whole=True) for b in blocks],
                        "stop_reason": stop, "stop_sequence": None,
                        "usage": {"input_tokens": prompt, "output_tokens": out},
                    })  # fmt: skip
                    return
                self._start_stream()
                try:
                    self._anthropic_stream(mid, blocks, prompt, out, stop)
                except (BrokenPipeError, ConnectionResetError):
                    with server._lock:  # the client went away: stop generating
                        server.disconnects += 1

            def _anthropic_problem(self, body: dict[str, Any]) -> str | None:
                """What the real API would reject in `body` (None: nothing)."""
                if not isinstance(body.get("model"), str):
                    return "model: Field required"
                tokens = body.get("max_tokens")
                if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
                    return "max_tokens: Field required (an integer of at least 1)"
                messages = body.get("messages")
                if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                    return "messages: Input should be a valid list of objects"
                if not messages:
                    return "messages: at least one message is required"
                if server.strict:
                    try:
                        check_anthropic_messages(messages)
                        server._check_signatures(messages)
                    except HistoryRuleError as exc:
                        return str(exc)
                return None

            def _content_block(self, block: _Block, *, whole: bool) -> dict[str, Any]:
                """The block as `content_block_start` opens it (`whole`: with everything
                in it, as a non-streamed message has it)."""
                if block.kind == "text":
                    return {"type": "text", "text": block.text if whole else ""}
                if block.kind == "reasoning" and block.redacted is not None:
                    return {"type": "redacted_thinking", "data": block.redacted}
                if block.kind == "reasoning":
                    return {"type": "thinking", "thinking": block.text if whole else "",
                            "signature": block.signature if whole else ""}  # fmt: skip
                value: Any = {}
                if whole:
                    try:
                        value = json.loads(block.text) if block.text.strip() else {}
                    except ValueError:
                        value = {}
                return {"type": "tool_use", "id": block.id, "name": block.name, "input": value}

            def _anthropic_stream(
                self, mid: str, blocks: list[_Block], prompt: int, out: int, stop: str
            ) -> None:
                def event(kind: str, **payload: Any) -> None:
                    self._send({"type": kind, **payload}, event=kind)

                def delta(index: int, **payload: Any) -> None:
                    time.sleep(server.delay)
                    event("content_block_delta", index=index, delta=payload)

                event("message_start", message={
                    "id": mid, "type": "message", "role": "assistant", "content": [],
                    "model": server.model, "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": prompt, "output_tokens": 1},
                })  # fmt: skip
                event("ping")
                n = server.chunk_chars
                for index, block in enumerate(blocks):
                    start = self._content_block(block, whole=False)
                    event("content_block_start", index=index, content_block=start)
                    if start["type"] == "text":
                        for piece in _pieces(block.text, n):
                            delta(index, type="text_delta", text=piece)
                    elif start["type"] == "thinking":
                        for piece in _pieces(block.text, n):
                            delta(index, type="thinking_delta", thinking=piece)
                        delta(index, type="signature_delta", signature=block.signature)
                    elif start["type"] == "tool_use":
                        for piece in _pieces(block.text, n):
                            delta(index, type="input_json_delta", partial_json=piece)
                    event("content_block_stop", index=index)
                event(
                    "message_delta", delta={"stop_reason": stop, "stop_sequence": None},
                    usage={"output_tokens": out},
                )  # fmt: skip
                event("message_stop")

        return Handler


def _script(answer: str | Sequence[Step]) -> tuple[Step, ...]:
    if isinstance(answer, str):
        return (answer,)
    steps = tuple(answer)
    for step in steps:
        if not isinstance(step, str | FakeReasoning | FakeToolCall):
            raise TypeError(
                "an answer's steps are strings, FakeReasoning and FakeToolCall, "
                f"not {type(step).__name__}"
            )
    return steps
