"""Retention: what `sweep` marks and removes, counted first (a dry run) or done.

An abandoned empty draft is an answer nobody writes any more (the SQL rule of
`Message.interrupted`) that holds nothing: no text and no parts. Old ones are noise in
every history (an empty assistant turn, shown as "(response interrupted)"), so a
deployment deletes them after a while. Anything with text is kept: it is an answer a
user may still continue.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import sqlalchemy as sa

from ._clock import Clock
from ._loader import Loader
from ._message import to_db_time
from ._schema import Layout

#: The finish_reason `sweep` gives drafts whose writer is gone.
ABANDONED = "abandoned"


class _Store(Protocol):
    layout: Layout
    loader: Loader
    clock: Clock

    def _tx(self, write: bool = False) -> AbstractContextManager[sa.Connection]: ...


@dataclass(frozen=True)
class SweepReport:
    """What a sweep marked abandoned and deleted (or, in a dry run, would have)."""

    marked: int
    deleted: int
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values."""
        return {"abandoned": self.marked, "deleted": self.deleted, "dry_run": self.dry_run}


def sweep(
    store: _Store,
    *,
    older_than: timedelta | None = None,
    delete_empty: bool = False,
    dry_run: bool = False,
) -> SweepReport:
    """Mark drafts whose writer is gone as abandoned, and with `delete_empty` delete
    those that hold nothing (no text, no parts) and whose writer was last heard of more
    than `older_than` ago (any age without it). With `dry_run`, count only."""
    if older_than is not None and older_than < timedelta(0):
        raise ValueError("older_than must not be negative")
    L = store.layout
    gone = store.loader.interrupted()
    to_mark = sa.and_(gone, L.finish_reason.is_(None))
    empty = sa.and_(
        gone,
        sa.or_(L.content.is_(None), sa.func.length(L.content) == 0),
        L.parts.is_(None),
    )
    if older_than is not None:
        empty = sa.and_(empty, L.updated_at < to_db_time(store.clock.now() - older_than))
    count = sa.select(sa.func.count()).select_from(L.messages)
    with store._tx(write=not dry_run) as conn:
        if dry_run:
            marked = int(conn.execute(count.where(to_mark)).scalar() or 0)
            deleted = int(conn.execute(count.where(empty)).scalar() or 0) if delete_empty else 0
            return SweepReport(marked, deleted, True)
        deleted = 0
        if delete_empty:
            deleted = int(conn.execute(sa.delete(L.messages).where(empty)).rowcount or 0)
        result = conn.execute(
            sa.update(L.messages).where(to_mark).values({L.finish_reason: ABANDONED})
        )
        return SweepReport(int(result.rowcount or 0), deleted, False)
