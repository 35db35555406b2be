"""The Writer: what drafts call (buffering only, no I/O), and the one thread per store
that writes for them."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from .._clock import Clock
from .._errors import FlushError, StoreClosed
from .._journal import Journal
from .._message import to_db_time
from .._parts import PartsLog
from .._schema import STREAMING, Layout
from ._base import _call, log
from ._schedule import _FORCED, _Scheduler
from ._spill import _Spill
from ._state import DraftState, _Job
from ._stops import _Stops


class Writer(_Scheduler, _Stops, _Spill):
    def __init__(
        self,
        engine: Engine,
        layout: Layout,
        clock: Clock,
        *,
        heartbeat_seconds: float,
        sanitize: Callable[[str], str],
        journal: Journal | None = None,
        spill_after: float = 10.0,
        retry_wait: Any = None,
        stop_poll: float = 0.5,
    ) -> None:
        super().__init__(
            engine=engine,
            layout=layout,
            clock=clock,
            heartbeat_seconds=heartbeat_seconds,
            sanitize=sanitize,
            journal=journal,
            spill_after=spill_after,
            retry_wait=retry_wait,
            stop_poll=stop_poll,
        )
        self._thread: threading.Thread | None = None

    # -- called from drafts (any thread, or the event loop): buffer only, no I/O --

    def register(self, state: DraftState) -> None:
        with self._cond:
            if self._stopping:
                raise StoreClosed("the store is closed")
            state.last_write_at = self._clock.monotonic()
            self._drafts[id(state)] = state
            if len(self._drafts) == 1:
                self._beat_scan_at = state.last_write_at + self._heartbeat / 4
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="chatpersist-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def add(self, state: DraftState, piece: str) -> None:
        with self._lock:
            if self._stopping:
                raise StoreClosed("the store is closed: this text cannot be saved any more")
            if state.log is not None:
                state.log.text(state.text_len)
            state.text_len += len(piece)
            state.pending.append(piece)
            if state.closed:
                return  # taken over, or its row deleted: keep the text in memory only
            # `_pending`, inlined: this runs once per chunk of every answer (the call
            # costs about 40 ns of 420 per append).
            if state.first_pending_at is None:
                state.first_pending_at = now = self._clock.monotonic()
                deadline = now + state.every_seconds
                heapq.heappush(self._timers, (deadline, next(self._order), state))
                if self._waiting and (self._wake_at is None or deadline < self._wake_at):
                    self._cond.notify()
            if len(state.pending) >= state.every_chunks:
                self._candidates[id(state)] = state
                if self._waiting:
                    self._cond.notify()

    def add_part(self, state: DraftState, record: Callable[[PartsLog], None]) -> None:
        """Record a part (reasoning, a tool call...) with `record`; it counts as a
        chunk, and is written with the text, under the same throttle and guards."""
        with self._cond:
            if self._stopping:
                raise StoreClosed("the store is closed: this part cannot be saved any more")
            log = state.log or PartsLog([], state.text_len)
            record(log)  # raises on bad input before anything changed
            state.log = log
            # An empty piece: one more chunk for the throttle, no text.
            state.pending.append("")
            self._pending(state)

    def segments(self, state: DraftState) -> tuple[str, list[dict[str, Any]] | None]:
        """The text and all parts segments of a draft, flushed or not."""
        with self._cond:
            return state.text(), state.segments()

    def _pending(self, state: DraftState) -> None:
        """Something was added: schedule the draft's flush (count or timer)."""
        if state.closed:
            return  # taken over, or its row deleted: keep the text in memory only
        if state.first_pending_at is None:
            state.first_pending_at = now = self._clock.monotonic()
            deadline = now + state.every_seconds
            heapq.heappush(self._timers, (deadline, next(self._order), state))
            if self._waiting and (self._wake_at is None or deadline < self._wake_at):
                self._cond.notify()
        if len(state.pending) >= state.every_chunks:
            self._candidates[id(state)] = state
            if self._waiting:
                self._cond.notify()

    def set_extra(self, state: DraftState, field: str, value: object) -> None:
        with self._cond:
            state.extras[field] = value

    def flush_now(self, state: DraftState, timeout: float | None) -> None:
        with self._cond:
            writing = state.job is not None and not state.job.heartbeat
            target = state.seq + writing + (1 if state.pending else 0)
            if state.first_pending_at is not None:
                if state.first_pending_at != _FORCED:
                    state.forced_since = state.first_pending_at
                state.first_pending_at = _FORCED
            self._candidates[id(state)] = state
            self._cond.notify_all()
            ok = self._cond.wait_for(lambda: state.seq >= target or state.closed, timeout)
        if not ok:
            raise FlushError(f"message {state.message_id!r} was not flushed within {timeout} s")

    def finish(self, state: DraftState, status: str, reason: str | None) -> None:
        with self._cond:
            if state.final is None and not state.closed:
                state.final = (status, reason)
            self._candidates[id(state)] = state
            self._cond.notify()

    def on_done(self, state: DraftState, callback: Callable[[], None]) -> None:
        """Run `callback` once the draft's end is committed (from the writer thread,
        or here at once when it already is). Registered under the lock, so an end
        committed meanwhile cannot slip between the check and the registration."""
        with self._cond:
            if not state.done.is_set():
                state.callbacks.append(callback)
                return
        _call(callback)

    def wait(self, state: DraftState, timeout: float | None) -> None:
        """Wait up to `timeout` for the draft's end to be committed, then as
        `raise_if_lost`."""
        state.done.wait(timeout)
        self.raise_if_lost(state, timeout)

    def raise_if_lost(self, state: DraftState, waited: float | None) -> None:
        """FlushError unless the draft's end is committed (after waiting `waited` s)."""
        if not state.done.is_set():
            raise FlushError(
                f"the final flush of message {state.message_id!r} was not committed within "
                f"{waited} s; the writer keeps trying while the process runs"
            )
        if state.error is not None:
            raise FlushError(f"message {state.message_id!r} could not be saved: {state.error}")

    def text(self, state: DraftState) -> str:
        with self._cond:
            return state.text()

    def stop(self, timeout: float | None = None) -> int:
        """End every open draft as cancelled, write it, and stop the thread.

        What could not be written by `timeout` goes to the journal; without one, it
        is lost and counted: returns how many drafts that was.
        """
        with self._cond:
            for state in self._drafts.values():
                if state.final is None:
                    state.final = (STREAMING, "cancelled")
                if state.retry_at is not None:
                    state.retry_at = 0.0  # with a journal, spilled at once
                self._candidates[id(state)] = state
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            left = [s for s in self._drafts.values() if not s.done.is_set()]
            if not left:
                return 0
            records = []
            if self._journal is not None:
                written_at = to_db_time(self._clock.now()).isoformat()
                for s in left:
                    status, reason = s.final or (STREAMING, "cancelled")
                    # seq + 2: above a write still in flight, which may yet land.
                    job = _Job(s, s.seq + 2, "", status, reason, True, extras=dict(s.extras))
                    records.append(
                        self._record(job, written_at, text=s.text(), segments=s.segments())
                    )
        if records:
            assert self._journal is not None
            try:
                self._journal.append(records)
            except OSError:
                log.exception("chatpersist: cannot write the journal %s", self._journal.path)
            else:
                with self._cond:
                    for s in left:
                        self._ended(*(s.final or (STREAMING, "cancelled")))
                        self._drop(s, None)
                self._run_callbacks()
                log.warning(
                    "chatpersist: closed with the database away: %d drafts went to the journal",
                    len(left),
                )
                return 0
        log.error(
            "chatpersist: closed with %d drafts not written (the database was away): %s",
            len(left),
            ", ".join(repr(s.message_id) for s in left[:10]),
        )
        return len(left)

    # -- the writer thread --

    def _run(self) -> None:
        while True:
            with self._cond:
                jobs = self._collect()
                while not jobs:
                    if self._stopping and not self._drafts:
                        return
                    timeout = self._sleep_time()
                    stops = self._stops_due_in(self._clock.monotonic())
                    if stops is not None:
                        timeout = stops if timeout is None else min(timeout, stops)
                        if stops == 0.0:
                            break
                    self._waiting = True
                    self._cond.wait(timeout)
                    self._waiting = False
                    jobs = self._collect()
            self._check_stops()
            if not jobs:
                continue
            try:
                self._flush(jobs)
            except Exception:  # noqa: BLE001 - the writer must outlive any fault
                log.exception("chatpersist: writer fault")
                with self._cond:
                    for job in jobs:
                        if job.state.job is job and job.state.retry_at is None:
                            self._backoff_one(job)
            self._run_callbacks()
            if self._to_replay:
                self._replay_quietly()
