"""OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp, Ollama, LM Studio,
OpenRouter...), streamed over SSE."""

from __future__ import annotations

import json
from typing import Any

import httpx
from httpx_sse import ServerSentEvent

from ._chunks import Chunk
from ._errors import ProviderError
from ._http import DEFAULT_TIMEOUT, HistoryFormat, HTTPProvider, Message
from ._parse import StreamState, openai_chunks
from ._retry import RetryPolicy


class _Parser(StreamState):
    def feed(self, event: ServerSentEvent) -> list[Chunk]:
        data = event.data.strip()
        if not data:
            return []
        if data == "[DONE]":
            self.done = True
            return []
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise ProviderError(f"malformed event from provider: {data[:200]!r}") from exc
        return self.note(openai_chunks(payload))


class OpenAICompatible(HTTPProvider):
    """`POST {base_url}/chat/completions` with `stream: true`. The messages go as given
    (assistant messages with `tool_calls`, `role: "tool"` results included)."""

    history_format: HistoryFormat = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        headers: dict[str, str] | None = None,
        extra_body: dict[str, Any] | None = None,
        client: httpx.Client | None = None,
        aclient: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url.rstrip("/") + "/chat/completions", model, api_key, timeout=timeout,
            retry=retry, headers=headers, extra_body=extra_body, client=client, aclient=aclient,
        )  # fmt: skip

    def request(
        self, messages: list[Message], tools: list[dict[str, Any]] | None = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """The headers and JSON body of the chat completions request for `messages`
        (and `tools`, OpenAI's `{"type": "function", "function": {...}}` definitions)."""
        headers = {"accept": "text/event-stream", **self.headers}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.extra_body,
        }
        if tools:
            body["tools"] = tools
        return headers, body

    def parser(self) -> _Parser:
        """A fresh parser of this API's SSE events."""
        return _Parser()
