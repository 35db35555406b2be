"""The state every part of the writer shares, and the bookkeeping that settles a
write's outcome on its draft (under the lock; nothing here may fail)."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from .._clock import Clock
from .._journal import Journal
from .._parts import encode
from .._schema import COMPLETE
from ._state import DraftState, Verdict, _Job
from ._stats import CommitHook, WriterStats

log = logging.getLogger("chatpersist")


class _Base:
    #: Text as the database can hold it (set by `_GroupCommit`).
    sanitize: Callable[[str], str]

    def encode_parts(self, segments: list[dict[str, Any]]) -> str:
        """Segments as the JSON text bound to the parts column, each string made
        storable as the text is (PostgreSQL's JSONB refuses NUL, UTF-8 lone surrogates)."""
        return encode(_clean(segments, self.sanitize))

    def __init__(self, *, clock: Clock, heartbeat_seconds: float, journal: Journal | None) -> None:
        self._clock = clock
        self._heartbeat = heartbeat_seconds
        self._journal = journal
        # Drafts take the lock itself (a C call), not the Condition's Python wrapper.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._drafts: dict[int, DraftState] = {}
        self._stopping = False
        self._waiting = False
        self._wake_at: float | None = None
        # What may be due, so a wake-up looks at a few drafts, not all of them:
        # drafts flagged by count, end or retry; a heap of timer deadlines; and a
        # periodic sweep for heartbeats.
        self._candidates: dict[int, DraftState] = {}
        self._timers: list[tuple[float, int, DraftState]] = []
        self._order = itertools.count()
        self._beat_scan_at = 0.0
        # Callbacks of drafts that ended, run by the writer thread outside the lock.
        self._callbacks: list[Callable[[], None]] = []
        self.stats = WriterStats()
        #: Told of each commit (`chatpersist.metrics`); None: not instrumented.
        self.hooks: CommitHook | None = None

    def _settle(self, jobs: list[_Job], verdicts: dict[int, Verdict]) -> None:
        mono = self._clock.monotonic()
        with self._cond:
            for job in jobs:
                s = job.state
                verdict = verdicts.get(id(job), "landed")
                if verdict in ("superseded", "deleted"):
                    s.committed.append(job.delta)
                    _commit_parts(job)
                    s.job = None
                    self._fence(s, verdict)
                elif job.heartbeat:
                    s.job = None
                    s.last_write_at = mono
                else:
                    self._applied(job, mono)
                self._candidates[id(s)] = s
            self._cond.notify_all()  # wakes callers of flush_now()

    def _applied(self, job: _Job, mono: float) -> None:
        s = job.state
        s.job = None
        s.retry_at = None
        s.failing_since = None
        s.attempts = s.strikes = 0
        s.last_write_at = mono
        s.committed.append(job.delta)
        _commit_parts(job)
        s.seq = job.seq
        s.row_in_sync = True
        if job.final:
            self._ended(job.status, job.reason)
            self._drop(s, None)

    def _ended(self, status: str, reason: str | None) -> None:
        """Count a draft's end that was written not complete (under the lock)."""
        if status != COMPLETE:
            key = reason or "unknown"
            self.stats.interrupted[key] = self.stats.interrupted.get(key, 0) + 1

    def _fence(self, s: DraftState, verdict: Verdict) -> None:
        if s.closed:
            return
        if verdict == "deleted":
            s.deleted = True
            self.stats.deleted += 1
            log.info("chatpersist: message %r was deleted; its draft stops writing", s.message_id)
        else:
            s.superseded = True
            self.stats.superseded += 1
            log.info(
                "chatpersist: message %r was taken over (or completed) by another writer; "
                "this draft stops writing",
                s.message_id,
            )
        self._drop(s, None)

    def _drop(self, state: DraftState, error: BaseException | None) -> None:
        self._drafts.pop(id(state), None)
        state.closed = True
        state.error = error
        state.done.set()
        self._callbacks += state.callbacks
        state.callbacks = []
        self._cond.notify_all()

    def _run_callbacks(self) -> None:
        with self._cond:
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            _call(cb)


def _clean(value: Any, sanitize: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return sanitize(value)
    if isinstance(value, dict):
        return {sanitize(str(k)): _clean(v, sanitize) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, sanitize) for v in value]
    return value


def _commit_parts(job: _Job) -> None:
    if job.parts and job.state.log is not None:
        job.state.log.committed += job.parts


def _call(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # noqa: BLE001 - e.g. the event loop of an async draft closed
        log.exception("chatpersist: a draft's end callback failed")
