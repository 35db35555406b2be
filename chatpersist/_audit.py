"""Auditing and recovering interrupted answers: the library side of the CLI's
sessions, audit, sweep, continue and regenerate commands."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ._message import Message, as_utc, to_db_time
from ._schema import STREAMING

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from ._clock import Clock
    from ._loader import Loader
    from ._schema import Layout

#: finish_reason `sweep` gives drafts whose writer is gone.
ABANDONED = "abandoned"


@dataclass(frozen=True)
class SessionInfo:
    id: str
    title: str | None
    created_at: datetime | None
    updated_at: datetime | None
    messages: int
    interrupted: int

    def to_dict(self) -> dict[str, Any]:
        """The session as plain JSON-ready values."""
        return {
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "messages": self.messages,
            "interrupted": self.interrupted,
        }


@dataclass(frozen=True)
class StatRow:
    day: str
    model: str | None
    reason: str | None
    answers: int
    interrupted: int

    @property
    def rate(self) -> float:
        """The share of answers that were interrupted (0.0 without answers)."""
        return self.interrupted / self.answers if self.answers else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The row as plain JSON-ready values."""
        return {
            "day": self.day,
            "model": self.model,
            "reason": self.reason,
            "answers": self.answers,
            "interrupted": self.interrupted,
            "rate": round(self.rate, 4),
        }


def _cutoff(since: timedelta | datetime | None, now: datetime) -> datetime | None:
    if since is None:
        return None
    return now - since if isinstance(since, timedelta) else since


