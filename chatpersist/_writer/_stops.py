"""Stop requests from anywhere: a user's Stop may reach any worker, which records it on
the row (`ChatStore.request_stop`); the writer of the draft, wherever it runs, reads
the pending requests every `stop_poll` seconds (one query for all its drafts) and
marks them, so the code streaming into a draft stops and ends it 'stopped'."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .._schema import messages
from ._base import log
from ._commit import _GroupCommit
from ._state import DraftState

# Ids per query, well under every database's limit of bound parameters.
_IDS_PER_QUERY = 500


class _Stops(_GroupCommit):
    def __init__(self, *, stop_poll: float = 0.5, **rest: Any) -> None:
        super().__init__(**rest)
        self._stop_poll = stop_poll
        self._stops_at = 0.0
        L = self._layout
        # chatpersist's own table has an index of the pending stops; an app's own table
        # is asked by id (by primary key), as it has no such index.
        self._pending_query = (
            sa.select(L.id).where(
                L.stop_requested.is_not(None), L.finish_reason.is_(None), L.status == "streaming"
            )
            if L.messages is messages  # chatpersist's own table (migration 0009)
            else None
        )

    def _stops_due_in(self, now: float) -> float | None:
        """Seconds until the next check (under the lock), None without open drafts."""
        if not self._drafts:
            return None
        return max(0.0, self._stops_at - now)

    def _check_stops(self) -> None:
        """Read the stop flags of the open drafts, if a check is due (outside the lock)."""
        now = self._clock.monotonic()
        with self._cond:
            if now < self._stops_at:
                return
            self._stops_at = now + self._stop_poll
            open_: dict[str, DraftState] = {
                s.message_id: s
                for s in self._drafts.values()
                if not s.stop_requested and not s.closed
            }
        if not open_:
            return
        try:
            with self._engine.connect() as conn:
                stopped = self._stopped(conn, list(open_))
        except Exception as exc:  # noqa: BLE001 - a stop check never breaks the writer
            log.debug("chatpersist: stop check failed: %s", exc)
            return
        with self._cond:
            for mid in stopped:
                state = open_.get(mid)
                if state is not None:
                    state.stop_requested = True

    def _stopped(self, conn: sa.Connection, ids: list[str]) -> list[str]:
        """The ids with a pending stop request: of any process when the table has the
        index of pending stops (its cost then does not grow with the open drafts), else
        of the `ids` given, by primary key."""
        if self._pending_query is not None:
            return [str(r[0]) for r in conn.execute(self._pending_query)]
        L = self._layout
        stopped: list[str] = []
        for i in range(0, len(ids), _IDS_PER_QUERY):
            keys = [L.msg_key(m) for m in ids[i : i + _IDS_PER_QUERY]]
            query = sa.select(L.id).where(
                L.id.in_(keys), L.stop_requested.is_not(None), L.status == "streaming"
            )
            stopped += [str(r[0]) for r in conn.execute(query)]
        return stopped
