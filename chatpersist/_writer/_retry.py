"""A failed write: retried as the very same job with a backoff of its own, split from
its batch to find the one draft at fault (strikes), or refused for good."""

from __future__ import annotations

import heapq
import time
from typing import Any

import sqlalchemy as sa
from tenacity import RetryCallState, wait_exponential, wait_random

from .._errors import FlushError
from ._base import log
from ._commit import _GroupCommit
from ._state import _Job
from ._stats import CommitHook

# A draft whose write fails this often while other writes commit is refused: the
# trouble is its own, not the database's.
_MAX_STRIKES = 3
_TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)
# MySQL errors that come as OperationalError but no retry can cure: a packet over
# max_allowed_packet, a text grown past it (the server's limit on one value), a value
# out of range or too long, a CHECK constraint (MariaDB 4025, MySQL 3819).
_MYSQL_REFUSALS = frozenset({1153, 1264, 1301, 1366, 1406, 3819, 4025})


class _Retry(_GroupCommit):
    def __init__(self, *, retry_wait: Any, spill_after: float, **rest: Any) -> None:
        super().__init__(**rest)
        self._spill_after = spill_after
        # A tenacity wait policy: how long to wait between attempts of a failed write
        # (plain object, replaceable in tests).
        self._retry_wait = retry_wait or wait_exponential(multiplier=0.05, max=2.0) + wait_random(
            0, 0.05
        )
        self._commits = 0
        self._outage_logged = False

    def _spill(self, jobs: list[_Job]) -> None:
        """Write the jobs to the journal instead (`_Spill`; only called with a journal)."""
        raise NotImplementedError

    def _flush(self, jobs: list[_Job]) -> bool:
        """Write a batch; True if it committed. A failure puts each job back for a
        retry of its own (or into the journal), never holding other drafts back."""
        hooks = self.hooks
        started = time.perf_counter() if hooks is not None else 0.0
        try:
            verdicts = self._commit(jobs)
        except _TRANSIENT as exc:
            if _refusal(exc):
                self._on_refused(jobs, exc)
            else:
                self._on_transient(jobs, exc)
            return False
        except Exception as exc:  # noqa: BLE001 - refused by the database
            self._on_refused(jobs, exc)
            return False
        self._commits += 1
        if self._outage_logged:
            log.warning("chatpersist: the database is back")
            self._outage_logged = False
        self._settle(jobs, verdicts)
        if hooks is not None:
            self._report(hooks, time.perf_counter() - started, jobs)
        return True

    def _report(self, hooks: CommitHook, seconds: float, jobs: list[_Job]) -> None:
        """Tell the metrics hook of a commit; its faults never reach the writer."""
        now = self._clock.monotonic()
        lags = [now - j.since for j in jobs if j.since is not None and not j.heartbeat]
        try:
            hooks.committed(seconds, lags)
        except Exception:  # noqa: BLE001 - metrics must never break a flush
            log.exception("chatpersist: a metrics hook failed")

    def _on_transient(self, jobs: list[_Job], exc: BaseException) -> None:
        self.stats.failures += 1
        if not self._outage_logged:
            log.warning("chatpersist: flush failed, retrying: %s", exc)
            self._outage_logged = True
        writes = [j for j in jobs if not j.heartbeat]
        with self._cond:
            for job in jobs:
                if job.heartbeat:
                    job.state.job = None  # a beat is not retried: the next one comes
        if len(writes) > 1:
            # The database may be fine and one draft's write the trouble: try each
            # alone, until two in a row fail too (then it is the database).
            misses = 0
            for i, job in enumerate(writes):
                if misses >= 2:
                    self._backoff(writes[i:])
                    return
                misses = 0 if self._flush([job]) else misses + 1
            return
        if writes:
            job = writes[0]
            if job.state.attempts and self._commits > job.state.strikes_base:
                job.state.strikes += 1  # others committed since its last failure
            job.state.strikes_base = self._commits
            if job.state.strikes >= _MAX_STRIKES:
                self._on_refused([job], exc)
                return
            self._backoff(writes)

    def _backoff(self, jobs: list[_Job]) -> None:
        """Retry each job later as it is; past `spill_after` (or at close), with a
        journal, write it there instead."""
        now = self._clock.monotonic()
        spill = []
        with self._cond:
            for job in jobs:
                s = job.state
                if s.failing_since is None:
                    s.failing_since = now
                if self._journal is not None and (
                    self._stopping or now - s.failing_since >= self._spill_after
                ):
                    spill.append(job)
                else:
                    self._backoff_one(job)
        if spill:
            self._spill(spill)

    def _backoff_one(self, job: _Job) -> None:
        s = job.state
        s.attempts += 1
        state = RetryCallState(None, None, (), ())  # type: ignore[arg-type]
        state.attempt_number = s.attempts
        s.retry_at = self._clock.monotonic() + float(self._retry_wait(state))
        heapq.heappush(self._timers, (s.retry_at, next(self._order), s))

    def _on_refused(self, jobs: list[_Job], exc: BaseException) -> None:
        """The database refused the write for good (not an outage)."""
        if len(jobs) > 1:
            # One bad draft must not hold the others back: write each on its own.
            for job in jobs:
                self._flush([job])
            return
        job = jobs[0]
        s = job.state
        if job.heartbeat:
            log.warning("chatpersist: heartbeat of message %r failed: %s", s.message_id, exc)
            with self._cond:
                s.job = None
            return
        if job.extras:
            # Text first: write it again without the facts (model, usage...) that
            # the column may have refused.
            log.warning(
                "chatpersist: message %r: facts %s refused (%s); text written without them",
                s.message_id,
                sorted(job.extras),
                _short(exc),
            )
            with self._cond:
                for k in job.extras:
                    s.extras.pop(k, None)
            job.extras = {}
            self._flush([job])
            return
        self.stats.refused += 1
        log.error("chatpersist: message %r cannot be saved: %s", s.message_id, _short(exc))
        if self._journal is not None:
            self._spill([job])  # kept, for `chatpersist recover` once it can be fixed
            return
        with self._cond:
            s.job = None
            s.retry_at = None
            self._drop(s, FlushError(f"the database refused the write: {_short(exc)}"))


def _refusal(exc: BaseException) -> bool:
    args: tuple[Any, ...] = getattr(getattr(exc, "orig", None), "args", ())
    return bool(args) and args[0] in _MYSQL_REFUSALS


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
