"""OpenAI-compatible streaming against a real SSE server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable

import httpx
import pytest
from providers.sse_server import (
    Close,
    Raw,
    ScriptedServer,
    Sleep,
    Status,
    error,
    openai_delta,
    sse,
    stream_ok,
)

from chatpersist.providers import (
    Finish,
    ModelName,
    OpenAICompatible,
    ProviderError,
    ProviderHTTPError,
    ReasoningDelta,
    RetryPolicy,
    TextDelta,
    Usage,
)

HI = [{"role": "user", "content": "hi"}]


def provider(server: ScriptedServer, sleeps: list[float], **kw: object) -> OpenAICompatible:
    policy = RetryPolicy(attempts=4, initial=0.01, sleep=sleeps.append)
    return OpenAICompatible(server.url + "/v1", "m-1", api_key="sk-test", retry=policy, **kw)  # type: ignore[arg-type]


def text(chunks: Iterable[object]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def test_request_and_all_chunk_kinds(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(
        [
            Status(200, {"content-type": "text/event-stream"}),
            Raw(openai_delta(reasoning_content="thinking... ")),
            Raw(openai_delta("Hello")),
            Raw(openai_delta(", world")),
            Raw(openai_delta(finish="length")),
            Raw(sse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})),
            Raw(sse("[DONE]")),
        ]
    )
    chunks = list(provider(server, sleeps).stream(HI))
    assert text(chunks) == "Hello, world"
    assert ReasoningDelta("thinking... ") in chunks
    assert Finish("length") in chunks and Usage(3, 4) in chunks and ModelName("m-1") in chunks
    req = server.requests[0]
    assert req["line"] == "POST /v1/chat/completions HTTP/1.1"
    assert req["headers"]["authorization"] == "Bearer sk-test"
    assert req["json"]["stream"] is True and req["json"]["messages"] == HI
    assert req["json"]["stream_options"] == {"include_usage": True}


def test_utf8_split_across_writes_crlf_multiline_and_comments(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    word = "héllo 😀 世界"
    event = openai_delta(word)
    cut = event.index("😀".encode()) + 2  # in the middle of the emoji's bytes
    multi = b'data: {"choices": [{"delta":\r\ndata:  {"content": " two lines"}}]}\r\n\r\n'
    server.then(
        [
            Status(200, {"content-type": "text/event-stream"}),
            Raw(b": keep-alive comment\n\n"),
            Raw(event[:cut]),
            Sleep(0.05),
            Raw(event[cut:]),
            Raw(openai_delta(" crlf").replace(b"\n", b"\r\n")),
            Raw(multi),
            Raw(b": another comment\r\n\r\n"),
            Raw(openai_delta(finish="stop")),
            Raw(sse("[DONE]")),
        ]
    )
    assert text(list(provider(server, sleeps).stream(HI))) == word + " crlf two lines"


def test_server_closes_mid_answer(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(
        [Status(200, {"content-type": "text/event-stream"}), Raw(openai_delta("part")), Close()]
    )
    got: list[object] = []
    with pytest.raises(ProviderError) as info:
        for c in provider(server, sleeps).stream(HI):
            got.append(c)
    assert info.value.after_text and text(got) == "part"
    assert len(server.requests) == 1


def test_429_with_retry_after_then_success(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(
        error(429, "slow down", {"retry-after": "2"}),
        error(429, "slow down", {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        stream_ok("ok"),
    )
    assert text(list(provider(server, sleeps).stream(HI))) == "ok"
    assert sleeps == [2.0, 0.0]  # seconds, then an HTTP date already past
    assert len(server.requests) == 3


def test_500_twice_then_success(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(error(500, "oops"), error(503, "busy"), stream_ok("fine"))
    assert text(list(provider(server, sleeps).stream(HI))) == "fine"
    assert len(server.requests) == 3 and len(sleeps) == 2


def test_attempts_are_bounded(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(*[error(502, "bad gateway") for _ in range(5)])
    with pytest.raises(ProviderHTTPError, match="502"):
        list(provider(server, sleeps).stream(HI))
    assert len(server.requests) == 4


def test_401_fails_at_once_with_the_servers_message(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then(error(401, "Incorrect API key provided"), stream_ok("never"))
    with pytest.raises(ProviderHTTPError) as info:
        list(provider(server, sleeps).stream(HI))
    assert info.value.status == 401 and not info.value.retryable
    assert "401" in str(info.value) and "Incorrect API key provided" in str(info.value)
    assert len(server.requests) == 1 and sleeps == []


def test_slow_first_byte_times_out_and_is_retried(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then([Sleep(1.0), *stream_ok("late")], stream_ok("on time"))
    p = provider(server, sleeps, timeout=httpx.Timeout(0.3))
    assert text(list(p.stream(HI))) == "on time"
    assert len(server.requests) == 2


def test_error_after_text_is_not_retried(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(
        [
            Status(200, {"content-type": "text/event-stream"}),
            Raw(openai_delta("some text")),
            Raw(sse({"error": {"message": "server had an error", "type": "server_error"}})),
        ],
        stream_ok("a duplicate"),
    )
    with pytest.raises(ProviderError, match="server had an error") as info:
        list(provider(server, sleeps).stream(HI))
    assert info.value.after_text
    assert len(server.requests) == 1


def test_async_twin(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(error(500, "oops"), stream_ok("as", "ync"))

    async def collect() -> list[object]:
        p = provider(server, sleeps)
        p.retry = RetryPolicy(initial=0.01, asleep=_record(sleeps))
        return [c async for c in p.astream(HI)]

    assert text(asyncio.run(collect())) == "async"
    assert len(server.requests) == 2 and len(sleeps) == 1


def _record(sleeps: list[float]):  # type: ignore[no-untyped-def]
    async def asleep(seconds: float) -> None:
        sleeps.append(seconds)

    return asleep


def test_async_close_mid_answer(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(
        [Status(200, {"content-type": "text/event-stream"}), Raw(openai_delta("x")), Close()]
    )

    async def collect() -> None:
        async for _ in provider(server, sleeps).astream(HI):
            pass

    with pytest.raises(ProviderError) as info:
        asyncio.run(collect())
    assert info.value.after_text


def test_not_an_event_stream(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then([Status(200, {"content-type": "application/json"}), Raw(json.dumps({}).encode())])
    with pytest.raises(ProviderError, match="not an event stream"):
        list(provider(server, sleeps).stream(HI))


def test_model_name_once_headers_and_extra_body(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then(stream_ok("a", "b", "c"))
    p = provider(server, sleeps, headers={"x-tenant": "t1"}, extra_body={"temperature": 0.5})
    chunks = list(p.stream(HI))
    assert [c for c in chunks if isinstance(c, ModelName)] == [ModelName("m-1")]
    req = server.requests[0]
    assert req["headers"]["x-tenant"] == "t1" and req["json"]["temperature"] == 0.5
    assert req["json"]["model"] == "m-1"


def test_stopping_early_hangs_up_at_once(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then([*stream_ok("first")[:2], Sleep(5), *stream_ok("never")[1:]])
    stream = provider(server, sleeps).stream(HI)
    started = time.monotonic()
    assert next(c for c in stream if isinstance(c, TextDelta)) == TextDelta("first")
    stream.close()  # e.g. the user pressed Stop
    assert time.monotonic() - started < 2


def test_async_error_after_text_is_not_retried(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(
        [Status(200, {"content-type": "text/event-stream"}), Raw(openai_delta("so far")),
         Raw(sse({"error": {"message": "upstream died", "type": "server_error"}}))],
        stream_ok("a duplicate"),
    )  # fmt: skip
    got: list[object] = []

    async def collect() -> None:
        async for c in provider(server, sleeps).astream(HI):
            got.append(c)

    with pytest.raises(ProviderError, match="upstream died") as info:
        asyncio.run(collect())
    assert info.value.after_text and text(got) == "so far" and len(server.requests) == 1
