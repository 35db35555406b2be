"""The shared background writer: one thread per store flushes every open draft.

Drafts only buffer text (`DraftState.add`); the writer decides when each is due
(every N chunks, every T seconds after the first unflushed chunk, or at its end),
takes the due ones together and commits them in one transaction (group commit).
Sync and async drafts both go through here: this is the only flush logic.

Every write is guarded by the draft's writer token (a takeover gives the row a new
one) and its seq, so a writer that was taken over, or whose row was deleted, learns
it at its next flush and never changes the row again. A failed write is retried as
the very same job (a commit whose reply was lost is then recognised, not applied
twice), with a backoff of its own: one draft's trouble never holds the others back.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tenacity import RetryCallState, wait_exponential, wait_random

from . import _sql
from ._clock import Clock
from ._engine import write_tx
from ._errors import FlushError, StoreClosed
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
# Characters of text per statement where the server sets no lower limit (MySQL's
# max_allowed_packet is read from the server).
_TEXT_BUDGET = 32 * 1024 * 1024
# A draft whose write fails this often while other writes commit is refused: the
# trouble is its own, not the database's.
_MAX_STRIKES = 3
# `_sql.flush_update`'s parameters: those of `Writer._row`, in its order, then the time.
_APPEND_PARAMS = (
    _sql.P_ID, _sql.P_WRITER, _sql.P_PREV, _sql.P_SEQ, _sql.P_DELTA, _sql.P_STATUS,
    _sql.P_REASON, *[_sql.extra_param(f) for f in _sql.EXTRAS], _sql.P_NOW,
)  # fmt: skip
_TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)

Verdict = Literal["landed", "behind", "superseded", "deleted"]


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
        writer: str,
    ) -> None:
        self.message_id = message_id
        self.session_id = session_id
        self.role = role
        self.every_chunks = every_chunks
        self.every_seconds = every_seconds
        #: The fencing token this draft writes under.
        self.writer = writer
        self.pending: list[str] = []
        self.first_pending_at: float | None = None
        # Committed text kept as the joined deltas of past flushes: joining once per
        # flush, not once per chunk, keeps long answers linear.
        self.committed: list[str] = [committed_text] if committed_text else []
        #: The write being made, or waiting for its retry (then `retry_at` is set).
        self.job: _Job | None = None
        self.retry_at: float | None = None
        self.failing_since: float | None = None
        self.attempts = 0
        # Failures while other writes committed (the trouble is this draft's own).
        self.strikes = 0
        self.strikes_base = 0
        self.seq = seq
        self.last_write_at = 0.0
        self.final: tuple[str, str | None] | None = None
        self.closed = False
        #: Another writer took the row over; this draft stopped writing it.
        self.superseded = False
        #: The row was deleted (by the app); this draft stopped writing it.
        self.deleted = False
        # False once text went to the journal instead: the row is behind, so the next
        # database write must be a whole one.
        self.row_in_sync = True
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.callbacks: list[Callable[[], None]] = []
        #: model / input_tokens / output_tokens / error, written with the next flush.
        self.extras: dict[str, Any] = {}

    def text(self) -> str:
        inflight = self.job.delta if self.job is not None else ""
        return "".join([*self.committed, inflight, *self.pending])

    def due(self, now: float) -> bool:
        if self.closed or self.job is not None:
            return False
        if self.final is not None:
            return True
        if len(self.pending) >= self.every_chunks:
            return True
        return (
            self.first_pending_at is not None and now - self.first_pending_at >= self.every_seconds
        )


@dataclass
class _Job:
    state: DraftState
    seq: int
    delta: str
    status: str
    reason: str | None
    final: bool
    heartbeat: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


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
    #: drafts that stopped writing: taken over by another writer, or their row deleted
    superseded: int = 0
    deleted: int = 0
    #: writes the database refused for good (the text is kept when only facts were bad)
    refused: int = 0
    #: appends to the journal that failed (disk full, read-only): retried
    journal_errors: int = 0


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
        # Callbacks of drafts that ended, run by the writer thread outside the lock.
        self._callbacks: list[Callable[[], None]] = []
        self._journal = journal
        self._spill_after = spill_after
        self._to_replay = journal is not None
        self._journal_failing = False
        # A tenacity wait policy: how long to wait between attempts of a failed write
        # (plain object, replaceable in tests).
        self._retry_wait = retry_wait or wait_exponential(multiplier=0.05, max=2.0) + wait_random(
            0, 0.05
        )
        self._commits = 0
        self._outage_logged = False
        self._text_budget: int | None = None
        self._append_stmt = _sql.append_update(layout)
        # PostgreSQL writes a batch's rows in one statement each (see `_sql.append_rows`).
        self._pg = engine.dialect.name == "postgresql"
        self._rows_stmt = _sql.append_rows(layout) if self._pg else None
        self._beat_rows = _sql.heartbeat_rows(layout) if self._pg else None
        self._beat_stmt = _sql.heartbeat_update(layout)
        self._whole_stmt = _sql.flush_update(layout, whole=True, concat=False)
        self._pieces = {
            (whole, concat): _sql.piece_update(layout, whole=whole, concat=concat)
            for whole in (False, True)
            for concat in (False, True)
        }
        self._last_whole = _sql.flush_update(layout, whole=True, concat=True)
        self.stats = WriterStats()

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
        with self._cond:
            if self._stopping:
                raise StoreClosed("the store is closed: this text cannot be saved any more")
            state.pending.append(piece)
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
                    records.append(self._record(job, written_at, text=s.text()))
        if records:
            assert self._journal is not None
            try:
                self._journal.append(records)
            except OSError:
                log.exception("chatpersist: cannot write the journal %s", self._journal.path)
            else:
                with self._cond:
                    for s in left:
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
                    self._waiting = True
                    self._cond.wait(timeout)
                    self._waiting = False
                    jobs = self._collect()
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

    def _flush(self, jobs: list[_Job]) -> bool:
        """Write a batch; True if it committed. A failure puts each job back for a
        retry of its own (or into the journal), never holding other drafts back."""
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
        return True

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

    def _spill(self, jobs: list[_Job]) -> None:
        assert self._journal is not None
        written_at = to_db_time(self._clock.now()).isoformat()
        records = [self._record(j, written_at) for j in jobs]
        try:
            self._journal.append(records)
        except OSError as exc:
            self.stats.journal_errors += 1
            if not self._journal_failing:
                log.error("chatpersist: cannot write the journal %s: %s", self._journal.path, exc)
                self._journal_failing = True
            with self._cond:
                for job in jobs:
                    self._backoff_one(job)  # kept in memory, tried again
            return
        self._journal_failing = False
        self._to_replay = True
        self.stats.spilled += len(records)
        mono = self._clock.monotonic()
        with self._cond:
            for job in jobs:
                s = job.state
                self._applied(job, mono)
                s.row_in_sync = False
                self._candidates[id(s)] = s
            self._cond.notify_all()

    def _replay_quietly(self) -> None:
        try:
            self.replay()
        except _TRANSIENT:
            pass  # the next successful flush tries again
        except Exception:  # noqa: BLE001
            log.exception("chatpersist: journal replay failed")
            self._to_replay = False

    def replay(self, journal: Journal | None = None) -> int:
        """Write the journal's newest record of each message to the database, then
        forget them. Guards make a record that is already applied, or whose row
        another writer holds, change nothing; a record the database refuses is
        logged and skipped, and never stops the others."""
        journal = journal or self._journal
        if journal is None:
            return 0
        if journal is self._journal:
            self._to_replay = False  # a spill from now on sets it again
        size = journal.size()
        records = journal.latest()
        now = to_db_time(self._clock.now())
        applied = 0
        kept = True
        for rec in records:
            try:
                with write_tx(self._engine) as conn:
                    self._write_text(conn, self._record_params(rec, now), rec.content, whole=True)
                    verdict = self._classify(conn, [(rec.message_id, rec.writer, rec.seq)])[0]
            except Exception as exc:  # noqa: BLE001 - one record must not stop the rest
                if isinstance(exc, _TRANSIENT) and not _refusal(exc):
                    if journal is self._journal:
                        self._to_replay = True  # the database is away still: later
                    raise
                log.error("chatpersist: journal record of %r refused: %s", rec.message_id, exc)
                kept &= _quarantine(journal, rec, f"refused: {_short(exc)}")
                continue
            if verdict == "deleted":
                log.info("chatpersist: journal record of %r: the message is gone", rec.message_id)
                kept &= _quarantine(journal, rec, "the message was deleted")
            applied += verdict == "landed"
        if kept:  # else the journal keeps them all until their quarantine can be written
            journal.clear(size)
        self.stats.replayed += applied
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
        state.job = _Job(
            state, state.seq + 1, delta, status, reason, final=state.final is not None,
            extras=extras,
        )  # fmt: skip
        return state.job

    # -- the database --

    def _commit(self, jobs: list[_Job]) -> dict[int, Verdict]:
        """Write the jobs in one transaction; what became of each (by `id(job)`).
        Only database work here: any fault is the database's."""
        now = to_db_time(self._clock.now())
        writes = [j for j in jobs if not j.heartbeat]
        beats = [j for j in jobs if j.heartbeat]
        verdicts: dict[int, Verdict] = {}
        with write_tx(self._engine) as conn:
            budget = self._budget(conn)
            appends = [j for j in writes if j.state.row_in_sync and len(j.delta) <= budget]
            rest = [j for j in writes if not (j.state.row_in_sync and len(j.delta) <= budget)]
            if appends:
                if self._append(conn, appends, now, budget) == len(appends):
                    verdicts.update((id(j), "landed") for j in appends)
                else:
                    verdicts.update(self._verdicts(conn, appends))
                    rest += [j for j in appends if verdicts[id(j)] == "behind"]
            for job in rest:
                whole = not job.state.row_in_sync or id(job) in verdicts
                text = self._whole_text(job) if whole else job.delta
                self._write_text(conn, self._params(job, now), text, whole=whole)
                self.stats.full_writes += whole
            if rest:
                for j, v in self._verdicts(conn, rest).items():
                    # Still behind after a whole write: a newer text of its own is
                    # stored (written at close); this one must not go over it.
                    verdicts[j] = "superseded" if v == "behind" else v
            if writes and self._pg:
                # Wake followers (chatpersist.asgi.follow) as soon as this commits;
                # 25 ids per notification keep payloads under PostgreSQL's 8000 bytes.
                ids = [j.state.message_id for j in writes if verdicts[id(j)] == "landed"]
                groups = [",".join(ids[i : i + 25]) for i in range(0, len(ids), 25)]
                if groups:
                    conn.execute(_sql.NOTIFY, {"ids": groups})
            if beats and self._beat(conn, beats, now) < len(beats):
                verdicts.update(self._verdicts(conn, beats))
        self.stats.transactions += 1
        self.stats.flushes += len(writes)
        self.stats.heartbeats += len(beats)
        return verdicts

    def _budget(self, conn: sa.Connection) -> int:
        """Characters of text one statement may carry on this server."""
        if self._text_budget is None:
            budget = _TEXT_BUDGET
            if conn.dialect.name in ("mysql", "mariadb"):
                server = int(conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar() or 0)
                client = getattr(conn.connection.dbapi_connection, "max_allowed_packet", server)
                packet = min(server, int(client or server))
                # Four bytes a character at most, each byte possibly escaped.
                budget = max(1024, (packet - 64 * 1024) // 8)
            self._text_budget = budget
        return self._text_budget

    def _append(self, conn: sa.Connection, jobs: list[_Job], now: Any, budget: int) -> int:
        """Add each job's new text to its row; how many rows matched."""
        matched = 0
        # In slices, letting other threads (an event loop) run between them: a
        # thousand drafts' flushes in one go would hold the GIL for ms.
        step = _SLICE if self._rows_stmt is None else _ROWS_SLICE
        i = 0
        while i < len(jobs):
            part: list[_Job] = []
            size = 0
            while i < len(jobs) and len(part) < step and (not part or size < budget):
                size += len(jobs[i].delta)
                part.append(jobs[i])
                i += 1
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
            job.state.writer,
            job.seq - 1,
            job.seq,
            self.sanitize(job.delta),
            job.status,
            job.reason,
            *[job.extras.get(f) for f in _sql.EXTRAS],
        )

    def _params(self, job: _Job, now: Any) -> dict[str, Any]:
        return dict(zip(_APPEND_PARAMS, (*self._row(job), now), strict=True))

    def _record_params(self, rec: Record, now: Any) -> dict[str, Any]:
        return {
            _sql.P_ID: self._layout.msg_key(rec.message_id),
            _sql.P_WRITER: rec.writer or "",
            _sql.P_PREV: rec.seq - 1,
            _sql.P_SEQ: rec.seq,
            _sql.P_STATUS: rec.status,
            _sql.P_REASON: rec.finish_reason,
            _sql.P_NOW: datetime.fromisoformat(rec.written_at) if rec.written_at else now,
            **{_sql.extra_param(f): rec.extras.get(f) for f in _sql.EXTRAS},
        }

    def _write_text(
        self, conn: sa.Connection, params: dict[str, Any], text: str, *, whole: bool
    ) -> None:
        """One flush of `text` (the new text, or with `whole` all of it), in as many
        statements as the server's limit needs, under one guard and transaction."""
        text = self.sanitize(text)
        budget = self._budget(conn)
        pieces = [text[i : i + budget] for i in range(0, len(text), budget)] or [""]
        for n, piece in enumerate(pieces[:-1]):
            stmt = self._pieces[(whole, not (whole and n == 0))]
            conn.execute(stmt, {**params, _sql.P_DELTA: piece})
        if whole and len(pieces) == 1:
            conn.execute(self._whole_stmt, {**params, _sql.P_DELTA: pieces[0]})
        else:
            last = self._last_whole if whole else self._append_stmt
            conn.execute(last, {**params, _sql.P_DELTA: pieces[-1]})

    def _whole_text(self, job: _Job) -> str:
        with self._cond:
            return "".join([*job.state.committed, job.delta])

    def _beat(self, conn: sa.Connection, jobs: list[_Job], now: Any) -> int:
        """Refresh the lease of drafts with nothing new to write; rows matched."""
        key = self._layout.msg_key
        if self._beat_rows is not None:
            rows = [(key(j.state.message_id), j.state.writer, j.seq) for j in jobs]
            return int(conn.execute(self._beat_rows, _rows(rows, now)).rowcount)
        params = [
            {
                _sql.P_ID: key(j.state.message_id),
                _sql.P_WRITER: j.state.writer,
                _sql.P_SEQ: j.seq,
                _sql.P_NOW: now,
            }
            for j in jobs
        ]
        return int(conn.execute(self._beat_stmt, params).rowcount)

    def _verdicts(self, conn: sa.Connection, jobs: list[_Job]) -> dict[int, Verdict]:
        found = self._classify(conn, [(j.state.message_id, j.state.writer, j.seq) for j in jobs])
        return {id(j): v for j, v in zip(jobs, found, strict=True)}

    def _classify(
        self, conn: sa.Connection, keys: list[tuple[str, str | None, int]]
    ) -> list[Verdict]:
        """For each (message id, writer token, seq) written: did it land, is the row
        behind it, held by another writer (or complete), or gone?"""
        L = self._layout
        ids = [L.msg_key(mid) for mid, _, _ in keys]
        rows = conn.execute(
            sa.select(L.id, L.seq, L.writer, L.status).where(L.id.in_(ids))
        ).all()
        stored = {str(r[0]): (r[1], r[2] or "", r[3]) for r in rows}
        out: list[Verdict] = []
        for mid, writer, seq in keys:
            row = stored.get(mid)
            if row is None:
                out.append("deleted")
            elif row[1] != (writer or ""):
                out.append("superseded")
            elif row[0] == seq:
                out.append("landed")
            elif row[2] != STREAMING or row[0] > seq:
                out.append("superseded")
            else:
                out.append("behind")
        return out

    def _record(self, job: _Job, written_at: str, text: str | None = None) -> Record:
        """The job's whole row, as journaled."""
        s = job.state
        return Record(
            message_id=s.message_id,
            session_id=s.session_id,
            role=s.role,
            content=self.sanitize("".join([*s.committed, job.delta]) if text is None else text),
            seq=job.seq,
            status=job.status,
            finish_reason=job.reason,
            extras={k: v for k, v in job.extras.items() if v is not None},
            written_at=written_at,
            writer=s.writer,
        )

    # -- bookkeeping (under the lock; nothing here may fail) --

    def _settle(self, jobs: list[_Job], verdicts: dict[int, Verdict]) -> None:
        mono = self._clock.monotonic()
        with self._cond:
            for job in jobs:
                s = job.state
                verdict = verdicts.get(id(job), "landed")
                if verdict in ("superseded", "deleted"):
                    s.committed.append(job.delta)
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
        s.seq = job.seq
        s.row_in_sync = True
        if job.final:
            self._drop(s, None)

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


