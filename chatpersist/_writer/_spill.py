"""The journal: drafts the database cannot take (away too long, or refusing) are
written there instead, and replayed into the database once it answers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .. import _sql
from .._engine import write_tx
from .._journal import Journal, Record
from .._message import to_db_time
from .._parts import compact
from ._base import _clean, log
from ._retry import _TRANSIENT, _refusal, _Retry, _short
from ._state import _Job


class _Spill(_Retry):
    def __init__(self, **rest: Any) -> None:
        super().__init__(**rest)
        self._to_replay = self._journal is not None
        self._journal_failing = False
        # One replay at a time (the writer's own, `recover()`...): a record replayed
        # by one is cleared before the other reads the journal, so none is counted twice.
        self._replaying = threading.Lock()

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

    def replay(
        self, journal: Journal | None = None, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Write the journal's newest record of each message to the database, then
        forget them. Guards make a record that is already applied, or whose row
        another writer holds, change nothing; a record the database refuses is
        logged and skipped, and never stops the others. `progress(done, total)` is
        called as records are replayed (a command line's progress bar)."""
        journal = journal or self._journal
        if journal is None:
            return 0
        with self._replaying:
            return self._replay(journal, progress)

    def _replay(self, journal: Journal, progress: Callable[[int, int], None] | None) -> int:
        if journal is self._journal:
            self._to_replay = False  # a spill from now on sets it again
        size = journal.size()
        records = journal.latest()
        now = to_db_time(self._clock.now())
        applied = 0
        kept = True
        for done, rec in enumerate(records):
            if progress is not None:
                progress(done, len(records))
            try:
                with write_tx(self._engine) as conn:
                    self._write_text(
                        conn, self._record_params(rec, now), rec.content, whole=True,
                        parts=rec.parts,
                    )  # fmt: skip
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
        if progress is not None:
            progress(len(records), len(records))
        if kept:  # else the journal keeps them all until their quarantine can be written
            journal.clear(size)
        self.stats.replayed += applied
        return len(records)

    def _record(
        self,
        job: _Job,
        written_at: str,
        text: str | None = None,
        segments: list[dict[str, Any]] | None = None,
    ) -> Record:
        """The job's whole row, as journaled (or with `text` and `segments` as given)."""
        s = job.state
        if segments is None and s.log is not None:
            segments = [*s.log.committed, *(job.parts or [])]
        parts = None if segments is None else compact(_clean(segments, self.sanitize))
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
            parts=parts,
        )

    def _record_params(self, rec: Record, now: Any) -> dict[str, Any]:
        row = {
            "id": self._layout.msg_key(rec.message_id),
            "writer": rec.writer or "",
            "prev": rec.seq - 1,
            "seq": rec.seq,
            "status": rec.status,
            "reason": rec.finish_reason,
            **{f: rec.extras.get(f) for f in _sql.EXTRAS},
        }
        return _sql.bind(row, datetime.fromisoformat(rec.written_at) if rec.written_at else now)


def _quarantine(journal: Journal, rec: Record, reason: str) -> bool:
    """Set a record aside; False (logged) when the quarantine file cannot be written."""
    try:
        journal.quarantine(rec, reason)
    except OSError as exc:
        log.error("chatpersist: cannot quarantine the record of %r: %s", rec.message_id, exc)
        return False
    return True
