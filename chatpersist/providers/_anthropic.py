"""Anthropic's Messages API, streamed over SSE."""

from __future__ import annotations

import json
from typing import Any

import httpx
from httpx_sse import ServerSentEvent

from ._chunks import Chunk
from ._errors import ProviderError
from ._http import DEFAULT_TIMEOUT, HTTPProvider, Message
from ._parse import StreamState, anthropic_chunks
from ._retry import RetryPolicy

API_VERSION = "2023-06-01"


class _Parser(StreamState):
    def feed(self, event: ServerSentEvent) -> list[Chunk]:
        if not event.data.strip():
            return []
        try:
            payload = json.loads(event.data)
        except ValueError as exc:
            raise ProviderError(f"malformed event from provider: {event.data[:200]!r}") from exc
        if not isinstance(payload, dict):
            raise ProviderError(f"malformed event from provider: {event.data[:200]!r}")
        kind = event.event if event.event and event.event != "message" else payload.get("type")
        if kind == "message_stop":
            self.done = True
            return []
        return self.note(anthropic_chunks(payload, kind))


class Anthropic(HTTPProvider):
    """`POST {base_url}/v1/messages` with `stream: true`. A leading system message goes
    to the top-level `system` field; a last assistant message is a prefill."""

    #: The model extends a last assistant message (used to continue cut answers).
    prefill = True

    def __init__(
        self,
        model: str,
        api_key: str | None = None,
        base_url: str = "https://api.anthropic.com",
        *,
        max_tokens: int = 4096,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        headers: dict[str, str] | None = None,
        extra_body: dict[str, Any] | None = None,
        client: httpx.Client | None = None,
        aclient: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url.rstrip("/") + "/v1/messages", model, api_key, timeout=timeout,
            retry=retry, headers=headers, extra_body=extra_body, client=client, aclient=aclient,
        )  # fmt: skip
        self.max_tokens = max_tokens

    def request(self, messages: list[Message]) -> tuple[dict[str, str], dict[str, Any]]:
        """The headers and JSON body of the Messages API request for `messages`."""
        headers = {
            "accept": "text/event-stream",
            "anthropic-version": API_VERSION,
            **self.headers,
        }
        if self.api_key:
            headers["x-api-key"] = self.api_key
        system = [m["content"] for m in messages if m.get("role") == "system"]
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [m for m in messages if m.get("role") != "system"],
            "stream": True,
            **self.extra_body,
        }
        if system:
            body["system"] = "\n\n".join(str(s) for s in system)
        return headers, body

    def parser(self) -> _Parser:
        """A fresh parser of this API's SSE events."""
        return _Parser()
