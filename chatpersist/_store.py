"""`ChatStore`: sessions, messages, drafts and the history loader over one database."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import _migrate, _sql
from ._audit import AuditMixin
from ._clock import Clock, SystemClock
from ._draft import AsyncDraft, Draft
from ._engine import make_engine, read_tx, write_tx
from ._errors import (
    FlushError,
    MessageConflict,
    NotMigrated,
    TableMismatch,
    UnknownMessage,
    UnknownSession,
)
from ._journal import Journal
from ._message import INTERRUPTED_MARKER, Message, build_message, ends_complete, to_db_time
from ._retrofit import MessagesTable
from ._schema import CLIENT_WRITER, COMPLETE, ID_LENGTH, MAX_INT, REASON_LENGTH, STREAMING, Layout
from ._writer import DraftState, Writer, WriterStats

log = logging.getLogger("chatpersist")

@dataclass(frozen=True)
class DraftOptions:
    session_id: str
    message_id: str | None
    role: str
    every_chunks: int
    every_seconds: float


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
    ) -> None:
        _check_intervals(every_chunks, every_seconds)
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
            sanitize=_sanitizer(self.engine.dialect.name),
            journal=self._journal,
            spill_after=spill_after,
            retry_wait=retry_wait,
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

    def recover_from(self, journal: str | os.PathLike[str]) -> int:
        """Replay another journal file (e.g. one a dead process left behind).

        Raises `NotAJournal` for a file that is not one (leaving it untouched) and
        `JournalLocked` while a running store still owns it."""
        if self._journal is not None and os.path.realpath(journal) == os.path.realpath(
            self._journal.path
        ):
            return self.recover()
        other = Journal(journal)
        other.lock()
        try:
            return self._writer.replay(other)
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
        sid = _check_id(session_id, "session_id") if session_id is not None else _new_id()
        sessions = self._sessions_table()
        now = self._stamp()
        with self._tx(write=True) as conn:
            conn.execute(
                sa.insert(sessions).values(id=sid, title=title, created_at=now, updated_at=now)
            )
        return sid

    def add_message(
        self, session_id: str, role: str, content: str, message_id: str | None = None
    ) -> Message:
        """Save a finished message. With the id of a draft, completes that draft's row."""
        if not isinstance(content, str):
            raise TypeError(f"content must be str, not {type(content).__name__}")
        _check_role(role)
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
                _check_owner(mid, row[0], session_id)
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
        _check_reason(finish_reason)
        _check_role(role)
        mid = self._message_id(message_id)
        L = self.layout
        status, reason = STREAMING, finish_reason if done else None
        if done and ends_complete(finish_reason):
            status, reason = COMPLETE, finish_reason or "stop"
        now = self._stamp()
        row = {
            **L.new_row(now),
            L.id.key: L.msg_key(mid),
            L.session_id.key: L.session_key(session_id),
            L.role.key: role,
            L.content.key: self._writer.sanitize(content),
            L.status.key: status,
            L.finish_reason.key: reason,
            L.seq.key: seq,
            L.updated_at.key: now,
            L.writer.key: CLIENT_WRITER,
            **{c.key: None for c in L.extras},
        }
        with self._tx(write=True) as conn:
            self._require_session(conn, session_id)
            owner = conn.execute(sa.select(L.session_id).where(L.id == L.msg_key(mid))).scalar()
            if owner is not None:
                _check_owner(mid, owner, session_id)
            conn.execute(_sql.full_upsert(L, self.engine.dialect, [row]))
            stored = conn.execute(self._select().where(L.id == L.msg_key(mid))).one()
        message = self._to_message(stored, self.clock.now())
        return message.seq == seq and message.content == row[L.content.key], message

    def draft(
        self,
        session_id: str | int,
        message_id: str | int | None = None,
        role: str = "assistant",
        every_chunks: int | None = None,
        every_seconds: float | None = None,
    ) -> Draft:
        """A draft to stream into: `with store.draft(sid) as d: d.append(piece)`."""
        return Draft(self, self._options(session_id, message_id, role, every_chunks, every_seconds))

    def draft_async(
        self,
        session_id: str | int,
        message_id: str | int | None = None,
        role: str = "assistant",
        every_chunks: int | None = None,
        every_seconds: float | None = None,
    ) -> AsyncDraft:
        """The asyncio twin of `draft`: `async with store.draft_async(sid) as d: ...`."""
        return AsyncDraft(
            self, self._options(session_id, message_id, role, every_chunks, every_seconds)
        )

    # -- reading --

    def get_message(self, message_id: str | int) -> Message:
        L = self.layout
        mid = self._message_id(message_id)
        with self._tx() as conn:
            row = conn.execute(self._select().where(L.id == L.msg_key(mid))).first()
        if row is None:
            raise UnknownMessage(mid)
        return self._to_message(row, self.clock.now())

    async def aget_message(self, message_id: str | int) -> Message:
        """`get_message` without blocking the event loop."""
        return await asyncio.to_thread(self.get_message, message_id)

    def history(self, session_id: str | int) -> list[Message]:
        """The session's messages, oldest first; drafts marked `live` or `interrupted`."""
        L = self.layout
        sid = self._session_id(session_id)
        with self._tx() as conn:
            self._require_session(conn, sid)
            rows = conn.execute(
                self._select().where(L.session_id == L.session_key(sid)).order_by(*L.order())
            ).all()
        now = self.clock.now()
        return [self._to_message(r, now) for r in rows]

    def history_for_model(
        self,
        session_id: str | int,
        *,
        interrupted: Literal["keep", "drop"] = "keep",
        before: str | int | None = None,
    ) -> list[dict[str, str]]:
        """History to send back to a model: live drafts left out, interrupted ones by choice.

        Kept interrupted answers carry their text without the display marker; empty
        ones are always left out (an empty assistant turn is refused by most APIs).
        With `before`, only the messages that precede that message id.
        """
        if interrupted not in ("keep", "drop"):
            raise ValueError("interrupted must be 'keep' or 'drop'")
        out = []
        for m in self.history(session_id):
            if str(m.id) == str(before):
                break
            if m.live or (m.interrupted and (interrupted == "drop" or not m.content)):
                continue
            out.append({"role": m.role, "content": m.content})
        return out

    # -- internals --

    def _options(
        self,
        session_id: str | int,
        message_id: str | int | None,
        role: str,
        every_chunks: int | None,
        every_seconds: float | None,
    ) -> DraftOptions:
        _check_role(role)
        n = self.every_chunks if every_chunks is None else every_chunks
        t = self.every_seconds if every_seconds is None else every_seconds
        _check_intervals(n, t)
        mid = None if message_id is None else self._message_id(message_id)
        return DraftOptions(self._session_id(session_id), mid, role, n, t)

    def _open_draft(self, o: DraftOptions) -> DraftState:
        """Create (or take over) the draft's row, then hand it to the writer."""
        L = self.layout
        mid = o.message_id
        now = self._stamp()
        writer = uuid.uuid4().hex
        text, seq = "", 0
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
                         L.error: None, L.updated_at: now}
                    )
                )  # fmt: skip
                row = conn.execute(
                    sa.select(L.session_id, L.status, L.seq, L.content, L.writer).where(
                        L.id == L.msg_key(mid)
                    )
                ).first()
            if row is None:
                mid = self._insert(conn, mid, o.session_id, o.role, "", STREAMING, now, writer)
            else:
                assert mid is not None
                _check_owner(mid, row[0], o.session_id)
                if row[1] == COMPLETE:
                    raise MessageConflict(f"message {mid!r} is already complete")
                # The new token fences off the old writer, however late it comes back.
                text, seq = row[3], row[2]
        state = DraftState(
            message_id=mid,
            session_id=o.session_id,
            role=o.role,
            every_chunks=o.every_chunks,
            every_seconds=o.every_seconds,
            committed_text=text,
            seq=seq,
            writer=writer,
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
    ) -> str:
        """Insert a message row; returns its id (made here, or by the database)."""
        L = self.layout
        values: dict[str, Any] = {
            **L.new_row(now),
            L.session_id.key: L.session_key(session_id),
            L.role.key: role,
            L.content.key: content,
            L.status.key: status,
            L.seq.key: 0,
            L.updated_at.key: now,
            L.writer.key: writer,
        }
        if message_id is not None or not L.int_ids:
            message_id = message_id or _new_id()
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
            return _check_int_id(value, "message_id")
        return _check_id(value, "message_id")

    def _session_id(self, value: object) -> str:
        if self.layout.int_session_ids:
            return _check_int_id(value, "session_id")
        return _check_id(value, "session_id")

    def _sessions_table(self) -> sa.Table:
        if self.layout.sessions is None:
            raise RuntimeError("this store has no sessions table")
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

    def _select(self) -> sa.Select[*tuple[Any, ...]]:
        L = self.layout
        return sa.select(
            L.id, L.session_id, L.role, L.content, L.status,
            L.finish_reason, L.seq,
            sa.null() if L.created_at is None else L.created_at,
            L.updated_at, *L.extras,
        )  # fmt: skip

    def _to_message(self, row: sa.Row[*tuple[Any, ...]], now: datetime) -> Message:
        return build_message(
            id=row[0] if self.layout.int_ids else str(row[0]),
            session_id=row[1] if self.layout.int_session_ids else str(row[1]),
            role=row[2],
            content=row[3],
            status=row[4],
            finish_reason=row[5],
            seq=row[6],
            created_at=row[7],
            updated_at=row[8],
            now=now,
            lease=timedelta(seconds=self.lease_seconds),
            marker=self.interrupted_marker,
            model=row[9],
            input_tokens=row[10],
            output_tokens=row[11],
            error=row[12],
        )

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


