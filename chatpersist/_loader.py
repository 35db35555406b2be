"""The history loader: message rows read by field name into `Message`s (which tell a
live draft from an interrupted one). The history sent back to a model is `_history`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from ._clock import Clock
from ._message import RECOVERABLE_REASONS, Message, build_message, to_db_time
from ._schema import READ, STREAMING, Layout


@dataclass(frozen=True)
class Loader:
    """Reads messages of one layout; a draft whose heartbeat is older than
    `lease_seconds` (on `clock`) reads as interrupted, shown with `marker`."""

    layout: Layout
    clock: Clock
    lease_seconds: float
    marker: str
    #: Recoveries an answer opted in to completion after a crash may have.
    max_recoveries: int = 3

    def select(self, from_offset: int = 0) -> sa.Select[*tuple[Any, ...]]:
        """The query every read starts from (filter and order it). With `from_offset`,
        the content is read from that character on (a follower reads only what is new)."""
        columns = self.layout.read_columns()
        if from_offset:
            content = self.layout.content
            columns = [
                sa.func.substr(content, from_offset + 1).label("content")
                if c.name == "content" else c
                for c in columns
            ]  # fmt: skip
        return sa.select(*columns)

    def interrupted(self) -> sa.ColumnElement[bool]:
        """The rule of `Message.interrupted` in SQL (for queries that count or filter
        without reading the rows): streaming, ended abnormally (a finish_reason) or its
        heartbeat older than the lease, and not waiting for its recovery."""
        return sa.and_(self._cut(), sa.not_(self._waiting()))

    def recoverable(self) -> sa.ColumnElement[bool]:
        """What a Recoverer may claim: opted in, with recoveries left, and its writer
        gone (heartbeat older than the lease, or ended by its process stopping)."""
        return sa.and_(self._cut(), self._waiting())

    def _cut(self) -> sa.ColumnElement[bool]:
        """Streaming, and nobody writes it any more: ended abnormally (a finish_reason)
        or its heartbeat older than the lease."""
        L = self.layout
        cutoff = to_db_time(self.clock.now() - timedelta(seconds=self.lease_seconds))
        beat: Any = L.updated_at
        if L.created_at is not None:
            beat = sa.func.coalesce(L.updated_at, L.created_at)
        return sa.and_(
            L.status == STREAMING,
            sa.or_(L.finish_reason.is_not(None), beat.is_(None), beat < cutoff),
        )

    def _waiting(self) -> sa.ColumnElement[bool]:
        """Opted in to completion after a crash, with recoveries left, and not ended
        by anything but a crash: a Recoverer completes it (not interrupted)."""
        L = self.layout
        return sa.and_(
            L.recover_with.is_not(None),
            sa.func.coalesce(L.recoveries, 0) < self.max_recoveries,
            sa.or_(L.finish_reason.is_(None), L.finish_reason.in_(RECOVERABLE_REASONS)),
        )

    def messages(self, rows: Iterable[sa.Row[*tuple[Any, ...]]], offset: int = 0) -> list[Message]:
        """Rows of `select()` as messages, all judged at the same moment (`offset`:
        rows of `select(offset)`)."""
        now = self.clock.now()
        lease = timedelta(seconds=self.lease_seconds)
        out = []
        for row in rows:
            values = {name: row._mapping[name] for name in READ}
            if not self.layout.int_ids:
                values["id"] = str(values["id"])
            if not self.layout.int_session_ids:
                values["session_id"] = str(values["session_id"])
            out.append(
                build_message(
                    **values, now=now, lease=lease, marker=self.marker, offset=offset,
                    max_recoveries=self.max_recoveries,
                )  # fmt: skip
            )
        return out
