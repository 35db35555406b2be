"""Helpers shared by the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from chatpersist import SystemClock


def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class OffsetClock(SystemClock):
    """Real time, seen from `offset` seconds in the future (for lease checks)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.offset)