def _call(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # noqa: BLE001 - e.g. the event loop of an async draft closed
        log.exception("chatpersist: a draft's end callback failed")


# MySQL errors that come as OperationalError but no retry can cure: a packet over
# max_allowed_packet, a text grown past it (the server's limit on one value), a value
# out of range or too long, a CHECK constraint (MariaDB 4025, MySQL 3819).
_MYSQL_REFUSALS = frozenset({1153, 1264, 1301, 1366, 1406, 3819, 4025})


def _refusal(exc: BaseException) -> bool:
    args: tuple[Any, ...] = getattr(getattr(exc, "orig", None), "args", ())
    return bool(args) and args[0] in _MYSQL_REFUSALS


def _quarantine(journal: Journal, rec: Record, reason: str) -> bool:
    """Set a record aside; False (logged) when the quarantine file cannot be written."""
    try:
        journal.quarantine(rec, reason)
    except OSError as exc:
        log.error("chatpersist: cannot quarantine the record of %r: %s", rec.message_id, exc)
        return False
    return True


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def _rows(rows: list[tuple[Any, ...]], now: Any) -> dict[str, Any]:
    """Parameters of `_sql.append_rows` / `heartbeat_rows`: the rows as one JSON
    array, plus the common timestamp."""
    return {_sql.P_ROWS: json.dumps(rows), _sql.P_NOW: now}
