"""Auditing and recovering interrupted answers: the library side of the CLI's
sessions, audit, sweep, continue and regenerate commands."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ._message import Message, to_db_time
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
        layout: Layout
        clock: Clock
        lease_seconds: float
        loader: Loader

        def _tx(self, write: bool = False) -> AbstractContextManager[sa.Connection]: ...
        def get_message(self, message_id: str | int) -> Message: ...
        def history(self, session_id: str | int) -> list[Message]: ...

    def sessions(self, limit: int | None = None) -> list[SessionInfo]:
        """Sessions, most recently active first, with message and interruption counts
        (counted in the database: no message text is read)."""
        L = self.layout
        created = L.created_at if L.created_at is not None else L.updated_at
        beat = sa.func.coalesce(L.updated_at, created)
        counts = sa.select(
            L.session_id.label("sid"),
            sa.func.count().label("messages"),
            sa.func.sum(sa.case((self.loader.interrupted(), 1), else_=0)).label("cut"),
            sa.func.min(created).label("first"),
            sa.func.max(beat).label("last"),
        ).group_by(L.session_id)
        with self._tx() as conn:
            rows = conn.execute(counts).all()
            by_session = {str(r.sid): r for r in rows}
            infos: dict[str, SessionInfo] = {}
            if L.sessions is not None:
                for r in conn.execute(sa.select(L.sessions)).all():
                    c = by_session.get(str(r.id))
                    infos[str(r.id)] = SessionInfo(
                        str(r.id), r.title, _aware(r.created_at), _aware(r.updated_at),
                        int(c.messages) if c else 0, int(c.cut or 0) if c else 0,
                    )  # fmt: skip
        for sid, c in by_session.items():
            if sid not in infos:
                infos[sid] = SessionInfo(
                    sid, None, _aware(c.first), _aware(c.last), int(c.messages), int(c.cut or 0)
                )
        out = sorted(infos.values(), key=lambda s: s.updated_at or _EPOCH, reverse=True)
        return out[:limit] if limit is not None else out

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
        being written are left out: their outcome is not known yet)."""
        cutoff = _cutoff(since, self.clock.now())
        answers: Counter[tuple[str, str | None]] = Counter()
        cut: Counter[tuple[str, str | None, str]] = Counter()
        for m in self._messages(None, role="assistant"):
            if m.live or (cutoff is not None and m.created_at < cutoff):
                continue
            key = (m.created_at.date().isoformat(), m.model)
            answers[key] += 1
            if m.interrupted:
                cut[(*key, m.finish_reason or "lease_expired")] += 1
        rows = [
            StatRow(day, model, reason, answers[(day, model)], n)
            for (day, model, reason), n in cut.items()
        ]
        rows += [
            StatRow(day, model, None, n, 0)
            for (day, model), n in answers.items()
            if not any(r.day == day and r.model == model for r in rows)
        ]
        return sorted(rows, key=lambda r: (r.day, r.model or "", r.reason or ""))

    def sweep(self) -> int:
        """Mark drafts whose writer is gone (heartbeat older than the lease) as
        abandoned, so audits need no clock. Safe while apps write: one guarded UPDATE
        never touches a draft whose heartbeat is fresh, and a writer that was only late
        clears the mark with its next flush."""
        L = self.layout
        cutoff = to_db_time(self.clock.now() - timedelta(seconds=self.lease_seconds))
        with self._tx(write=True) as conn:
            result = conn.execute(
                sa.update(L.messages)
                .where(L.status == STREAMING, L.finish_reason.is_(None), L.updated_at < cutoff)
                .values({L.finish_reason: ABANDONED})
            )
        return int(result.rowcount or 0)

    def _messages(
        self, session_id: str | None, status: str | None = None, role: str | None = None
    ) -> list[Message]:
        L = self.layout
        query = self.loader.select()
        if session_id is not None:
            query = query.where(L.session_id == L.session_key(session_id))
        if status is not None:
            query = query.where(L.status == status)
        if role is not None:
            query = query.where(L.role == role)
        with self._tx() as conn:
            rows = conn.execute(query.order_by(*L.order())).all()
        return self.loader.messages(rows)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _aware(value: datetime | None) -> datetime | None:
    from ._message import as_utc

    return as_utc(value) if value is not None else None
