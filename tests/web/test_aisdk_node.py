"""The AI SDK's own client against chatpersist.aisdk on a real uvicorn: the `ai` package
(pinned in node/package.json) sends and resumes with `DefaultChatTransport` and reads the
chunks with `readUIMessageStream` (node/aisdk_client.mjs), so every chunk the backend
sends goes through the SDK's own parser and schema. The plain-HTTP view of the same
endpoints is tests/web/test_aisdk_api.py.

Needs Node.js and npm (the `ai` package is installed with `npm ci` from the committed
lockfile the first time): skipped without them, except in CI (CI=true or
CHATPERSIST_REQUIRE_DBS=1), where that fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from providers.sse_server import Close, Raw, ScriptedServer, Sleep, Status, error, openai_delta
from support import REQUIRED
from web.webserver import start_example

from chatpersist.providers import CANNED_ANSWER

# A real uvicorn and Node.js per test (and `npm ci` on a first run): the slow run.
pytestmark = pytest.mark.slow

NODE_DIR = Path(__file__).resolve().parent / "node"
CLIENT = NODE_DIR / "aisdk_client.mjs"
#: The fake model's pace: the canned answer then takes about 1.5 s, time enough to
#: drop the connection mid-answer and come back while it is still being written.
FAKE_DELAY = 0.005

Result = dict[str, Any]


# -- Node and the `ai` package -----------------------------------------------------------


def _unavailable(why: str) -> NoReturn:
    if REQUIRED:
        pytest.fail(f"{why}; the AI SDK client tests are required in CI")
    pytest.skip(why)


def _installed_ai() -> str | None:
    """The version of `ai` in tests/web/node/node_modules (None when not installed)."""
    try:
        return str(json.loads((NODE_DIR / "node_modules/ai/package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="session")
def node() -> str:
    """The `node` executable, with tests/web/node/node_modules installed by `npm ci` when
    it is missing or holds another `ai` than package.json pins."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        _unavailable(f"{missing} not found: the AI SDK client tests need Node.js and npm")
    assert node is not None and npm is not None
    if _installed_ai() != json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["ai"]:
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                text=True, timeout=600,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            _unavailable(f"`npm ci` in {NODE_DIR} timed out")
        else:
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip()[-2000:]
                _unavailable(f"`npm ci` in {NODE_DIR} failed:\n{tail}")
    return node


