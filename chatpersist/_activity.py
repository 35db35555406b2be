"""What is being written now: the answers streaming into drafts, the last interrupted
ones and the totals of the last hour, for `chatpersist top`.

Computed in the database from the columns it needs: a text's length is `length()` /
`char_length()` of its column, never the text itself. "Interrupted" is the loader's
rule in SQL (`Loader.interrupted`); a draft that is not interrupted is **live**, or
**stalled** when nothing was written for `stalled_after` seconds (the stream has gone
quiet, though its writer still holds the lease).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ._clock import Clock
from ._loader import Loader
from ._message import as_utc, to_db_time
from ._schema import COMPLETE, STREAMING, Layout


class _Store(Protocol):
    """What a snapshot reads of a `ChatStore` (named so: the store imports this module)."""

    every_seconds: float
    lease_seconds: float
    layout: Layout
    clock: Clock
    loader: Loader
    engine: Engine

    def _tx(self, write: bool = False) -> AbstractContextManager[sa.Connection]: ...

#: The reason of an interrupted draft without a finish_reason: its writer went away.
LEASE_EXPIRED = "lease_expired"
#: How far back the totals of ended answers look.
WINDOW = timedelta(hours=1)


def _plain(row: Any, places: dict[str, int]) -> dict[str, Any]:
    """A dataclass's fields as JSON-ready values: times as ISO 8601, the fields named
    in `places` rounded to that many decimals."""
    out: dict[str, Any] = {}
    for f in fields(row):
        value = getattr(row, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif f.name in places:
            value = round(value, places[f.name])
        out[f.name] = value
    return out


@dataclass(frozen=True)
class ActiveAnswer:
    """A draft being written: live, stalled (nothing written for a while), or
    recovering (its writer gone, a Recoverer will complete it)."""

    session_id: str
    message_id: str
    role: str
    model: str | None
    started_at: datetime
    heartbeat_at: datetime
    #: Seconds since it started, and since its last write.
    age: float
    idle: float
    #: Characters stored so far, and their average rate since it started.
    length: int
    rate: float
    state: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (times as ISO 8601, durations in seconds)."""
        return _plain(self, {"age": 3, "idle": 3, "rate": 1})


@dataclass(frozen=True)
class InterruptedAnswer:
    """A draft that ended without completing, or whose writer went away."""

    session_id: str
    message_id: str
    role: str
    model: str | None
    reason: str
    started_at: datetime
    ended_at: datetime
    #: Seconds since its last write.
    ago: float
    length: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (times as ISO 8601, durations in seconds)."""
        return _plain(self, {"ago": 3})


@dataclass(frozen=True)
class Totals:
    """Drafts live and stalled now; answers interrupted and completed in the last hour."""

    live: int
    stalled: int
    interrupted_last_hour: int
    complete_last_hour: int
    #: Of the live and stalled: writers gone, waiting for a Recoverer to claim them.
    recovering: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The counts by name."""
        return {
            "live": self.live,
            "stalled": self.stalled,
            "recovering": self.recovering,
            "interrupted_last_hour": self.interrupted_last_hour,
            "complete_last_hour": self.complete_last_hour,
        }


