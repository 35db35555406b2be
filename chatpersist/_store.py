"""`ChatStore`: sessions, messages, drafts and the history loader over one database."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import _migrate, _sql
from ._activity import Activity, snapshot
from ._audit import AuditMixin
from ._checks import (
    check_id,
    check_int_id,
    check_intervals,
    check_owner,
    check_reason,
    check_role,
    new_id,
    sanitizer,
)
from ._clock import Clock, SystemClock
from ._draft import AsyncDraft, Draft, DraftOptions
from ._engine import make_engine, read_tx, write_tx
from ._errors import (
    FlushError,
    MessageConflict,
    NoSessionsTable,
    NotMigrated,
    TableMismatch,
    UnknownMessage,
    UnknownSession,
)
from ._history import CutToolCalls, HistoryFormat, for_model
from ._journal import Journal
from ._loader import Loader
from ._message import INTERRUPTED_MARKER, Message, ends_complete, to_db_time
from ._parts import PartsLog
from ._retention import SweepReport
from ._retention import sweep as sweep_report
from ._retrofit import MessagesTable
from ._schema import (
    CLIENT_WRITER,
    COMPLETE,
    MAX_INT,
    RECOVER_LENGTH,
    STREAMING,
    Layout,
)
from ._writer import DraftState, Writer, WriterStats

log = logging.getLogger("chatpersist")


class ChatStore(AuditMixin):
    """Chat history with drafts that survive an interrupted stream.

    `url_or_engine` is a SQLAlchemy URL string or Engine. A flush of a draft is due
    every `every_chunks` chunks or `every_seconds` after its first unflushed chunk.
    A streaming draft whose heartbeat is older than `lease_seconds` loads as
    interrupted (its writer is gone).

    When the database is away, flushes are retried with backoff (`retry_wait`, a
    tenacity wait policy); with a `journal` file, drafts that could not be written for
    `spill_after` seconds are appended (fsynced) to it and replayed when the database
    is back, at the next start, or by `recover()`.

    A user's Stop may reach any worker (`request_stop`); the writer of each open draft
    reads the requests every `stop_poll` seconds (one query for all its drafts).

    An answer opted in to completion after a crash (`draft(..., recover_with=...)`) is
    claimed by a `recovery.Recoverer` at most `max_recoveries` times.
    """

    def __init__(
        self,
        url_or_engine: str | sa.URL | Engine,
        *,
        every_chunks: int = 20,
        every_seconds: float = 2.0,
        lease_seconds: float = 30.0,
        clock: Clock | None = None,
        interrupted_marker: str = INTERRUPTED_MARKER,
        final_timeout: float | None = 30.0,
        table: str | MessagesTable | None = None,
        journal: str | os.PathLike[str] | None = None,
        spill_after: float = 10.0,
        retry_wait: Any = None,
        stop_poll: float = 0.5,
        max_recoveries: int = 3,
    ) -> None:
        check_intervals(every_chunks, every_seconds)
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        #: chatpersist's engine: the app's own on PostgreSQL / MySQL, a separate one on
        #: the same SQLite file (see `make_engine`).
        self.engine = make_engine(url_or_engine)
        self._owns_engine = self.engine is not url_or_engine
        #: Where messages live: chatpersist's own tables, or the app's (see `MessagesTable`).
        self.table = MessagesTable(table) if isinstance(table, str) else table
        self.layout = Layout.default() if self.table is None else self.table.layout()
        self.every_chunks = every_chunks
        self.every_seconds = every_seconds
        self.lease_seconds = lease_seconds
        self.clock: Clock = clock or SystemClock()
        self.interrupted_marker = interrupted_marker
        self.final_timeout = final_timeout
        #: Reads rows into messages (live / interrupted by the lease).
        if (
            isinstance(max_recoveries, bool)
            or not isinstance(max_recoveries, int)
            or (max_recoveries < 0)
        ):
            raise ValueError("max_recoveries must be a non-negative integer")
        #: How many times an answer opted in to completion after a crash is claimed.
        self.max_recoveries = max_recoveries
        self.loader = Loader(
            self.layout, self.clock, lease_seconds, interrupted_marker, max_recoveries
        )
        self._stamp_lock = threading.Lock()
        self._last_stamp: datetime | None = None
        # One journal file belongs to one running store: held with an OS lock.
        self._journal = None if journal is None else Journal(journal)
        if self._journal is not None:
            self._journal.lock()
        self._writer = Writer(
            self.engine,
            self.layout,
            self.clock,
            # Three beats per lease: one late beat never makes a live draft look dead.
            heartbeat_seconds=lease_seconds / 3,
            sanitize=sanitizer(self.engine.dialect.name),
            journal=self._journal,
            spill_after=spill_after,
            retry_wait=retry_wait,
            stop_poll=stop_poll,
        )
        if journal is not None:
            try:
                self.recover()  # what a previous run could not write
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
                log.warning("chatpersist: journal not replayed yet, database away: %s", exc)

    # -- lifecycle --

    def migrate(self, revision: str = "head") -> None:
        """Create or upgrade chatpersist's tables, or add the draft columns to the app's."""
        _migrate.upgrade(self.engine, revision, self.table)
        if self.table is not None:
            loose = _migrate.loose_id_collation(self.engine, self.table)
            if loose:
                log.warning("chatpersist: %s", loose)

    def recover(self) -> int:
        """Replay the journal into the database now; returns how many messages it held."""
        return self._writer.replay()

    def recover_from(
        self,
        journal: str | os.PathLike[str],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Replay another journal file (e.g. one a dead process left behind);
        `progress(done, total)` is called as records are written.

        Raises `NotAJournal` for a file that is not one (leaving it untouched) and
        `JournalLocked` while a running store still owns it."""
        if self._journal is not None and os.path.realpath(journal) == os.path.realpath(
            self._journal.path
        ):
            return self._writer.replay(progress=progress)
        other = Journal(journal)
        other.lock()
        try:
            return self._writer.replay(other, progress=progress)
        finally:
            other.unlock()

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush and end every open draft (as cancelled), then release the engine.

        When the database is away, what cannot be written within `timeout` goes to
        the journal; without a journal it is lost, and `FlushError` says how many
        drafts that was. Appending to a draft after `close()` raises `StoreClosed`.
        """
        lost = self._writer.stop(timeout)
        if self._journal is not None:
            self._journal.unlock()
        if self._owns_engine:
            self.engine.dispose()
        if lost:
            raise FlushError(
                f"{lost} drafts could not be written before close (the database was away "
                "and the store has no journal)"
            )

    def __enter__(self) -> ChatStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def stats(self) -> WriterStats:
        """Counters of the background writer (transactions, flushes, heartbeats...)."""
        return self._writer.stats

    # -- writing --

    def create_session(self, title: str | None = None, *, session_id: str | None = None) -> str:
        """Create a session and return its id (`session_id` to choose it yourself)."""
        sid = check_id(session_id, "session_id") if session_id is not None else new_id()
        sessions = self._sessions_table()
        now = self._stamp()
        with self._tx(write=True) as conn:
            conn.execute(
                sa.insert(sessions).values(id=sid, title=title, created_at=now, updated_at=now)
            )
        return sid

    def rename_session(self, session_id: str, title: str | None) -> None:
        """Give a session a new title (None: no title). Its `updated_at`, by which
        `sessions()` sorts, is left alone: renaming is not activity. Raises
        `UnknownSession` when there is no such session, and `NoSessionsTable` on an
        app's own tables (which keep their titles themselves)."""
        if title is not None and not isinstance(title, str):
            raise TypeError(f"title must be str or None, not {type(title).__name__}")
        sessions = self._sessions_table()
        sid = self._session_id(session_id)
        with self._tx(write=True) as conn:
            found = conn.execute(
                sa.update(sessions).where(sessions.c.id == sid).values(title=title)
            ).rowcount
        if not found:
            raise UnknownSession(session_id)

    def delete_session(self, session_id: str) -> int:
        """Delete a session and all its messages, in one transaction; returns how
        many messages went. A draft still writing into the session stops at its next
        write (`Draft.deleted`; its text stays in memory) and never writes the rows
        back. Raises `UnknownSession` when there is no such session, and
        `NoSessionsTable` on an app's own tables (which delete their own rows)."""
        sessions = self._sessions_table()
        L = self.layout
        sid = self._session_id(session_id)
        with self._tx(write=True) as conn:
            gone = conn.execute(
                sa.delete(L.messages).where(L.session_id == L.session_key(sid))
            ).rowcount
            found = conn.execute(sa.delete(sessions).where(sessions.c.id == sid)).rowcount
        if not found:
            raise UnknownSession(session_id)
        return int(gone or 0)

    def add_message(
        self, session_id: str, role: str, content: str, message_id: str | None = None
    ) -> Message:
        """Save a finished message. With the id of a draft, completes that draft's row."""
        if not isinstance(content, str):
            raise TypeError(f"content must be str, not {type(content).__name__}")
        check_role(role)
        L = self.layout
        mid = None if message_id is None else self._message_id(message_id)
        now = self._stamp()
        text = self._writer.sanitize(content)
        with self._tx(write=True) as conn:
            self._require_session(conn, session_id)
            row = None
            if mid is not None:
                row = conn.execute(
                    sa.select(L.session_id, L.status).where(L.id == L.msg_key(mid))
                ).first()
            if row is None:
                mid = self._insert(conn, mid, session_id, role, text, COMPLETE, now)
            else:
                assert mid is not None
                check_owner(mid, row[0], session_id)
                if row[1] == COMPLETE:
                    raise MessageConflict(f"message {mid!r} is already complete")
                # The host's "save on finish" for a draft: complete the same row.
                conn.execute(
                    sa.update(L.messages)
                    .where(L.id == L.msg_key(mid))
                    .values(
                        {
                            L.content: text,
                            L.status: COMPLETE,
                            L.finish_reason: "stop",
                            L.seq: L.seq + 1,
                            L.updated_at: now,
                        }
                    )
                )
        return self.get_message(mid)

    def save_partial(
        self,
        session_id: str,
        message_id: str | int,
        content: str,
        seq: int,
        *,
        done: bool = False,
        finish_reason: str | None = None,
        role: str = "assistant",
    ) -> tuple[bool, Message]:
        """Store the text of an answer whose stream a client holds (it sends the whole text).

        Idempotent and seq-guarded: a request whose `seq` is not newer than the stored
        one, or that comes after the message is complete, changes nothing. `done` ends
        the answer: complete, unless `finish_reason` says it was cut (one of
        `CUT_REASONS`, e.g. "stopped" or "disconnected"). A message a server-side draft
        writes (or took over) is not the client's: the request is then not applied.
        Returns whether the request was applied, and the message as stored.
        """
        if not isinstance(content, str):
            raise TypeError(f"content must be str, not {type(content).__name__}")
        if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_INT:
            raise ValueError(f"seq must be an integer from 1 to {MAX_INT}")
        check_reason(finish_reason)
        check_role(role)
        mid = self._message_id(message_id)
        L = self.layout
        status, reason = STREAMING, finish_reason if done else None
        if done and ends_complete(finish_reason):
            status, reason = COMPLETE, finish_reason or "stop"
        now = self._stamp()
        row = L.new_row(now) | L.row(
            id=L.msg_key(mid), session_id=L.session_key(session_id), role=role,
            content=self._writer.sanitize(content), status=status, finish_reason=reason,
            seq=seq, updated_at=now, writer=CLIENT_WRITER,
        )  # fmt: skip
        with self._tx(write=True) as conn:
            self._require_session(conn, session_id)
            owner = conn.execute(sa.select(L.session_id).where(L.id == L.msg_key(mid))).scalar()
            if owner is not None:
                check_owner(mid, owner, session_id)
            conn.execute(_sql.full_upsert(L, self.engine.dialect, [row]))
            stored = conn.execute(self.loader.select().where(L.id == L.msg_key(mid))).one()
        message = self.loader.messages([stored])[0]
        return message.seq == seq and message.content == row[L.content.key], message

    def draft(
        self,
        session_id: str | int,
        message_id: str | int | None = None,
        role: str = "assistant",
        every_chunks: int | None = None,
        every_seconds: float | None = None,
        *,
        recover_with: str | None = None,
    ) -> Draft:
        """A draft to stream into: `with store.draft(sid) as d: d.append(piece)`.

        `recover_with` opts the answer in to completion after a crash: if its writer
        dies (its heartbeat stops, or its process stops), a `recovery.Recoverer` in any
        process claims it and completes it with the provider its factory builds from
        this string (e.g. "openai:gpt-4o"). Until then it reads as `recovering`."""
        options = self._options(
            session_id, message_id, role, every_chunks, every_seconds, recover_with
        )
        return Draft(self._writer, self._open_draft, options)

    def draft_async(
        self,
        session_id: str | int,
        message_id: str | int | None = None,
        role: str = "assistant",
        every_chunks: int | None = None,
        every_seconds: float | None = None,
        *,
        recover_with: str | None = None,
    ) -> AsyncDraft:
        """The asyncio twin of `draft`: `async with store.draft_async(sid) as d: ...`."""
        options = self._options(
            session_id, message_id, role, every_chunks, every_seconds, recover_with
        )
        return AsyncDraft(self._writer, self._open_draft, options)

    def restart(self, message_id: str | int) -> Message:
        """Empty a message nobody is writing and mark it streaming ("regenerating"),
        so that a new answer is written in its place (same id, same position); the
        next draft on its id resumes it. Used by `chatpersist.recovery.regenerate`."""
        L = self.layout
        target = self.get_message(message_id)
        if target.live:
            raise MessageConflict(f"message {message_id!r} is still being written")
        with self._tx(write=True) as conn:
            conn.execute(
                sa.update(L.messages)
                .where(L.id == L.msg_key(self._message_id(message_id)))
                .values(
                    {L.content: "", L.parts: None, L.status: STREAMING,
                     L.finish_reason: "regenerating", L.error: None, L.seq: L.seq + 1,
                     L.stop_requested: None}
                )
            )  # fmt: skip
        return self.get_message(message_id)

    def claim_recoverable(self, limit: int = 1) -> list[Message]:
        """Claim up to `limit` answers opted in to completion after a crash whose
        writer is gone (see `draft(recover_with=...)`): each claimed one is fenced like
        any takeover (a new writer token and seq; a paused old writer can write nothing
        more), counted as one recovery, and live again; the caller must now complete it
        (`recovery.Recoverer` does). At most one claimant gets each answer: PostgreSQL
        locks the candidates with FOR UPDATE SKIP LOCKED, and every claim is an UPDATE
        guarded by the seq it read."""
        L = self.layout
        now = self._stamp()
        claimed: list[str] = []
        with self._tx(write=True) as conn:
            query = (
                sa.select(L.id, L.seq)
                .where(self.loader.recoverable())
                .order_by(L.updated_at)
                .limit(limit)
            )
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            for mid, seq in conn.execute(query).all():
                result = conn.execute(
                    sa.update(L.messages)
                    .where(L.id == mid, L.seq == seq, self.loader.recoverable())
                    .values(
                        {L.writer: uuid.uuid4().hex, L.seq: L.seq + 1,
                         L.recoveries: sa.func.coalesce(L.recoveries, 0) + 1,
                         L.updated_at: now, L.finish_reason: None, L.error: None,
                         L.stop_requested: None}
                    )
                )  # fmt: skip
                if result.rowcount:
                    claimed.append(str(mid))
        return [self.get_message(mid) for mid in claimed]

    def clean(
        self,
        older_than: timedelta | None = None,
        *,
        delete_empty: bool = True,
        dry_run: bool = False,
    ) -> SweepReport:
        """Retention: `sweep()`, then (with `delete_empty`) delete the abandoned drafts
        that hold nothing (no text, no parts) and whose writer was last heard of more
        than `older_than` ago. Drafts with text are kept (a user may continue them);
        live and recovering ones are never touched. With `dry_run`, count only."""
        return sweep_report(
            self, older_than=older_than, delete_empty=delete_empty, dry_run=dry_run
        )

    def activity(self, limit: int = 20, stalled_after: float | None = None) -> Activity:
        """What is being written now and what was cut lately (what `chatpersist top`
        shows), computed in the database: the answers being written (live or stalled:
        no new text for `stalled_after` seconds), the last interrupted ones with their
        reason, and totals."""
        return snapshot(self, limit=limit, stalled_after=stalled_after)

    def request_stop(self, message_id: str | int) -> bool:
        """A user's Stop, from any worker: recorded on the message, which its writer
        (in whichever process) ends 'stopped' within `stop_poll` seconds, keeping all
        its text. True when the answer was live (being written), else False."""
        L = self.layout
        mid = self._message_id(message_id)
        now = self._stamp()
        alive_since = to_db_time(self.clock.now() - timedelta(seconds=self.lease_seconds))
        with self._tx(write=True) as conn:
            result = conn.execute(
                sa.update(L.messages)
                .where(
                    L.id == L.msg_key(mid),
                    L.status == STREAMING,
                    L.finish_reason.is_(None),
                    L.updated_at >= alive_since,
                )
                .values({L.stop_requested: now})
            )
        return bool(result.rowcount)

    # -- reading --

    def get_message(self, message_id: str | int) -> Message:
        """One message by id, as the loader shows it (live, interrupted or complete)."""
        L = self.layout
        mid = self._message_id(message_id)
        with self._tx() as conn:
            row = conn.execute(self.loader.select().where(L.id == L.msg_key(mid))).first()
        if row is None:
            raise UnknownMessage(mid)
        return self.loader.messages([row])[0]

    def read_from(self, message_id: str | int, offset: int) -> Message:
        """The message with `content` holding only its text from character `offset` on
        (empty past the end): a follower reads what it misses, not the whole answer."""
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError(f"offset must be a non-negative integer: {offset!r}")
        L = self.layout
        mid = self._message_id(message_id)
        with self._tx() as conn:
            query = self.loader.select(offset).where(L.id == L.msg_key(mid))
            row = conn.execute(query).first()
        if row is None:
            raise UnknownMessage(mid)
        return self.loader.messages([row], offset=offset)[0]

    async def aget_message(self, message_id: str | int) -> Message:
        """`get_message` without blocking the event loop."""
        return await asyncio.to_thread(self.get_message, message_id)

    def history(self, session_id: str | int) -> list[Message]:
        """The session's messages, oldest first; drafts marked `live` or `interrupted`."""
        L = self.layout
        sid = self._session_id(session_id)
        with self._tx() as conn:
            self._require_session(conn, sid)
            query = self.loader.select().where(L.session_id == L.session_key(sid))
            rows = conn.execute(query.order_by(*L.order())).all()
        return self.loader.messages(rows)

    def history_for_model(
        self,
        session_id: str | int,
        *,
        interrupted: Literal["keep", "drop"] = "keep",
        before: str | int | None = None,
        format: HistoryFormat = "openai",
        cut_tool_calls: CutToolCalls = "drop",
        keep_reasoning: bool = False,
    ) -> list[dict[str, Any]]:
        """History to send back to a model, in the shape of its API (`format`):
        live drafts left out, interrupted ones by choice.

        Kept interrupted answers carry their text without the display marker; empty
        ones are always left out (an empty assistant turn is refused by most APIs).
        With `before`, only the messages that precede that message id. Answers with
        tool calls become the turns each API expects (OpenAI: `tool_calls` and one
        `tool` message per call; Anthropic: `tool_use` / `tool_result` blocks); a call
        cut short or without a result is left out (`cut_tool_calls="drop"`) or closed
        by an error result (`"error"`), never sent half. Reasoning of a cut answer is
        left out unless `keep_reasoning`.
        """
        return for_model(
            self.history(session_id), interrupted, before, format=format,
            cut_tool_calls=cut_tool_calls, keep_reasoning=keep_reasoning,
        )  # fmt: skip

    # -- internals --

    def _options(
        self,
        session_id: str | int,
        message_id: str | int | None,
        role: str,
        every_chunks: int | None,
        every_seconds: float | None,
        recover_with: str | None = None,
    ) -> DraftOptions:
        check_role(role)
        if recover_with is not None and (
            not isinstance(recover_with, str) or not recover_with
            or len(recover_with) > RECOVER_LENGTH
        ):  # fmt: skip
            raise ValueError(
                f"recover_with must be a non-empty string of at most {RECOVER_LENGTH} "
                f"characters: {recover_with!r:.80}"
            )
        n = self.every_chunks if every_chunks is None else every_chunks
        t = self.every_seconds if every_seconds is None else every_seconds
        check_intervals(n, t)
        mid = None if message_id is None else self._message_id(message_id)
        length = self.layout.model.type.length or 255  # type: ignore[attr-defined]
        return DraftOptions(
            self._session_id(session_id), mid, role, n, t, self.final_timeout, length,
            recover_with,
        )  # fmt: skip

    def _open_draft(self, o: DraftOptions) -> DraftState:
        """Create (or take over) the draft's row, then hand it to the writer."""
        L = self.layout
        mid = o.message_id
        now = self._stamp()
        writer = uuid.uuid4().hex
        text, seq, parts = "", 0, None
        with self._tx(write=True) as conn:
            self._require_session(conn, o.session_id, touch=now)
            row = None
            if mid is not None:
                # Take over first, then read: the update locks the row, so a late
                # flush of the old writer lands before it (and is read) or not at all.
                conn.execute(
                    sa.update(L.messages)
                    .where(
                        L.id == L.msg_key(mid),
                        L.status == STREAMING,
                        L.session_id == L.session_key(o.session_id),
                    )
                    .values(
                        {L.writer: writer, L.seq: L.seq + 1, L.finish_reason: None,
                         L.error: None, L.updated_at: now, L.stop_requested: None,
                         L.recover_with: sa.func.coalesce(o.recover_with, L.recover_with)}
                    )
                )  # fmt: skip
                row = conn.execute(
                    sa.select(L.session_id, L.status, L.seq, L.content, L.parts).where(
                        L.id == L.msg_key(mid)
                    )
                ).first()
            if row is None:
                mid = self._insert(
                    conn, mid, o.session_id, o.role, "", STREAMING, now, writer, o.recover_with
                )
            else:
                assert mid is not None
                check_owner(mid, row[0], o.session_id)
                if row[1] == COMPLETE:
                    raise MessageConflict(f"message {mid!r} is already complete")
                # The new token fences off the old writer, however late it comes back.
                text, seq = row[3], row[2]
                parts = PartsLog.resumed(row[4], len(text))
        state = DraftState(
            message_id=mid,
            session_id=o.session_id,
            role=o.role,
            every_chunks=o.every_chunks,
            every_seconds=o.every_seconds,
            committed_text=text,
            seq=seq,
            writer=writer,
            parts=parts,
        )
        self._writer.register(state)
        return state

    def _insert(
        self,
        conn: sa.Connection,
        message_id: str | None,
        session_id: str,
        role: str,
        content: str,
        status: str,
        now: datetime,
        writer: str | None = None,
        recover_with: str | None = None,
    ) -> str:
        """Insert a message row; returns its id (made here, or by the database)."""
        L = self.layout
        values = L.new_row(now) | L.row(
            session_id=L.session_key(session_id), role=role, content=content, status=status,
            seq=0, updated_at=now, writer=writer, recover_with=recover_with, recoveries=0,
        )  # fmt: skip
        if message_id is not None or not L.int_ids:
            message_id = message_id or new_id()
            values[L.id.key] = L.msg_key(message_id)
        result = conn.execute(sa.insert(L.messages).values(values))
        if message_id is None:
            # An autoincrement id: the database chose it.
            pk = result.inserted_primary_key
            assert pk is not None
            message_id = str(pk[0])
        return message_id

    def _message_id(self, value: object) -> str:
        if self.layout.int_ids:
            return check_int_id(value, "message_id")
        return check_id(value, "message_id")

    def _session_id(self, value: object) -> str:
        if self.layout.int_session_ids:
            return check_int_id(value, "session_id")
        return check_id(value, "session_id")

    def _sessions_table(self) -> sa.Table:
        if self.layout.sessions is None:
            raise NoSessionsTable("this store has no sessions table")
        return self.layout.sessions

    def _require_session(
        self, conn: sa.Connection, session_id: str, touch: datetime | None = None
    ) -> None:
        L = self.layout
        if L.session_check is None:
            return  # the app's table has no sessions table to check against
        key = L.session_key(session_id)
        if touch is not None and L.session_touch is not None:
            # Once per draft, not per flush: sidebars sort by it.
            found = conn.execute(
                sa.update(L.session_check.table)
                .where(L.session_check == key)
                .values({L.session_touch: touch})
            ).rowcount
        else:
            found = (
                conn.execute(sa.select(sa.literal(1)).where(L.session_check == key)).first()
                is not None
            )
        if not found:
            raise UnknownSession(session_id)

    def _stamp(self) -> datetime:
        """Now as stored (naive UTC), strictly increasing within this store.

        History is ordered by creation time; two messages made in the same clock
        tick (or under a frozen test clock) must still keep their order.
        """
        now = to_db_time(self.clock.now())
        with self._stamp_lock:
            if self._last_stamp is not None and now <= self._last_stamp:
                now = self._last_stamp + timedelta(microseconds=1)
            self._last_stamp = now
        return now

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[sa.Connection]:
        try:
            with write_tx(self.engine) if write else read_tx(self.engine) as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            problem = _migrate.missing(self.engine, self.layout)
            if problem:
                raise NotMigrated(problem, None if self.table is None else self.table.name) from exc
            if self.table is not None:
                wrong = _migrate.mismatch(self.engine, self.table)
                if wrong:
                    raise TableMismatch(wrong) from exc
            raise
