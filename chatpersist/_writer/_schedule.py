"""When drafts are due: which to write at a wake-up, and how long to sleep until the next."""

from __future__ import annotations

import heapq

from .._schema import STREAMING
from ._base import _Base
from ._state import DraftState, _Job

# Longest the writer sleeps while drafts are open, so an injected clock that jumps
# ahead is noticed promptly.
_MAX_TICK = 0.25
#: `first_pending_at` of a draft whose flush was asked for (`Writer.flush_now`): due now.
_FORCED = float("-inf")


class _Scheduler(_Base):
    def _sleep_time(self) -> float | None:
        if not self._drafts:
            self._wake_at = None
            return None
        now = self._clock.monotonic()
        wake = self._beat_scan_at
        if self._timers:
            wake = min(wake, self._timers[0][0])
        self._wake_at = wake
        return max(0.0, min(wake - now, _MAX_TICK))

    def _collect(self) -> list[_Job]:
        now = self._clock.monotonic()
        while self._timers and self._timers[0][0] <= now:
            state = heapq.heappop(self._timers)[2]
            self._candidates[id(state)] = state
        if now >= self._beat_scan_at:
            self._beat_scan_at = now + self._heartbeat / 4
            for state in self._drafts.values():
                if now - state.last_write_at >= self._heartbeat:
                    self._candidates[id(state)] = state
        jobs: list[_Job] = []
        for key, state in list(self._candidates.items()):
            if state.closed:
                del self._candidates[key]
                continue
            if state.job is not None:
                # Waiting for its retry: the same job again, once its time has come.
                if state.retry_at is not None and state.retry_at <= now:
                    state.retry_at = None
                    jobs.append(state.job)
                del self._candidates[key]
                continue
            del self._candidates[key]
            if state.due(now):
                jobs.append(self._take(state, now))
            elif now - state.last_write_at >= self._heartbeat:
                # Keep the lease fresh; write any pending text while at it.
                if state.pending:
                    jobs.append(self._take(state, now))
                else:
                    state.job = _Job(state, state.seq, "", STREAMING, None, False, heartbeat=True)
                    jobs.append(state.job)
        return jobs

    def _take(self, state: DraftState, now: float) -> _Job:
        delta = "".join(state.pending)
        state.pending.clear()
        since = state.first_pending_at
        if since == _FORCED:
            since = state.forced_since
        state.first_pending_at = None
        if state.final is None and delta and "\ud800" <= delta[-1] <= "\udbff":
            # The first half of a surrogate pair: wait for the second, so the two are
            # stored as one character, not as two replacement marks.
            delta, held = delta[:-1], delta[-1]
            state.pending.append(held)
            state.first_pending_at = now
            heapq.heappush(self._timers, (now + state.every_seconds, next(self._order), state))
        extras = {k: v for k, v in state.extras.items() if v is not None}
        status, reason = state.final or (STREAMING, None)
        parts = state.log.take() if state.log is not None else None
        state.job = _Job(
            state, state.seq + 1, delta, status, reason, final=state.final is not None,
            extras=extras, parts=parts or None,
            parts_json=self.encode_parts(parts) if parts else None, since=since,
        )  # fmt: skip
        return state.job