@dataclass(frozen=True)
class Activity:
    """One snapshot: `answers` being written (newest first), the last `interrupted`
    ones (most recent first) and the `totals`, all judged at `at`."""

    at: datetime
    lease_seconds: float
    stalled_after: float
    answers: tuple[ActiveAnswer, ...]
    interrupted: tuple[InterruptedAnswer, ...]
    totals: Totals

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (what `chatpersist top --json` prints)."""
        return {
            "at": self.at.isoformat(),
            "lease_seconds": self.lease_seconds,
            "stalled_after": self.stalled_after,
            "totals": self.totals.to_dict(),
            "answers": [a.to_dict() for a in self.answers],
            "interrupted": [i.to_dict() for i in self.interrupted],
        }


def snapshot(
    store: _Store,
    *,
    limit: int = 20,
    stalled_after: float | None = None,
    previous: Activity | None = None,
) -> Activity:
    """What `store`'s database is writing now, by the store's clock and lease: at most
    `limit` drafts being written and `limit` interrupted answers, and the totals. A
    draft is stalled when nothing was written for `stalled_after` seconds (default:
    twice the store's `every_seconds`) but its lease still holds.

    A silent draft's writer still refreshes its lease (three times per lease), which
    alone would show it live again for a moment: given the `previous` snapshot (a view
    that refreshes), a draft listed stalled there stays stalled until its text grows."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    quiet = 2 * store.every_seconds if stalled_after is None else stalled_after
    if quiet <= 0:
        raise ValueError("stalled_after must be positive")
    L = store.layout
    now = store.clock.now()
    interrupted = store.loader.interrupted()
    created = L.created_at if L.created_at is not None else L.updated_at
    # The heartbeat as the loader reads it (an app's row may only have created_at).
    beat: Any = L.updated_at
    if L.created_at is not None:
        beat = sa.func.coalesce(L.updated_at, L.created_at)
    length = (sa.func.length if store.engine.dialect.name == "sqlite" else sa.func.char_length)(
        L.content
    )
    active = sa.and_(L.status == STREAMING, sa.not_(interrupted))
    quiet_since = to_db_time(now - timedelta(seconds=quiet))
    window = to_db_time(now - WINDOW)
    columns = (
        L.id.label("id"), L.session_id.label("session_id"), L.role.label("role"),
        L.model.label("model"), L.finish_reason.label("reason"), created.label("created"),
        beat.label("beat"), length.label("length"),
        # Its writer is gone and a Recoverer will complete it (see `Message.recovering`).
        sa.case((store.loader.recoverable(), 1), else_=0).label("waiting"),
    )  # fmt: skip
    answers_q = sa.select(*columns).where(active).order_by(created.desc(), L.id).limit(limit)
    cut_q = sa.select(*columns).where(interrupted).order_by(beat.desc(), L.id).limit(limit)

    def count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

    stalled = sa.and_(active, beat < quiet_since)
    totals_q = sa.select(
        count(sa.and_(active, sa.not_(beat < quiet_since))).label("live"),
        count(stalled).label("stalled"),
        count(store.loader.recoverable()).label("recovering"),
        count(sa.and_(interrupted, beat >= window)).label("interrupted"),
        count(
            sa.and_(L.status == COMPLETE, L.role == "assistant", beat >= window)
        ).label("complete"),
    )
    with store._tx() as conn:
        answer_rows = conn.execute(answers_q).all() if limit else []
        cut_rows = conn.execute(cut_q).all() if limit else []
        t = conn.execute(totals_q).one()
    was = {a.message_id: a for a in previous.answers} if previous is not None else {}
    live, still = int(t.live), int(t.stalled)
    answers = []
    for r in answer_rows:
        started, heartbeat = _when(r.created, now), _when(r.beat, now)
        age = max(0.0, (now - started).total_seconds())
        idle = max(0.0, (now - heartbeat).total_seconds())
        n = int(r.length or 0)
        state = "recovering" if r.waiting else "stalled" if idle > quiet else "live"
        before = was.get(str(r.id))
        if state == "live" and before and before.state == "stalled" and before.length == n:
            state = "stalled"  # only its lease was refreshed
            live, still = live - 1, still + 1
        answers.append(
            ActiveAnswer(
                str(r.session_id), str(r.id), r.role, r.model, started, heartbeat, age, idle, n,
                n / age if age > 0 else 0.0, state,
            )  # fmt: skip
        )
    cuts = []
    for r in cut_rows:
        started, ended = _when(r.created, now), _when(r.beat, now)
        cuts.append(
            InterruptedAnswer(
                str(r.session_id), str(r.id), r.role, r.model, r.reason or LEASE_EXPIRED,
                started, ended, max(0.0, (now - ended).total_seconds()), int(r.length or 0),
            )  # fmt: skip
        )
    totals = Totals(live, still, int(t.interrupted), int(t.complete), int(t.recovering))
    return Activity(now, store.lease_seconds, quiet, tuple(answers), tuple(cuts), totals)


def _when(value: datetime | None, now: datetime) -> datetime:
    """A stored time as aware UTC (a row without one: now)."""
    return as_utc(value) if value is not None else now
