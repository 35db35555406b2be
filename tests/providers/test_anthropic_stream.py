"""Anthropic Messages streaming against a real SSE server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from sse_server import Raw, ScriptedServer, Status, error, sse

from chatpersist.providers import (
    Anthropic,
    Finish,
    ModelName,
    ProviderError,
    ReasoningDelta,
    RetryPolicy,
    TextDelta,
    Usage,
)

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def ev(kind: str, **payload: object) -> bytes:
    return sse({"type": kind, **payload}, event=kind)


def answer(*texts: str, stop: str = "end_turn") -> list[object]:
    return [
        Status(200, {"content-type": "text/event-stream"}),
        Raw(ev("message_start", message={"model": "claude-x", "usage": {"input_tokens": 9}})),
        Raw(ev("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""})),
        Raw(ev("ping")),
        Raw(ev("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "hmm"})),
        Raw(ev("content_block_stop", index=0)),
        *[
            Raw(ev("content_block_delta", index=1, delta={"type": "text_delta", "text": t}))
            for t in texts
        ],
        Raw(ev("message_delta", delta={"stop_reason": stop}, usage={"output_tokens": 5})),
        Raw(ev("message_stop")),
    ]


def provider(server: ScriptedServer, sleeps: list[float]) -> Anthropic:
    return Anthropic(
        "claude-x", api_key="key", base_url=server.url,
        retry=RetryPolicy(initial=0.01, sleep=sleeps.append),
    )  # fmt: skip


def test_event_sequence(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(answer("Hel", "lo"))  # type: ignore[arg-type]
    chunks = list(provider(server, sleeps).stream(MSGS))
    assert "".join(c.text for c in chunks if isinstance(c, TextDelta)) == "Hello"
    assert ReasoningDelta("hmm") in chunks and Finish("end_turn") in chunks
    assert ModelName("claude-x") in chunks
    assert Usage(input_tokens=9) in chunks and Usage(output_tokens=5) in chunks
    req = server.requests[0]
    assert req["line"].startswith("POST /v1/messages ")
    assert req["headers"]["x-api-key"] == "key"
    assert req["headers"]["anthropic-version"] == "2023-06-01"
    assert req["json"]["system"] == "be brief"
    assert req["json"]["messages"] == [{"role": "user", "content": "hi"}]


def test_overloaded_before_text_is_retried(server: ScriptedServer, sleeps: list[float]) -> None:
    overloaded = [
        Status(200, {"content-type": "text/event-stream"}),
        Raw(ev("message_start", message={"model": "claude-x"})),
        Raw(ev("error", error={"type": "overloaded_error", "message": "Overloaded"})),
    ]
    server.then(overloaded, error(529, "Overloaded"), answer("ok"))  # type: ignore[arg-type]
    chunks = list(provider(server, sleeps).stream(MSGS))
    assert [c.text for c in chunks if isinstance(c, TextDelta)] == ["ok"]
    assert len(server.requests) == 3


def test_error_event_after_text_is_not_retried(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(
        [
            Status(200, {"content-type": "text/event-stream"}),
            Raw(ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hi"})),
            Raw(ev("error", error={"type": "overloaded_error", "message": "Overloaded"})),
        ],
        answer("dup"),  # type: ignore[arg-type]
    )
    with pytest.raises(ProviderError, match="overloaded_error") as info:
        list(provider(server, sleeps).stream(MSGS))
    assert info.value.after_text and len(server.requests) == 1


def test_async(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(answer("as", "ync"))  # type: ignore[arg-type]

    async def run() -> str:
        return "".join(
            [c.text async for c in provider(server, sleeps).astream(MSGS) if isinstance(c, TextDelta)]
        )

    assert asyncio.run(run()) == "async"
