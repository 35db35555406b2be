"""Anthropic's Messages API, streamed over SSE."""

from __future__ import annotations

import json
from typing import Any

import httpx
from httpx_sse import ServerSentEvent

from ._chunks import Chunk
from ._errors import ProviderError
from ._http import DEFAULT_TIMEOUT, HistoryFormat, HTTPProvider, Message
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
    """`POST {base_url}/v1/messages` with `stream: true`. System messages go to the
    top-level `system` field; the others as given (content as a string or a list of
    blocks: text, thinking, redacted_thinking, tool_use, tool_result...); a last
    assistant message is a prefill."""

    history_format: HistoryFormat = "anthropic"

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

    def request(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """The headers and JSON body of the Messages API request for `messages` (and
        `tools`, Anthropic's `{"name", "description", "input_schema"}` definitions)."""
        headers = {
            "accept": "text/event-stream",
            "anthropic-version": API_VERSION,
            **self.headers,
        }
        if self.api_key:
            headers["x-api-key"] = self.api_key
        system = [m.get("content") for m in messages if m.get("role") == "system"]
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [m for m in messages if m.get("role") != "system"],
            "stream": True,
            **self.extra_body,
        }
        if system:
            body["system"] = _system(system)
        if tools:
            body["tools"] = tools
        return headers, body

    def parser(self) -> _Parser:
        """A fresh parser of this API's SSE events."""
        return _Parser()


def _system(contents: list[Any]) -> str | list[Any]:
    """The `system` field: the system messages' texts joined, or their blocks in a list
    when one of them has a list of blocks (e.g. with `cache_control`)."""
    if all(isinstance(c, str) for c in contents):
        return "\n\n".join(contents)
    blocks: list[Any] = []
    for content in contents:
        if isinstance(content, list):
            blocks += content
        elif content:
            blocks.append({"type": "text", "text": str(content)})
    return blocks
