"""When to retry opening a provider stream, as a plain policy object.

Only the act of opening is retried: connecting, sending, the status line, and
reading up to the first piece of text. Once text has streamed, a retry would
repeat it, so errors after that point are raised instead.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)
from tenacity.stop import StopBaseT

from ._errors import ProviderError

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504, 529})
TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` in all, within `total_seconds`; exponential backoff from `initial`
    up to `max_backoff`, with full jitter; a server's Retry-After wins when given.
    A wait that would end past `total_seconds` is not taken: the last error is raised."""

    attempts: int = 4
    total_seconds: float = 60.0
    initial: float = 0.5
    max_backoff: float = 8.0
    jitter: bool = True
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    asleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = getattr(exc, "retry_after", None)
        if after is not None:
            return float(after)
        backoff = min(self.max_backoff, self.initial * 2 ** (state.attempt_number - 1))
        return random.uniform(0, backoff) if self.jitter else backoff

    def _stop(self) -> StopBaseT:
        # stop_before_delay counts the coming wait, so no wait ends past the budget.
        return stop_after_attempt(self.attempts) | stop_before_delay(self.total_seconds)

    def retrying(self) -> Retrying:
        """A tenacity `Retrying` for this policy (sync)."""
        return Retrying(
            sleep=self.sleep, retry=retry_if_exception(retryable), wait=self._wait,
            stop=self._stop(), reraise=True,
        )  # fmt: skip

    def aretrying(self) -> AsyncRetrying:
        """A tenacity `AsyncRetrying` for this policy (asyncio)."""
        return AsyncRetrying(
            sleep=self.asleep, retry=retry_if_exception(retryable), wait=self._wait,
            stop=self._stop(), reraise=True,
        )  # fmt: skip


NO_RETRY = RetryPolicy(attempts=1)


def retryable(exc: BaseException) -> bool:
    if isinstance(exc, ProviderError):
        return exc.retryable and not exc.after_text
    # Connect errors, timeouts (a slow first byte included), dropped connections; not
    # a bad URL or a proxy misconfiguration, which a retry would only repeat.
    return isinstance(exc, TRANSIENT)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds or as an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
