"""The shared background writer: one thread per store flushes every open draft.

Drafts only buffer text (`DraftState.add`); the writer decides when each is due
(every N chunks, every T seconds after the first unflushed chunk, or at its end),
takes the due ones together and commits them in one transaction (group commit).
Sync and async drafts both go through here: this is the only flush logic.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential,
    wait_random,
)

from . import _sql
from ._clock import Clock
from ._engine import write_tx
from ._errors import FlushError
from ._journal import Journal, Record
from ._message import to_db_time
from ._schema import STREAMING, Layout

log = logging.getLogger("chatpersist")

# Longest the writer sleeps while drafts are open, so an injected clock that jumps
# ahead is noticed promptly.
_MAX_TICK = 0.25
_SLICE = 64
# PostgreSQL takes a slice's rows in one statement (`_sql.append_rows`): bigger slices, as each
# costs one round trip, not one per row.
_ROWS_SLICE = 1000
# Rows per multi-row upsert: 13 parameters each stays under every driver's limit
# (65,535 on PostgreSQL and MySQL, 32,766 on SQLite).
_UPSERT_ROWS = 500
# `_sql.append_update`'s parameters: those of `Writer._row`, in its order, then the time.
_APPEND_PARAMS = (
    _sql.P_ID, _sql.P_PREV, _sql.P_SEQ, _sql.P_DELTA, _sql.P_STATUS, _sql.P_REASON,
    *[_sql.extra_param(f) for f in _sql.EXTRAS], _sql.P_NOW,
)  # fmt: skip
_TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


class DraftState:
    """What the writer knows of one open draft. Guarded by the writer's lock."""

    def __init__(
        self,
        *,
        message_id: str,
        session_id: str,
        role: str,
        every_chunks: int,
        every_seconds: float,
        committed_text: str,
        seq: int,
    ) -> None:
        self.message_id = message_id
        self.session_id = session_id
        self.role = role
        self.every_chunks = every_chunks
        self.every_seconds = every_seconds
        self.pending: list[str] = []
        self.first_pending_at: float | None = None
        # Committed text kept as the joined deltas of past flushes: joining once per
        # flush, not once per chunk, keeps long answers linear.
        self.committed: list[str] = [committed_text] if committed_text else []
        self.inflight: str | None = None
        self.seq = seq
        self.last_write_at = 0.0
        self.final: tuple[str, str | None] | None = None
        self.closed = False
        self.superseded = False
        # False once text went to the journal instead: the row is behind, so the next
        # database write must be a whole one.
        self.row_in_sync = True
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        #: model / input_tokens / output_tokens / error, written with the next flush.
        self.extras: dict[str, Any] = {}

    def text(self) -> str:
        return "".join([*self.committed, self.inflight or "", *self.pending])

    def due(self, now: float) -> bool:
        if self.closed or self.inflight is not None:
            return False
        if self.final is not None:
            return True
        if len(self.pending) >= self.every_chunks:
            return True
        return (
            self.first_pending_at is not None and now - self.first_pending_at >= self.every_seconds
        )

    def on_done(self, callback: Callable[[], None]) -> None:
        """Run `callback` (from the writer thread) once the draft's end is committed."""
        if self.done.is_set():
            callback()
        else:
            self._callbacks.append(callback)

    def _finish(self, error: BaseException | None = None) -> None:
        self.closed = True
        self.error = error
        self.done.set()
        for cb in self._callbacks:
            cb()
        self._callbacks.clear()


@dataclass
class _Job:
    state: DraftState
    seq: int
    delta: str
    status: str
    reason: str | None
    final: bool
    heartbeat: bool = False
    extras: dict[str, Any] | None = None


@dataclass
class WriterStats:
    transactions: int = 0
    flushes: int = 0
    heartbeats: int = 0
    full_writes: int = 0
    #: failed attempts that were retried
    failures: int = 0
    #: drafts written to the journal while the database was away, and replayed from it
    spilled: int = 0
    replayed: int = 0


