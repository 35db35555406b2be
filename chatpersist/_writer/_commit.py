"""Group commit: the due writes of many drafts in one transaction, and what became of
each. PostgreSQL takes a batch's rows as one JSON array per statement
(`_sql.append_rows`); other databases get one executemany."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import _parts, _sql
from .._engine import write_tx
from .._message import to_db_time
from .._schema import STREAMING, Layout
from ._base import _Base, _clean
from ._state import Verdict, _Job

_SLICE = 64
# PostgreSQL takes a slice's rows in one statement (`_sql.append_rows`): bigger slices, as each
# costs one round trip, not one per row.
_ROWS_SLICE = 1000
# Characters of text per statement where the server sets no lower limit (MySQL's
# max_allowed_packet is read from the server).
_TEXT_BUDGET = 32 * 1024 * 1024


class _GroupCommit(_Base):
    def __init__(
        self, *, engine: Engine, layout: Layout, sanitize: Callable[[str], str], **rest: Any
    ) -> None:
        super().__init__(**rest)
        self._engine = engine
        self._layout = layout
        self.sanitize = sanitize
        self._text_budget: int | None = None
        dialect = engine.dialect.name
        self._append_stmt = _sql.append_update(layout, dialect)
        # PostgreSQL writes a batch's rows in one statement each (see `_sql.append_rows`).
        self._pg = dialect == "postgresql"
        self._rows_stmt = _sql.append_rows(layout) if self._pg else None
        self._beat_rows = _sql.heartbeat_rows(layout) if self._pg else None
        self._beat_stmt = _sql.heartbeat_update(layout)
        self._whole_stmt = _sql.flush_update(layout, whole=True, concat=False, dialect=dialect)
        self._pieces = {
            (whole, concat): _sql.piece_update(layout, whole=whole, concat=concat)
            for whole in (False, True)
            for concat in (False, True)
        }
        self._parts_pieces = {
            (whole, concat): _sql.parts_piece_update(layout, dialect, whole=whole, concat=concat)
            for whole in (False, True)
            for concat in (False, True)
        }
        self._last_whole = _sql.flush_update(layout, whole=True, concat=True, dialect=dialect)

    def _commit(self, jobs: list[_Job]) -> dict[int, Verdict]:
        """Write the jobs in one transaction; what became of each (by `id(job)`).
        Only database work here: any fault is the database's."""
        now = to_db_time(self._clock.now())
        writes = [j for j in jobs if not j.heartbeat]
        beats = [j for j in jobs if j.heartbeat]
        verdicts: dict[int, Verdict] = {}
        with write_tx(self._engine) as conn:
            budget = self._budget(conn)
            appends = [j for j in writes if j.state.row_in_sync and j.size() <= budget]
            rest = [j for j in writes if not (j.state.row_in_sync and j.size() <= budget)]
            if appends:
                if self._append(conn, appends, now, budget) == len(appends):
                    verdicts.update((id(j), "landed") for j in appends)
                else:
                    verdicts.update(self._verdicts(conn, appends))
                    rest += [j for j in appends if verdicts[id(j)] == "behind"]
            for job in rest:
                whole = not job.state.row_in_sync or id(job) in verdicts
                text, parts = self._whole(job) if whole else (job.delta, job.parts)
                self._write_text(conn, self._params(job, now), text, whole=whole, parts=parts)
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
                size += jobs[i].size()
                part.append(jobs[i])
                i += 1
            rows = [self._row(j) for j in part]
            if self._rows_stmt is None:
                params = [_sql.bind(r, now) for r in rows]
                result = conn.execute(self._append_stmt, params)
            else:
                values = [_sql.row_values(r) for r in rows]
                result = conn.execute(self._rows_stmt, _rows(values, now))
            matched += result.rowcount
            time.sleep(0)
        return matched

    def _row(self, job: _Job) -> dict[str, Any]:
        """What one flush writes, by the names of `_sql.APPEND_PARAMS`."""
        return {
            "id": self._layout.msg_key(job.state.message_id),
            "writer": job.state.writer,
            "prev": job.seq - 1,
            "seq": job.seq,
            "delta": self.sanitize(job.delta),
            "status": job.status,
            "reason": job.reason,
            "parts": job.parts_json,
            **{f: job.extras.get(f) for f in _sql.EXTRAS},
        }

    def _params(self, job: _Job, now: Any) -> dict[str, Any]:
        return _sql.bind(self._row(job), now)

    def _write_text(
        self,
        conn: sa.Connection,
        params: dict[str, Any],
        text: str,
        *,
        whole: bool,
        parts: list[dict[str, Any]] | None = None,
    ) -> None:
        """One flush of `text` and `parts` (the new ones, or with `whole` all of
        them), in as many statements as the server's limit needs, under one guard
        and transaction."""
        text = self.sanitize(text)
        budget = self._budget(conn)
        chunks = _parts.split(_clean(parts, self.sanitize), budget) if parts else []
        params = {**params, _sql.P_PARTS: None}
        if whole or len(chunks) > 1 or (chunks and len(chunks[0]) + len(text) > budget):
            # The parts on their own first: a whole rewrite sets them (NULL: none).
            pieces: list[str | None] = [*chunks] if chunks or not whole else [None]
            for n, chunk in enumerate(pieces):
                stmt = self._parts_pieces[(whole, not whole or n > 0)]
                conn.execute(stmt, {**params, _sql.P_PARTS: chunk})
        elif chunks:
            params[_sql.P_PARTS] = chunks[0]
        pieces = [text[i : i + budget] for i in range(0, len(text), budget)] or [""]
        for n, piece in enumerate(pieces[:-1]):
            stmt = self._pieces[(whole, not (whole and n == 0))]
            conn.execute(stmt, {**params, _sql.P_DELTA: piece})
        if whole and len(pieces) == 1:
            conn.execute(self._whole_stmt, {**params, _sql.P_DELTA: pieces[0]})
        else:
            last = self._last_whole if whole else self._append_stmt
            conn.execute(last, {**params, _sql.P_DELTA: pieces[-1]})

    def _whole(self, job: _Job) -> tuple[str, list[dict[str, Any]] | None]:
        """The text and parts segments of the job's draft up to this job."""
        with self._cond:
            s = job.state
            text = "".join([*s.committed, job.delta])
            return text, None if s.log is None else _parts.compact(
                [*s.log.committed, *(job.parts or [])]
            )

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
        rows = conn.execute(sa.select(L.id, L.seq, L.writer, L.status).where(L.id.in_(ids))).all()
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


def _rows(rows: list[Any], now: Any) -> dict[str, Any]:
    """Parameters of `_sql.append_rows` / `heartbeat_rows`: the rows as one JSON
    array, plus the common timestamp."""
    return {_sql.P_ROWS: json.dumps(rows), _sql.P_NOW: now}
