"""The retry policy: what is retried, how long it waits, and its bounds."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest
from providers.sse_server import (
    Close,
    Raw,
    ScriptedServer,
    Sleep,
    Status,
    error,
    free_port,
    openai_delta,
    stream_ok,
)

from chatpersist.providers import (
    OpenAICompatible,
    ProviderError,
    ProviderHTTPError,
    RetryPolicy,
    TextDelta,
)

HI = [{"role": "user", "content": "hi"}]


def text(chunks: Iterable[object]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def provider(url: str, policy: RetryPolicy, timeout: float = 5.0) -> OpenAICompatible:
    return OpenAICompatible(url + "/v1", "m-1", retry=policy, timeout=timeout)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 529])
def test_transient_statuses_are_retried(
    server: ScriptedServer, sleeps: list[float], status: int
) -> None:
    server.then(error(status, "try again"), stream_ok("ok"))
    chunks = list(provider(server.url, RetryPolicy(initial=0.01, sleep=sleeps.append)).stream(HI))
    assert text(chunks) == "ok"
    assert len(server.requests) == 2 and len(sleeps) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_fail_at_once(
    server: ScriptedServer, sleeps: list[float], status: int
) -> None:
    server.then(error(status, f"nope {status}"), stream_ok("never"))
    with pytest.raises(ProviderHTTPError) as info:
        list(provider(server.url, RetryPolicy(sleep=sleeps.append)).stream(HI))
    assert info.value.status == status and not info.value.retryable
    assert str(status) in str(info.value) and f"nope {status}" in str(info.value)
    assert len(server.requests) == 1 and sleeps == []


def test_a_non_json_error_body_is_quoted_as_text(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then(
        [
            Status(404, {"content-type": "text/html"}, reason="Not Found"),
            Raw(b"<h1>no such route</h1>"),
        ]
    )
    with pytest.raises(ProviderHTTPError, match=r"HTTP 404 .*<h1>no such route</h1>"):
        list(provider(server.url, RetryPolicy(sleep=sleeps.append)).stream(HI))


def test_retry_after_as_a_future_http_date(server: ScriptedServer, sleeps: list[float]) -> None:
    when = datetime.now(UTC) + timedelta(seconds=4)
    server.then(
        error(429, "later", {"retry-after": email.utils.format_datetime(when, usegmt=True)}),
        stream_ok("ok"),
    )
    assert text(list(provider(server.url, RetryPolicy(sleep=sleeps.append)).stream(HI))) == "ok"
    assert len(sleeps) == 1 and 2.0 < sleeps[0] <= 4.0  # the date has 1 s resolution


def test_a_retry_after_beyond_the_budget_is_not_waited_for(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then(error(429, "come back in an hour", {"retry-after": "3600"}), stream_ok("late"))
    policy = RetryPolicy(total_seconds=30, sleep=sleeps.append)
    with pytest.raises(ProviderHTTPError, match="come back in an hour") as info:
        list(provider(server.url, policy).stream(HI))
    assert info.value.status == 429 and info.value.retry_after == 3600
    assert sleeps == [] and len(server.requests) == 1


def test_exponential_backoff_capped(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(*[error(502, "bad gateway") for _ in range(5)])
    policy = RetryPolicy(attempts=5, initial=1, max_backoff=3, jitter=False, sleep=sleeps.append)
    with pytest.raises(ProviderHTTPError, match="502"):
        list(provider(server.url, policy).stream(HI))
    assert sleeps == [1, 2, 3, 3] and len(server.requests) == 5


def test_jitter_stays_under_the_backoff(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(*[error(503, "busy") for _ in range(4)])
    policy = RetryPolicy(attempts=4, initial=1, max_backoff=3, sleep=sleeps.append)
    with pytest.raises(ProviderHTTPError):
        list(provider(server.url, policy).stream(HI))
    assert len(sleeps) == 3 and all(0 <= s <= cap for s, cap in zip(sleeps, [1, 2, 3], strict=True))


def test_total_time_is_bounded(server: ScriptedServer) -> None:
    server.then(*[error(500, "down") for _ in range(10)])
    policy = RetryPolicy(attempts=10, total_seconds=0.5, initial=0.2, jitter=False)
    started = time.monotonic()
    with pytest.raises(ProviderHTTPError):
        list(provider(server.url, policy).stream(HI))
    assert time.monotonic() - started < 0.5 and 1 < len(server.requests) < 10


def test_connection_refused_is_retried_then_a_provider_error(sleeps: list[float]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ProviderError, match="ConnectError") as info:
        list(provider(url, RetryPolicy(attempts=3, sleep=sleeps.append)).stream(HI))
    assert info.value.retryable and not info.value.after_text and len(sleeps) == 2


def test_a_bad_url_is_not_retried(sleeps: list[float]) -> None:
    p = OpenAICompatible("ftp://127.0.0.1/v1", "m", retry=RetryPolicy(sleep=sleeps.append))
    with pytest.raises(ProviderError, match="UnsupportedProtocol") as info:
        list(p.stream(HI))
    assert not info.value.retryable and sleeps == []


def test_slow_first_event_after_the_headers_is_retried(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    late = stream_ok("late")
    server.then([late[0], Sleep(1.0), *late[1:]], stream_ok("on time"))
    p = provider(server.url, RetryPolicy(sleep=sleeps.append), timeout=0.3)
    assert text(list(p.stream(HI))) == "on time"
    assert len(server.requests) == 2


def test_a_stream_closed_before_any_text_is_retried(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then([Status(200, {"content-type": "text/event-stream"}), Close()], stream_ok("ok"))
    assert text(list(provider(server.url, RetryPolicy(sleep=sleeps.append)).stream(HI))) == "ok"
    assert len(server.requests) == 2


def test_an_empty_finished_answer_without_done_is_not_an_error(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then(
        [
            Status(200, {"content-type": "text/event-stream"}),
            Raw(openai_delta(finish="content_filter")),
            Close(),
        ],
        stream_ok("must not be asked for"),
    )
    chunks = list(provider(server.url, RetryPolicy(sleep=sleeps.append)).stream(HI))
    assert text(chunks) == "" and len(server.requests) == 1


def test_async_401_then_refused(server: ScriptedServer, sleeps: list[float]) -> None:
    server.then(error(401, "bad key"))

    async def asleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def run(url: str) -> None:
        async for _ in provider(url, RetryPolicy(attempts=2, asleep=asleep)).astream(HI):
            pass

    with pytest.raises(ProviderHTTPError, match="401.*bad key"):
        asyncio.run(run(server.url))
    assert sleeps == []
    with pytest.raises(ProviderError, match="ConnectError") as info:
        asyncio.run(run(f"http://127.0.0.1:{free_port()}"))
    assert info.value.retryable and len(sleeps) == 1


def test_async_slow_first_byte_is_retried(server: ScriptedServer) -> None:
    server.then([Sleep(1.0), *stream_ok("late")], stream_ok("on", " time"))

    async def asleep(seconds: float) -> None:
        pass

    async def run() -> str:
        p = provider(server.url, RetryPolicy(asleep=asleep), timeout=0.3)
        return text([c async for c in p.astream(HI)])

    assert asyncio.run(run()) == "on time"
    assert len(server.requests) == 2
