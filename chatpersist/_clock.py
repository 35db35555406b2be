"""Time sources. The flusher takes its clock as a plain object so tests can drive it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What a store needs of a clock (see `chatpersist.testing` for ones tests drive)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: flush timers use it."""
        ...

    def now(self) -> datetime:
        """Aware UTC wall time: stored timestamps and leases use it."""
        ...


class SystemClock:
    """The real clocks: `time.monotonic()` and `datetime.now(UTC)`."""

    def monotonic(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()

    def now(self) -> datetime:
        """`datetime.now(UTC)`."""
        return datetime.now(UTC)
