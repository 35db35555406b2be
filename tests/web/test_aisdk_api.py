"""chatpersist.aisdk's endpoints as plain HTTP (the `ai` package itself reads them in
tests/web/test_aisdk_node.py): refusals before any stream, and the chunks in order."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from web.webserver import start_example

from chatpersist.providers import CANNED_ANSWER

# A real uvicorn per test: the slow run.
pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    server = start_example("aisdk_chat", f"sqlite:///{tmp_path}/ai.db", "--fake-delay", "0.001")
    try:
        yield server.url
    finally:
        server.stop()


def body(chat: str, text: str = "why?") -> dict[str, object]:
    return {
        "id": chat, "trigger": "submit-message",
        "messages": [{"id": "u-" + uuid.uuid4().hex, "role": "user",
                      "parts": [{"type": "text", "text": text}]}],
    }  # fmt: skip


def chunks(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    assert text.rstrip().endswith("data: [DONE]")
    return out


def test_an_answer_as_the_protocol_has_it(server: str) -> None:
    chat = uuid.uuid4().hex
    r = httpx.post(server + "/api/chat", json=body(chat), timeout=30)
    assert r.status_code == 200
    assert r.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert r.headers["content-type"].startswith("text/event-stream")
    got = chunks(r.text)
    types = [c["type"] for c in got]
    assert types[:3] == ["start", "start-step", "text-start"]
    assert types[-3:] == ["text-end", "finish-step", "finish"]
    assert "".join(str(c["delta"]) for c in got if c["type"] == "text-delta") == CANNED_ANSWER
    assert got[-1]["finishReason"] == "stop"
    mid = got[0]["messageId"]
    history = httpx.get(f"{server}/api/chat/{chat}/messages").json()
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[1]["id"] == mid and history[1]["parts"][0]["text"] == CANNED_ANSWER
    assert history[1]["metadata"]["status"] == "complete"
    # nothing live any more: the resume endpoint says so
    assert httpx.get(f"{server}/api/chat/{chat}/stream").status_code == 204
    # and Continue refuses a complete answer
    r = httpx.post(f"{server}/api/chat/{chat}/messages/{mid}/continue")
    assert r.status_code == 409


def test_refusals_come_before_any_stream(server: str) -> None:
    chat = uuid.uuid4().hex
    assert httpx.post(server + "/api/chat", content=b"{nope").status_code == 400
    assert httpx.post(server + "/api/chat", json={"id": chat, "messages": []}).status_code == 400
    bad = body(chat)
    bad["trigger"] = "something-else"
    assert httpx.post(server + "/api/chat", json=bad).status_code == 400
    assert httpx.post(server + "/api/chat", json=body("short")).status_code == 403  # authorize
    assert httpx.get(f"{server}/api/chat/{chat}/stream").status_code == 204  # unknown chat
    assert httpx.get(f"{server}/api/chat/{chat}/messages").json() == []
    r = httpx.post(f"{server}/api/chat/{chat}/messages/nope/stop")
    assert r.status_code == 404
