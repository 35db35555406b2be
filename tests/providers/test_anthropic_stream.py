"""Anthropic Messages streaming against a real SSE server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from providers.sse_server import Action, Raw, ScriptedServer, Status, error, sse

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


def answer(*texts: str, stop: str = "end_turn") -> list[Action]:
    return [
        Status(200, {"content-type": "text/event-stream"}),
        Raw(ev("message_start", message={"model": "claude-x", "usage": {"input_tokens": 9}})),
        Raw(ev("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""})),
        Raw(ev("ping")),
        Raw(
            ev("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "hmm"})
        ),
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
    server.then(answer("Hel", "lo"))
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
    overloaded: list[Action] = [
        Status(200, {"content-type": "text/event-stream"}),
        Raw(ev("message_start", message={"model": "claude-x"})),
        Raw(ev("error", error={"type": "overloaded_error", "message": "Overloaded"})),
    ]
    server.then(overloaded, error(529, "Overloaded"), answer("ok"))
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
        answer("dup"),
    )
    with pytest.raises(ProviderError, match="overloaded_error") as info:
        list(provider(server, sleeps).stream(MSGS))
    assert info.value.after_text and len(server.requests) == 1


def test_async(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(answer("as", "ync"))

    async def run() -> str:
        return "".join(
            [
                c.text
                async for c in provider(server, sleeps).astream(MSGS)
                if isinstance(c, TextDelta)
            ]
        )

    assert asyncio.run(run()) == "async"


def test_http_529_names_the_anthropic_error(server: ScriptedServer, sleeps: list[float]) -> None:
    body = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    busy: list[Action] = [
        Status(529, {"content-type": "application/json"}, reason="Overloaded"),
        Raw(body),
    ]
    server.then(*[busy] * 4)
    with pytest.raises(ProviderError, match="HTTP 529.*Overloaded") as info:
        list(provider(server, sleeps).stream(MSGS))
    assert info.value.status == 529 and len(server.requests) == 4 and len(sleeps) == 3


def test_no_system_field_without_a_system_message(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then(answer("x"))
    p = Anthropic(
        "claude-x", base_url=server.url + "/", max_tokens=77, extra_body={"temperature": 0}
    )
    list(p.stream([{"role": "user", "content": "hi"}]))
    req = server.requests[0]
    assert req["line"].startswith("POST /v1/messages ") and "x-api-key" not in req["headers"]
    assert "system" not in req["json"] and req["json"]["max_tokens"] == 77
    assert req["json"]["temperature"] == 0 and req["json"]["stream"] is True


def test_async_overloaded_event_retried_then_cut_after_text(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    overloaded = Raw(ev("error", error={"type": "overloaded_error", "message": "Overloaded"}))
    started: list[Action] = [Status(200, {"content-type": "text/event-stream"}), Raw(ev("ping"))]
    cut = Raw(ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "Par"}))
    server.then([*started, overloaded], [*started, cut, overloaded], answer("never"))

    async def asleep(seconds: float) -> None:
        sleeps.append(seconds)

    got: list[object] = []

    async def run() -> None:
        p = provider(server, sleeps)
        p.retry = RetryPolicy(initial=0.01, asleep=asleep)
        async for c in p.astream(MSGS):
            got.append(c)

    with pytest.raises(ProviderError, match="overloaded_error") as info:
        asyncio.run(run())
    assert info.value.after_text and got == [TextDelta("Par")]
    assert len(server.requests) == 2 and len(sleeps) == 1


def test_model_name_is_reported_once(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(answer("a", "b", "c"))
    chunks = list(provider(server, sleeps).stream(MSGS))
    assert [c for c in chunks if isinstance(c, ModelName)] == [ModelName("claude-x")]