class AuditMixin:
    """Methods of `ChatStore` for operators: listing, counting, sweeping."""

    if TYPE_CHECKING:  # what the mixin uses of ChatStore
        engine: sa.Engine
        layout: Layout
        clock: Clock
        lease_seconds: float
        loader: Loader

        def _tx(self, write: bool = False) -> AbstractContextManager[sa.Connection]: ...
        def get_message(self, message_id: str | int) -> Message: ...
        def history(self, session_id: str | int) -> list[Message]: ...

    def sessions(self, limit: int | None = None) -> list[SessionInfo]:
        """Sessions, most recently active first, with message and interruption counts
        (counted in the database: no message text is read). With our own sessions
        table, the newest `limit` sessions are picked from it and only their messages
        are counted (the foreign key puts every message's session in that table)."""
        L = self.layout
        if L.sessions is None:
            return self._sessions_from_messages(limit)
        S = L.sessions
        query = sa.select(S.c.id, S.c.title, S.c.created_at, S.c.updated_at)
        query = query.order_by(*_newest_first(S.c.updated_at), S.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self._tx() as conn:
            rows = conn.execute(query).all()
            counts = self._counts()
            if limit is not None:
                counts = counts.where(L.session_id.in_([L.session_key(r.id) for r in rows]))
            by_session = {str(c.sid): c for c in conn.execute(counts).all()} if rows else {}
        out = []
        for r in rows:
            c = by_session.get(str(r.id))
            out.append(
                SessionInfo(
                    str(r.id),
                    r.title,
                    _aware(r.created_at),
                    _aware(r.updated_at),
                    int(c.messages) if c else 0,
                    int(c.cut or 0) if c else 0,
                )
            )
        return out

    def _counts(self) -> sa.Select[Any]:
        """Messages and interrupted ones per session, first message time and last beat."""
        L = self.layout
        created = L.created_at if L.created_at is not None else L.updated_at
        beat = sa.func.coalesce(L.updated_at, created)
        return sa.select(
            L.session_id.label("sid"),
            sa.func.count().label("messages"),
            sa.func.sum(sa.case((self.loader.interrupted(), 1), else_=0)).label("cut"),
            sa.func.min(created).label("first"),
            sa.func.max(beat).label("last"),
        ).group_by(L.session_id)

    def _sessions_from_messages(self, limit: int | None) -> list[SessionInfo]:
        """An app's table without our sessions table: a session is its messages' group."""
        counts = self._counts().subquery()
        query = sa.select(counts).order_by(*_newest_first(counts.c.last), counts.c.sid)
        if limit is not None:
            query = query.limit(limit)
        with self._tx() as conn:
            rows = conn.execute(query).all()
        return [
            SessionInfo(
                str(c.sid), None, _aware(c.first), _aware(c.last), int(c.messages), int(c.cut or 0)
            )
            for c in rows
        ]

    def interrupted(
        self,
        since: timedelta | datetime | None = None,
        session_id: str | None = None,
        reason: str | None = None,
    ) -> list[Message]:
        """Interrupted answers (newest first), optionally since a time, in one session,
        or with one finish_reason (None matches an expired lease: 'lease_expired').
        Selected in the database by the same rule as `Message.interrupted`."""
        L = self.layout
        query = self.loader.select().where(self.loader.interrupted())
        cutoff = _cutoff(since, self.clock.now())
        created = L.created_at if L.created_at is not None else L.updated_at
        if cutoff is not None:
            query = query.where(created >= to_db_time(cutoff))
        if session_id is not None:
            query = query.where(L.session_id == L.session_key(session_id))
        if reason == "lease_expired":
            query = query.where(L.finish_reason.is_(None))
        elif reason is not None:
            query = query.where(L.finish_reason == reason)
        with self._tx() as conn:
            rows = conn.execute(query.order_by(*L.order())).all()
        found = [m for m in self.loader.messages(rows) if m.interrupted]
        return sorted(found, key=lambda m: m.created_at, reverse=True)

    def audit_stats(self, since: timedelta | datetime | None = None) -> list[StatRow]:
        """Assistant answers and interruptions per day, model and reason (answers still
        being written are left out: their outcome is not known yet). Counted in the
        database by the rule of `Message.interrupted` (`Loader.interrupted`); no
        message text is read."""
        L = self.layout
        cut = self.loader.interrupted()
        # A message's time as `Message.created_at` has it (a row without one: 1970).
        when = sa.func.coalesce(
            *[_utc(c, self._dialect()) for c in (L.created_at, L.updated_at) if c is not None],
            sa.literal(to_db_time(_EPOCH), L.updated_at.type),
        )
        reason = sa.case((cut, sa.func.coalesce(L.finish_reason, "lease_expired")), else_=sa.null())
        answers = (
            sa.select(self._day(when).label("day"), L.model.label("model"), reason.label("reason"))
            .where(L.role == "assistant")
            # Live drafts (streaming, a writer holds them) are left out.
            .where(sa.or_(L.status != STREAMING, cut))
        )
        cutoff = _cutoff(since, self.clock.now())
        if cutoff is not None:
            answers = answers.where(when >= to_db_time(cutoff))
        a = answers.subquery()
        query = sa.select(a.c.day, a.c.model, a.c.reason, sa.func.count().label("n")).group_by(
            a.c.day, a.c.model, a.c.reason
        )
        with self._tx() as conn:
            groups = conn.execute(query).all()
        total: Counter[tuple[str, str | None]] = Counter()
        interrupted: Counter[tuple[str, str | None, str]] = Counter()
        for g in groups:
            key = (_iso_day(g.day), g.model)
            total[key] += int(g.n)
            if g.reason is not None:
                interrupted[(*key, str(g.reason))] += int(g.n)
        rows = [
            StatRow(day, model, why, total[(day, model)], n)
            for (day, model, why), n in interrupted.items()
        ]
        with_cuts = {(r.day, r.model) for r in rows}
        rows += [
            StatRow(day, model, None, n, 0)
            for (day, model), n in total.items()
            if (day, model) not in with_cuts
        ]
        return sorted(rows, key=lambda r: (r.day, r.model or "", r.reason or ""))

    def sweep(self) -> int:
        """Mark drafts whose writer is gone (heartbeat older than the lease, or none)
        as abandoned, so audits need no clock. Safe while apps write: one guarded
        UPDATE (the rule of `Message.interrupted`) never touches a draft whose
        heartbeat is fresh, and a writer that was only late clears the mark with its
        next flush."""
        L = self.layout
        with self._tx(write=True) as conn:
            result = conn.execute(
                sa.update(L.messages)
                .where(self.loader.interrupted(), L.finish_reason.is_(None))
                .values({L.finish_reason: ABANDONED})
            )
        return int(result.rowcount or 0)

    def _dialect(self) -> str:
        return self.engine.dialect.name

    def _day(self, when: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The UTC day of a naive UTC timestamp (SQLite: text, others: a DATE)."""
        if self._dialect() == "sqlite":
            return sa.func.date(when)
        return sa.cast(when, sa.Date)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _aware(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def _newest_first(column: sa.ColumnElement[Any]) -> tuple[sa.ColumnElement[Any], ...]:
    """ORDER BY terms: newest first, NULL last (MySQL has no NULLS LAST)."""
    return sa.case((column.is_(None), 1), else_=0), column.desc()


def _utc(column: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[Any]:
    """A timestamp column as naive UTC: our columns are; an app's `timestamptz` on
    PostgreSQL is converted (not by the session's time zone)."""
    if dialect == "postgresql" and getattr(column.type, "timezone", False):
        return sa.func.timezone("UTC", column)
    return column


def _iso_day(value: date | str | None) -> str:
    if value is None:
        return _EPOCH.date().isoformat()
    return value.isoformat() if isinstance(value, date) else str(value)[:10]
