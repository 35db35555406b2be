"""The streaming HTTP exchange shared by every provider: open with retries, then
read events. The sync and async methods are twins that differ only in I/O."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Literal, Protocol

import httpx
from httpx_sse import EventSource, ServerSentEvent, SSEError, aconnect_sse, connect_sse

from ._chunks import Chunk, ReasoningDelta, TextDelta, ToolCallDelta
from ._errors import ProviderError, ProviderHTTPError
from ._retry import RETRYABLE_STATUS, TRANSIENT, RetryPolicy, parse_retry_after

DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=10.0, pool=10.0)
Message = dict[str, Any]
#: The shape of the history a provider takes: OpenAI's chat messages (`tool_calls` on
#: assistant messages, `role: "tool"` results) or Anthropic's (lists of content blocks).
HistoryFormat = Literal["openai", "anthropic"]


class Provider(Protocol):
    """Anything that streams an answer to a list of messages."""

    def stream(self, messages: list[Message]) -> Iterator[Chunk]:
        """Stream the answer to `messages` as chunks."""
        ...


class EventParser(Protocol):
    #: The stream's end marker was seen ([DONE], message_stop).
    done: bool
    #: A finish reason was seen: the connection closing after it is a normal end.
    finished: bool

    def feed(self, event: ServerSentEvent) -> list[Chunk]: ...


def http_error(response: httpx.Response, body: str) -> ProviderHTTPError:
    detail = body.strip()[:500]
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        err = payload.get("error", payload)
        if isinstance(err, dict):
            detail = str(err.get("message") or err.get("type") or detail)
        elif isinstance(err, str):
            detail = err
    status = response.status_code
    return ProviderHTTPError(
        f"provider answered HTTP {status} {response.reason_phrase}: {detail or '(no message)'}",
        status=status,
        retryable=status in RETRYABLE_STATUS,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def unreachable(url: str, exc: httpx.HTTPError) -> ProviderError:
    """The stream could not be opened, retries included (refused, timed out...)."""
    return ProviderError(
        f"could not open the stream at {url}: {type(exc).__name__}: {exc}".rstrip(": "),
        retryable=isinstance(exc, TRANSIENT),
    )


def _has_content(chunks: list[Chunk]) -> bool:
    return any(isinstance(c, TextDelta | ReasoningDelta | ToolCallDelta) for c in chunks)


class HTTPProvider:
    """Base of the providers: subclasses say what to send and how to read events."""

    #: The shape of the `messages` it takes, in its API's own terms: tool calls, tool
    #: results and reasoning blocks are sent as given.
    history_format: HistoryFormat = "openai"

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None,
        *,
        timeout: httpx.Timeout | float,
        retry: RetryPolicy | None,
        headers: dict[str, str] | None,
        extra_body: dict[str, Any] | None,
        client: httpx.Client | None,
        aclient: httpx.AsyncClient | None,
    ) -> None:
        self.url = url
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.headers = headers or {}
        self.extra_body = extra_body or {}
        self.client = client
        self.aclient = aclient

    def request(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """The headers and JSON body to POST for `messages`, and `tools` (definitions
        in the API's own shape) when given (each provider says)."""
        raise NotImplementedError

    def _prepare(
        self, messages: list[Message], tools: list[dict[str, Any]] | None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        # A subclass written before `tools` existed still works without them.
        return self.request(messages, tools) if tools else self.request(messages)

    def parser(self) -> EventParser:
        """A fresh parser of the provider's SSE events (each provider says)."""
        raise NotImplementedError

    # -- sync --

    def stream(
        self, messages: list[Message], *, tools: list[dict[str, Any]] | None = None
    ) -> Generator[Chunk, None, None]:
        """Stream the answer to `messages` as chunks; `tools` are the tool definitions
        the model may call, in the API's own shape."""
        headers, body = self._prepare(messages, tools)
        own = self.client is None
        client = self.client or httpx.Client(timeout=self.timeout)
        try:
            try:
                for attempt in self.retry.retrying():
                    with attempt:
                        ctx, events, parser, first = self._open(client, headers, body)
            except httpx.HTTPError as exc:
                raise unreachable(self.url, exc) from exc
            try:
                yield from first
                if parser.done:
                    return
                yield from self._rest(events, parser)
            finally:
                ctx.__exit__(None, None, None)
        finally:
            if own:
                client.close()

    def _open(
        self, client: httpx.Client, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[
        AbstractContextManager[EventSource], Iterator[ServerSentEvent], EventParser, list[Chunk]
    ]:
        ctx = connect_sse(client, "POST", self.url, headers=headers, json=body)
        source = ctx.__enter__()
        try:
            if source.response.status_code >= 400:
                raise http_error(source.response, source.response.read().decode("utf-8", "replace"))
            parser = self.parser()
            events = source.iter_sse()
            first: list[Chunk] = []
            for event in events:
                first += parser.feed(event)
                if parser.done or _has_content(first):
                    return ctx, events, parser, first
            if parser.finished:  # an empty answer that ended normally (e.g. no [DONE])
                return ctx, events, parser, first
            raise ProviderError("the stream ended before any text", retryable=True)
        except SSEError as exc:
            ctx.__exit__(None, None, None)
            raise ProviderError(f"not an event stream: {exc}") from exc
        except BaseException:
            ctx.__exit__(None, None, None)
            raise

    def _rest(self, events: Iterator[ServerSentEvent], parser: EventParser) -> Iterator[Chunk]:
        try:
            for event in events:
                yield from parser.feed(event)
                if parser.done:
                    return
        except httpx.HTTPError as exc:
            raise ProviderError(f"connection lost mid-answer: {exc}", after_text=True) from exc
        except ProviderError as exc:
            exc.after_text = True
            raise
        if not parser.finished:
            raise ProviderError("the stream ended before the answer was complete", after_text=True)

    # -- async twin --

    async def astream(
        self, messages: list[Message], *, tools: list[dict[str, Any]] | None = None
    ) -> AsyncGenerator[Chunk, None]:
        """Stream the answer to `messages` as chunks, without blocking the event loop."""
        headers, body = self._prepare(messages, tools)
        own = self.aclient is None
        client = self.aclient or httpx.AsyncClient(timeout=self.timeout)
        try:
            try:
                async for attempt in self.retry.aretrying():
                    with attempt:
                        ctx, events, parser, first = await self._aopen(client, headers, body)
            except httpx.HTTPError as exc:
                raise unreachable(self.url, exc) from exc
            try:
                for chunk in first:
                    yield chunk
                if parser.done:
                    return
                async for chunk in self._arest(events, parser):
                    yield chunk
            finally:
                await ctx.__aexit__(None, None, None)
        finally:
            if own:
                await client.aclose()

    async def _aopen(
        self, client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[
        AbstractAsyncContextManager[EventSource],
        AsyncIterator[ServerSentEvent],
        EventParser,
        list[Chunk],
    ]:
        ctx = aconnect_sse(client, "POST", self.url, headers=headers, json=body)
        source = await ctx.__aenter__()
        try:
            if source.response.status_code >= 400:
                text = (await source.response.aread()).decode("utf-8", "replace")
                raise http_error(source.response, text)
            parser = self.parser()
            events = source.aiter_sse()
            first: list[Chunk] = []
            async for event in events:
                first += parser.feed(event)
                if parser.done or _has_content(first):
                    return ctx, events, parser, first
            if parser.finished:  # an empty answer that ended normally (e.g. no [DONE])
                return ctx, events, parser, first
            raise ProviderError("the stream ended before any text", retryable=True)
        except SSEError as exc:
            await ctx.__aexit__(None, None, None)
            raise ProviderError(f"not an event stream: {exc}") from exc
        except BaseException:
            await ctx.__aexit__(None, None, None)
            raise

    async def _arest(
        self, events: AsyncIterator[ServerSentEvent], parser: EventParser
    ) -> AsyncIterator[Chunk]:
        try:
            async for event in events:
                for chunk in parser.feed(event):
                    yield chunk
                if parser.done:
                    return
        except httpx.HTTPError as exc:
            raise ProviderError(f"connection lost mid-answer: {exc}", after_text=True) from exc
        except ProviderError as exc:
            exc.after_text = True
            raise
        if not parser.finished:
            raise ProviderError("the stream ended before the answer was complete", after_text=True)
