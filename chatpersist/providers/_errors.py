"""Errors a provider stream raises."""

from __future__ import annotations

from .._errors import ChatPersistError


class ProviderError(ChatPersistError):
    """The provider failed. `after_text` is True when answer text had already streamed
    (the request is then never retried: a retry would repeat that text)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        after_text: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.after_text = after_text
        self.retry_after = retry_after
        #: Set by `stream_into`: the message that holds the partial answer.
        self.message_id: str | None = None


class ProviderHTTPError(ProviderError):
    """The provider answered with an HTTP error status."""
