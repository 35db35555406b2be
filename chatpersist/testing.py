"""Helpers for testing an app that uses chatpersist: clocks that tests control.

    store = ChatStore(url, clock=ManualClock())   # flush timers move only when told
    later = ChatStore(store.engine, clock=OffsetClock(31))  # sees leases expire now
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from ._clock import SystemClock

__all__ = ["ManualClock", "OffsetClock"]


class ManualClock:
    """A clock that moves only when told to: `advance(seconds)` moves both the
    monotonic clock (flush timers) and the wall clock (timestamps, leases)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._mono = 0.0
        self._wall = start or datetime(2024, 1, 1, tzinfo=UTC)

    def monotonic(self) -> float:
        """Seconds since the clock was made, moved only by `advance`."""
        with self._lock:
            return self._mono

    def now(self) -> datetime:
        """The wall time: `start` plus every `advance` so far."""
        with self._lock:
            return self._wall

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by `seconds`."""
        with self._lock:
            self._mono += seconds
            self._wall += timedelta(seconds=seconds)


class OffsetClock(SystemClock):
    """Real time seen from `offset` seconds in the future: a second store with it
    reads a draft as another server would once its lease has passed."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> datetime:
        """The real wall time plus `offset` seconds."""
        return super().now() + timedelta(seconds=self.offset)