class Writer:
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
    ) -> None:
        self._engine = engine
        self._layout = layout
        self._clock = clock
        self._heartbeat = heartbeat_seconds
        self.sanitize = sanitize
        self._cond = threading.Condition()
        self._drafts: dict[int, DraftState] = {}
        self._thread: threading.Thread | None = None
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
        self._journal = journal
        self._spill_after = spill_after
        # A tenacity wait policy: how long to wait between attempts while the database
        # is away (plain object, replaceable in tests).
        self._retry_wait = retry_wait or wait_exponential(multiplier=0.05, max=2.0) + wait_random(
            0, 0.05
        )
        self._append_stmt = _sql.append_update(layout)
        # PostgreSQL writes a batch's rows in one statement each (see `_sql.append_rows`).
        self._pg = engine.dialect.name == "postgresql"
        self._rows_stmt = _sql.append_rows(layout) if self._pg else None
        self._beat_rows = _sql.heartbeat_rows(layout) if self._pg else None
        self._beat_stmt = _sql.heartbeat_update(layout)
        self.stats = WriterStats()

    # -- called from drafts (any thread, or the event loop): buffer only, no I/O --

    def register(self, state: DraftState) -> None:
        with self._cond:
            if self._stopping:
                raise RuntimeError("the store is closed")
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
        with self._cond:
            state.pending.append(piece)
            if state.closed:
                return  # taken over by another writer: keep the text in memory only
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
            target = state.seq + (1 if state.inflight else 0) + (1 if state.pending else 0)
            if state.first_pending_at is not None:
                state.first_pending_at = float("-inf")
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

    def wait(self, state: DraftState, timeout: float | None) -> None:
        if not state.done.wait(timeout):
            raise FlushError(
                f"the final flush of message {state.message_id!r} was not committed within "
                f"{timeout} s; the writer keeps trying while the process runs"
            )
        if state.error is not None:
            raise FlushError(f"message {state.message_id!r} could not be saved: {state.error}")

    def text(self, state: DraftState) -> str:
        with self._cond:
            return state.text()

    def stop(self, timeout: float | None = None) -> None:
        """End every open draft as cancelled, write it, and stop the thread."""
        with self._cond:
            for state in self._drafts.values():
                if state.final is None:
                    state.final = (STREAMING, "cancelled")
                self._candidates[id(state)] = state
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the writer thread --

    def _run(self) -> None:
        while True:
            with self._cond:
                jobs = self._collect()
                while not jobs:
                    if self._stopping and not self._drafts:
                        return
                    timeout = self._sleep_time()
                    self._waiting = True
                    self._cond.wait(timeout)
                    self._waiting = False
                    jobs = self._collect()
            self._flush(jobs)

    def _flush(self, jobs: list[_Job]) -> None:
        """Commit a batch, retrying while the database is away; past `spill_after`
        (with a journal) the batch goes to the journal instead."""
        stop = stop_after_delay(self._spill_after) if self._journal else stop_never
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(_TRANSIENT),
                wait=self._retry_wait,
                stop=stop,
                before_sleep=self._on_retry,
                reraise=True,
            ):
                with attempt:
                    self._write(jobs)
        except _TRANSIENT as exc:
            log.warning("chatpersist: database away for %.0f s (%s)", self._spill_after, exc)
            self._spill(jobs)
            return
        except Exception:  # noqa: BLE001 - the writer must outlive any fault
            log.exception("chatpersist: flush failed")
            with self._cond:
                for job in jobs:
                    self._restore(job)
            time.sleep(0.5)
            return
        if self._journal is not None and self._journal.size():
            try:
                self.replay()
            except _TRANSIENT:
                pass  # the next successful flush tries again

    def _on_retry(self, retry_state: RetryCallState) -> None:
        self.stats.failures += 1
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        log.warning("chatpersist: flush failed, retrying: %s", exc)

    def _spill(self, jobs: list[_Job]) -> None:
        assert self._journal is not None
        written_at = to_db_time(self._clock.now()).isoformat()
        writes = [j for j in jobs if not j.heartbeat]
        records = [self._record(j, written_at) for j in writes]
        try:
            self._journal.append(records)
        except OSError:
            log.exception("chatpersist: cannot write the journal %s", self._journal.path)
            with self._cond:
                for job in jobs:
                    self._restore(job)
            return
        self.stats.spilled += len(records)
        mono = self._clock.monotonic()
        with self._cond:
            for job in jobs:
                if job.heartbeat:
                    job.state.inflight = None
                    continue
                self._settle(job, True, mono)
                job.state.row_in_sync = False
                self._candidates[id(job.state)] = job.state
            self._cond.notify_all()

    def replay(self, journal: Journal | None = None) -> int:
        """Write the journal's newest record of each message to the database, then
        forget them. Seq guards make a record that is already applied change nothing."""
        journal = journal or self._journal
        if journal is None:
            return 0
        size = journal.size()
        records = journal.latest()
        with write_tx(self._engine) as conn:
            self._upsert(conn, records)
        journal.clear(size)
        self.stats.replayed += len(records)
        return len(records)

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
            if state.inflight is not None:
                continue  # looked at again once its write is done
            del self._candidates[key]
            if state.closed:
                continue
            if state.due(now):
                jobs.append(self._take(state))
            elif now - state.last_write_at >= self._heartbeat:
                # Keep the lease fresh; write any pending text while at it.
                if state.pending:
                    jobs.append(self._take(state))
                else:
                    jobs.append(_Job(state, state.seq, "", STREAMING, None, False, heartbeat=True))
                    state.inflight = ""
        return jobs

    def _take(self, state: DraftState) -> _Job:
        delta = "".join(state.pending)
        state.pending.clear()
        state.first_pending_at = None
        state.inflight = delta
        extras = dict(state.extras)
        if state.final is not None:
            status, reason = state.final
            return _Job(state, state.seq + 1, delta, status, reason, final=True, extras=extras)
        return _Job(state, state.seq + 1, delta, STREAMING, None, final=False, extras=extras)

    def _restore(self, job: _Job) -> None:
        state = job.state
        if state.inflight:
            state.pending.insert(0, state.inflight)
            if state.first_pending_at is None:
                state.first_pending_at = float("-inf")
        state.inflight = None
        self._candidates[id(state)] = state

    def _write(self, jobs: list[_Job]) -> None:
        try:
            self._commit(jobs)
        except _TRANSIENT:
            raise
        except Exception:
            if len(jobs) == 1:
                job = jobs[0]
                log.exception("chatpersist: message %r cannot be saved", job.state.message_id)
                with self._cond:
                    job.state.inflight = None
                    self._drop(job.state, FlushError("the database refused the write"))
                return
            # One bad draft must not hold the others back: write each on its own.
            for job in jobs:
                self._write([job])

    def _commit(self, jobs: list[_Job]) -> None:
        now = to_db_time(self._clock.now())
        writes = [j for j in jobs if not j.heartbeat]
        appends = [j for j in writes if j.state.row_in_sync]
        beats = [j for j in jobs if j.heartbeat]
        applied: set[int] = set()
        with write_tx(self._engine) as conn:
            if appends:
                if self._append(conn, appends, now) == len(appends):
                    applied = {id(j) for j in appends}
                else:
                    applied = self._landed(conn, appends)
            rest = [j for j in writes if id(j) not in applied]
            if rest:
                self._write_whole(conn, rest, now)
                applied |= self._landed(conn, rest)
            if writes and self._pg:
                # Wake followers (chatpersist.asgi.follow) as soon as this commits;
                # 25 ids per notification keep payloads under PostgreSQL's 8000 bytes.
                ids = [j.state.message_id for j in writes if id(j) in applied]
                groups = [",".join(ids[i : i + 25]) for i in range(0, len(ids), 25)]
                if groups:
                    conn.execute(_sql.NOTIFY, {"ids": groups})
            if beats:
                self._beat(conn, beats, now)
        self.stats.transactions += 1
        self.stats.flushes += len(writes)
        self.stats.heartbeats += len(beats)
        mono = self._clock.monotonic()
        with self._cond:
            for job in beats:
                job.state.inflight = None
                job.state.last_write_at = mono
            for job in writes:
                self._settle(job, id(job) in applied, mono)
            for job in jobs:
                self._candidates[id(job.state)] = job.state
            self._cond.notify_all()  # wakes callers of flush_now()

    def _append(self, conn: sa.Connection, jobs: list[_Job], now: Any) -> int:
        """Add each job's new text to its row; how many rows matched."""
        matched = 0
        # In slices, letting other threads (an event loop) run between them: a
        # thousand drafts' flushes in one go would hold the GIL for ms.
        step = _SLICE if self._rows_stmt is None else _ROWS_SLICE
        for i in range(0, len(jobs), step):
            part = jobs[i : i + step]
            rows = [self._row(j) for j in part]
            if self._rows_stmt is None:
                params = [dict(zip(_APPEND_PARAMS, (*r, now), strict=True)) for r in rows]
                result = conn.execute(self._append_stmt, params)
            else:
                result = conn.execute(self._rows_stmt, _rows(rows, now))
            matched += result.rowcount
            time.sleep(0)
        return matched

    def _row(self, job: _Job) -> tuple[Any, ...]:
        """What one flush writes, in the order of `_sql.append_row_types`."""
        return (
            self._layout.msg_key(job.state.message_id),
            job.seq - 1,
            job.seq,
            self.sanitize(job.delta),
            job.status,
            job.reason,
            *[(job.extras or {}).get(f) for f in _sql.EXTRAS],
        )

    def _beat(self, conn: sa.Connection, jobs: list[_Job], now: Any) -> None:
        """Refresh the lease of drafts with nothing new to write."""
        key = self._layout.msg_key
        if self._beat_rows is not None:
            rows = [(key(j.state.message_id), j.seq) for j in jobs]
            conn.execute(self._beat_rows, _rows(rows, now))
            return
        conn.execute(
            self._beat_stmt,
            [
                {_sql.P_ID: key(j.state.message_id), _sql.P_SEQ: j.seq, _sql.P_NOW: now}
                for j in jobs
            ],
        )

    def _landed(self, conn: sa.Connection, jobs: list[_Job]) -> set[int]:
        L = self._layout
        ids = [L.msg_key(j.state.message_id) for j in jobs]
        rows = conn.execute(sa.select(L.id, L.seq).where(L.id.in_(ids))).all()
        stored = {str(r[0]): r[1] for r in rows}
        return {id(j) for j in jobs if stored.get(j.state.message_id) == j.seq}

    def _write_whole(self, conn: sa.Connection, jobs: list[_Job], now: Any) -> None:
        self.stats.full_writes += len(jobs)
        written_at = now.isoformat()
        self._upsert(conn, [self._record(j, written_at) for j in jobs])

    def _record(self, job: _Job, written_at: str) -> Record:
        """The job's whole row, as journaled and as written when the row is gone."""
        return Record(
            message_id=job.state.message_id,
            session_id=job.state.session_id,
            role=job.state.role,
            content=self.sanitize("".join([*job.state.committed, job.delta])),
            seq=job.seq,
            status=job.status,
            finish_reason=job.reason,
            extras={k: v for k, v in (job.extras or {}).items() if v is not None},
            written_at=written_at,
        )

    def _upsert(self, conn: sa.Connection, records: list[Record]) -> None:
        """Insert or overwrite whole rows, in statements a driver accepts."""
        L = self._layout
        rows = []
        for r in records:
            at = datetime.fromisoformat(r.written_at)
            rows.append(
                {
                    **L.new_row(at),
                    L.id.key: L.msg_key(r.message_id),
                    L.session_id.key: L.session_key(r.session_id),
                    L.role.key: r.role,
                    L.content.key: r.content,
                    L.status.key: r.status,
                    L.finish_reason.key: r.finish_reason,
                    L.seq.key: r.seq,
                    L.updated_at.key: at,
                    **{getattr(L, f).key: r.extras.get(f) for f in _sql.EXTRAS},
                }
            )
        for i in range(0, len(rows), _UPSERT_ROWS):
            part = rows[i : i + _UPSERT_ROWS]
            conn.execute(_sql.full_upsert(L, self._engine.dialect, part))

    def _settle(self, job: _Job, applied: bool, mono: float) -> None:
        state = job.state
        state.inflight = None
        state.last_write_at = mono
        if applied:
            state.committed.append(job.delta)
            state.seq = job.seq
            state.row_in_sync = True
            if job.final:
                self._drop(state, None)
            return
        # Someone else holds the row (a newer writer, or it is complete): stop writing.
        if not state.superseded:
            log.info(
                "chatpersist: message %r was taken over; draft stops writing", state.message_id
            )
        state.superseded = True
        state.committed.append(job.delta)
        self._drop(state, None)

    def _drop(self, state: DraftState, error: BaseException | None) -> None:
        self._drafts.pop(id(state), None)
        state._finish(error)
        self._cond.notify_all()


def _rows(rows: list[tuple[Any, ...]], now: Any) -> dict[str, Any]:
    """Parameters of `_sql.append_rows` / `heartbeat_rows`: the rows as one JSON
    array, plus the common timestamp."""
    return {_sql.P_ROWS: json.dumps(rows), _sql.P_NOW: now}