def _new_id() -> str:
    return uuid.uuid4().hex


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if not value or len(value) > ID_LENGTH:
        raise ValueError(f"{what} must be 1 to {ID_LENGTH} characters long")
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters: {value!r}")
    return value


def _check_int_id(value: object, what: str) -> str:
    try:
        return str(int(str(value)))
    except ValueError:
        raise ValueError(f"{what} must be an integer id here: {value!r}") from None


def _check_role(role: object) -> None:
    if not isinstance(role, str) or not role or len(role) > 32:
        raise ValueError(f"role must be a non-empty string of at most 32 characters: {role!r}")


def _check_reason(reason: object) -> None:
    if reason is not None and (not isinstance(reason, str) or len(reason) > REASON_LENGTH):
        raise ValueError(
            f"finish_reason must be a string of at most {REASON_LENGTH} characters: {reason!r}"
        )


def _check_owner(message_id: str, owner: object, session_id: str) -> None:
    if str(owner) != session_id:
        raise MessageConflict(f"message {message_id!r} belongs to another session")


def _check_intervals(every_chunks: int, every_seconds: float) -> None:
    if not isinstance(every_chunks, int) or every_chunks < 1:
        raise ValueError("every_chunks must be a positive integer")
    if not every_seconds > 0:
        raise ValueError("every_seconds must be positive")


def _sanitizer(dialect: str) -> Callable[[str], str]:
    """Text as the database can hold it (documented in the README)."""

    def sanitize(text: str) -> str:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # Join surrogate pairs that arrived as halves; replace the lone ones,
            # which no UTF-8 column can hold.
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
            text = _LONE_SURROGATE.sub("\ufffd", text)
        if dialect == "postgresql" and "\x00" in text:
            text = text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL
        return text

    return sanitize


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