def run_client(node: str, url: str, scenario: str) -> Result:
    """What aisdk_client.mjs prints for `scenario` against the server at `url`."""
    try:
        done = subprocess.run(
            [node, str(CLIENT), url, scenario], cwd=NODE_DIR, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the AI SDK client hung ({scenario}): stdout={exc.stdout!r}")
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, (
        f"the AI SDK client failed ({scenario}, exit {done.returncode}):\n"
        f"stdout: {done.stdout}\nstderr: {done.stderr}"
    )
    result: Result = json.loads(lines[-1])
    assert result["scenario"] == scenario
    return result


# -- the example server ------------------------------------------------------------------


@contextmanager
def example_server(db: str, *args: str) -> Iterator[str]:
    """`python -m examples.aisdk_chat` on uvicorn (policy "finish": an answer goes on
    when its client leaves, so `reconnectToStream` finds it)."""
    server = start_example("aisdk_chat", db, "--policy", "finish", *args)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example with its built-in fake model (the canned answer)."""
    db = f"sqlite:///{tmp_path_factory.mktemp('aisdk')}/chat.db"
    with example_server(db, "--fake-delay", str(FAKE_DELAY)) as url:
        yield url


@pytest.fixture(scope="module")
def broken_model() -> Iterator[ScriptedServer]:
    """An OpenAI-compatible model server that plays the scripts each test queues."""
    model = ScriptedServer()
    yield model
    model.close()


@pytest.fixture(scope="module")
def broken_server(
    tmp_path_factory: pytest.TempPathFactory, broken_model: ScriptedServer
) -> Iterator[str]:
    """The example with `broken_model` as its model."""
    db = f"sqlite:///{tmp_path_factory.mktemp('aisdk-broken')}/chat.db"
    with example_server(db, "--base-url", broken_model.url + "/v1") as url:
        yield url


def stored(url: str, chat_id: str) -> list[Result]:
    """The chat as the backend has it (GET /api/chat/{id}/messages)."""
    r = httpx.get(f"{url}/api/chat/{chat_id}/messages", timeout=10)
    r.raise_for_status()
    history: list[Result] = r.json()
    return history


def assert_whole_answer(answer: Result) -> None:
    """A complete canned answer, read without any error by the SDK."""
    assert answer["errors"] == [] and answer["thrown"] is None, answer
    assert answer["role"] == "assistant"
    assert answer["text"] == CANNED_ANSWER
    assert answer["textParts"] == 1 and answer["textState"] == ["done"]
    types = answer["chunkTypes"]
    assert types[:3] == ["start", "start-step", "text-start"], types
    assert str(types[3]).startswith("text-delta"), types
    assert types[4:] == ["text-end", "finish-step", "finish"], types
    assert answer["finishReason"] == "stop"
    assert answer["metadata"] == {
        "status": "complete", "finishReason": "stop", "interrupted": False, "live": False,
    }  # fmt: skip


def assert_stored_complete(url: str, chat_id: str, message_id: str) -> None:
    history = stored(url, chat_id)
    assert [m["role"] for m in history] == ["user", "assistant"]
    user, assistant = history
    assert user["parts"] == [{"type": "text", "text": "Why save drafts?"}]
    assert assistant["id"] == message_id
    assert assistant["parts"] == [{"type": "text", "text": CANNED_ANSWER}]
    assert assistant["metadata"] == {
        "status": "complete", "finishReason": "stop", "interrupted": False, "live": False,
    }  # fmt: skip


# -- the scenarios -----------------------------------------------------------------------


def test_full_answer(node: str, server: str) -> None:
    got = run_client(node, server, "full")
    assert_whole_answer(got["answer"])
    assert got["afterFinish"] is None  # reconnectToStream: 204 once it is finished
    assert_stored_complete(server, got["chatId"], got["answer"]["messageId"])


def test_reconnect_mid_answer_replays_it_whole(node: str, server: str) -> None:
    got = run_client(node, server, "reconnect")
    assert got["resumeStreamIsReplay"] is True  # the SDK's default, which resume() keeps
    partial = got["partial"]
    assert 0 < len(partial["text"]) < len(CANNED_ANSWER), partial
    assert CANNED_ANSWER.startswith(partial["text"])
    assert partial["finishReason"] is None  # the connection was dropped mid-answer
    resumed = got["resumed"]
    assert resumed is not None, (
        "reconnectToStream found nothing live after the client dropped its POST: "
        "the server must run with policy 'finish'"
    )
    assert resumed["messageId"] == partial["messageId"]
    assert_whole_answer(resumed)  # a replay from the start, then live, then the finish
    assert got["afterFinish"] is None
    assert_stored_complete(server, got["chatId"], partial["messageId"])


def test_nothing_live_is_null(node: str, server: str) -> None:
    got = run_client(node, server, "no-live")
    assert got["result"] is None
    assert stored(server, got["chatId"]) == []


def _cut_eof() -> list[Any]:
    # The body ends (connection closed) before any finish reason or [DONE].
    return [
        Status(200, {"content-type": "text/event-stream"}),
        Raw(openai_delta("Partial ")), Raw(openai_delta("answer, then")),
        Sleep(0.2), Close(),
    ]  # fmt: skip


def _cut_chunked() -> list[Any]:
    # A chunked body whose connection drops without its last chunk.
    def chunk(data: bytes) -> Raw:
        return Raw(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    return [
        Status(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"}),
        chunk(openai_delta("Partial ")), chunk(openai_delta("answer, then")),
        Sleep(0.2), Close(),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (_cut_eof, "the stream ended before the answer was complete"),
        (_cut_chunked, "connection lost mid-answer"),
    ],
    ids=["closed", "chunked-cut"],
)
def test_model_failing_mid_answer(
    node: str,
    broken_server: str,
    broken_model: ScriptedServer,
    script: Any,
    message: str,
) -> None:
    broken_model.then(script())
    got = run_client(node, broken_server, "error")
    answer = got["answer"]
    # The SDK surfaces the `error` chunk (readUIMessageStream's onError) ...
    assert len(answer["errorChunks"]) == 1 and message in answer["errorChunks"][0], answer
    assert answer["errors"] == answer["errorChunks"] and answer["thrown"] is None
    # ... and still reads the text so far and the interrupted finish.
    assert answer["text"] == "Partial answer, then"
    # The error comes after the finish: useChat stops reading at an `error` chunk, and
    # the message must get its end (text part done, metadata) first.
    assert answer["chunkTypes"] == [
        "start", "start-step", "text-start", "text-delta*2",
        "text-end", "finish-step", "finish", "error",
    ]  # fmt: skip
    assert answer["finishReason"] == "interrupted"
    # (an interrupted answer keeps status 'streaming', with the reason it was cut)
    assert answer["metadata"] == {
        "status": "streaming", "finishReason": "provider_error", "interrupted": True,
        "live": False,
    }  # fmt: skip
    assert got["afterFinish"] is None
    # The partial text is stored, interrupted.
    history = stored(broken_server, got["chatId"])
    assert [m["role"] for m in history] == ["user", "assistant"]
    assistant = history[1]
    assert assistant["id"] == answer["messageId"]
    assert assistant["parts"] == [{"type": "text", "text": "Partial answer, then"}]
    assert assistant["metadata"] == {
        "status": "streaming", "finishReason": "provider_error", "interrupted": True,
        "live": False,
    }  # fmt: skip
    assert not broken_model.scripts  # the model was asked once (no retry after text)


def test_model_answering_http_500(
    node: str, broken_server: str, broken_model: ScriptedServer
) -> None:
    # Retried (500 is retryable; Retry-After: 0 keeps it quick), then given up on.
    attempts = 4  # RetryPolicy().attempts
    broken_model.then(
        *[error(500, "the model fell over", {"retry-after": "0"}) for _ in range(attempts)]
    )
    got = run_client(node, broken_server, "error")
    answer = got["answer"]
    assert len(answer["errorChunks"]) == 1, answer
    assert "HTTP 500" in answer["errorChunks"][0]
    assert "the model fell over" in answer["errorChunks"][0]
    assert answer["errors"] == answer["errorChunks"] and answer["thrown"] is None
    assert answer["text"] == ""
    assert answer["chunkTypes"] == ["start", "start-step", "finish-step", "finish", "error"]
    assert answer["finishReason"] == "interrupted"
    assert answer["metadata"]["interrupted"] is True
    assert answer["metadata"]["finishReason"] == "provider_error"
    assert got["afterFinish"] is None
    history = stored(broken_server, got["chatId"])
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[1]["id"] == answer["messageId"]
    assert history[1]["parts"] == []
    assert history[1]["metadata"]["interrupted"] is True
    assert history[1]["metadata"]["live"] is False
    assert not broken_model.scripts


def test_reasoning_streams_as_a_reasoning_part(
    node: str, broken_server: str, broken_model: ScriptedServer
) -> None:
    """A model that thinks first (`reasoning_content`, as OpenAI-compatible servers
    send it): the page gets a reasoning part, then the text."""
    broken_model.then(
        [
            Status(200, {"content-type": "text/event-stream"}),
            Raw(openai_delta(reasoning_content="Let me ")),
            Raw(openai_delta(reasoning_content="think.")),
            Raw(openai_delta("The ")), Raw(openai_delta("answer.")),
            Raw(openai_delta(finish="stop")), Raw(b"data: [DONE]\n\n"),
        ]
    )  # fmt: skip
    got = run_client(node, broken_server, "error")
    answer = got["answer"]
    assert answer["reasoning"] == "Let me think." and answer["text"] == "The answer."
    assert answer["partTypes"][-2:] == ["reasoning", "text"], answer["partTypes"]
    types = answer["chunkTypes"]
    assert types[:5] == [
        "start", "start-step", "reasoning-start", "reasoning-delta*2", "reasoning-end",
    ], types  # fmt: skip
    assert answer["finishReason"] == "stop" and not answer["errorChunks"]
    # The reasoning is stored too: the history has it as a reasoning part, before the text.
    history = stored(broken_server, got["chatId"])
    assert history[1]["parts"] == [
        {"type": "reasoning", "text": "Let me think."},
        {"type": "text", "text": "The answer."},
    ]
