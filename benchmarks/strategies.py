"""The four ways of saving a streamed answer that the benchmark compares.

Each strategy opens one answer with `open(session_id)` and gets back an object with
`append(piece)` (called once per chunk, timed as the caller's cost) and `close()`
(the end of the stream). A strategy with an async API of its own also has
`open_async(session_id)`, whose answer ends with `await aclose()`; async runs use it.
All of them write to chatpersist's own messages table.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

import sqlalchemy as sa

from chatpersist import AsyncDraft, ChatStore, Draft, _sql
from chatpersist._engine import write_tx
from chatpersist._message import to_db_time
from chatpersist._schema import COMPLETE, STREAMING

EVERY_CHUNKS = 20
EVERY_SECONDS = 2.0


class Answer(Protocol):
    def append(self, piece: str) -> None: ...
    def close(self) -> None: ...


class AsyncAnswer(Protocol):
    def append(self, piece: str) -> None: ...
    async def aclose(self) -> None: ...


class Strategy(Protocol):
    name: str
    store: ChatStore

    def open(self, session_id: str) -> Answer: ...


def _row(store: ChatStore, mid: str, sid: str, text: str, seq: int, status: str) -> dict[str, Any]:
    L = store.layout
    now = to_db_time(store.clock.now())
    return {
        L.id.key: mid, L.session_id.key: sid, L.role.key: "assistant", L.content.key: text,
        L.status.key: status, L.finish_reason.key: None if status == STREAMING else "stop",
        L.seq.key: seq, L.created_at.key: now, L.updated_at.key: now,
        **{c.key: None for c in L.extras},
    }  # fmt: skip


class _FinishAnswer:
    message_id = None  # known only once saved

    def __init__(self, store: ChatStore, session_id: str) -> None:
        self.store, self.session_id = store, session_id
        self.parts: list[str] = []
        self.append = self.parts.append  # what such an app calls for each chunk

    def close(self) -> None:
        self.store.add_message(self.session_id, "assistant", "".join(self.parts))


class SaveOnFinish:
    """The baseline that loses answers: one INSERT when the stream ends."""

    name = "finish"

    def __init__(self, store: ChatStore) -> None:
        self.store = store

    def open(self, session_id: str) -> Answer:
        return _FinishAnswer(self.store, session_id)


class SaveEveryChunk:
    """Open WebUI's realtime save: the whole text so far, one transaction per chunk."""

    name = "every-chunk"

    def __init__(self, store: ChatStore) -> None:
        self.store = store

    def open(self, session_id: str) -> Answer:
        store, mid = self.store, uuid.uuid4().hex
        dialect = store.engine.dialect

        class A:
            message_id = mid

            def __init__(self) -> None:
                self.parts: list[str] = []

            def _write(self, status: str) -> None:
                row = _row(store, mid, session_id, "".join(self.parts), len(self.parts), status)
                with write_tx(store.engine) as conn:
                    conn.execute(_sql.full_upsert(store.layout, dialect, [row]))

            def append(self, piece: str) -> None:
                self.parts.append(piece)
                self._write(STREAMING)

            def close(self) -> None:
                self.parts.append("")
                self._write(COMPLETE)

        return A()


class PerDraftFlush:
    """chatpersist's throttle (every 20 chunks or 2 s) and append-only writes, but
    each flush in its own transaction, made by the caller: no shared writer, no
    batching."""

    name = "per-draft"

    def __init__(self, store: ChatStore, clock: Any) -> None:
        self.store = store
        self.clock = clock
        self.stmt = _sql.append_update(store.layout, store.engine.dialect.name)

    def open(self, session_id: str) -> Answer:
        outer = self
        store = self.store
        mid = uuid.uuid4().hex
        with write_tx(store.engine) as conn:
            conn.execute(
                sa.insert(store.layout.messages).values(
                    _row(store, mid, session_id, "", 0, STREAMING)
                )
            )

        class A:
            message_id = mid

            def __init__(self) -> None:
                self.pending: list[str] = []
                self.first: float | None = None
                self.seq = 0

            def _flush(self, status: str) -> None:
                self.seq += 1
                params = {
                    _sql.P_ID: mid, _sql.P_WRITER: "", _sql.P_PREV: self.seq - 1, _sql.P_SEQ: self.seq,
                    _sql.P_DELTA: "".join(self.pending), _sql.P_STATUS: status,
                    _sql.P_REASON: None if status == STREAMING else "stop", _sql.P_PARTS: None,
                    _sql.P_NOW: to_db_time(store.clock.now()),
                    **{_sql.extra_param(f): None for f in _sql.EXTRAS},
                }  # fmt: skip
                with write_tx(store.engine) as conn:
                    conn.execute(outer.stmt, [params])
                self.pending.clear()
                self.first = None

            def append(self, piece: str) -> None:
                self.pending.append(piece)
                now = outer.clock()
                if self.first is None:
                    self.first = now
                if len(self.pending) >= EVERY_CHUNKS or now - self.first >= EVERY_SECONDS:
                    self._flush(STREAMING)

            def close(self) -> None:
                self._flush(COMPLETE)

        return A()


class _DraftAnswer:
    def __init__(self, draft: Draft) -> None:
        self.draft = draft
        self.message_id = draft.message_id
        self.append = draft.append  # the caller's cost is the draft's own

    def close(self) -> None:
        self.draft.__exit__(None, None, None)


class _AsyncDraftAnswer:
    def __init__(self, draft: AsyncDraft) -> None:
        self.draft = draft
        self.message_id = draft.message_id
        self.append = draft.append

    async def aclose(self) -> None:
        await self.draft.__aexit__(None, None, None)


class ChatPersistDefault:
    """chatpersist as shipped: `store.draft()`, one shared writer, group commit."""

    name = "chatpersist"

    def __init__(self, store: ChatStore) -> None:
        self.store = store

    def open(self, session_id: str) -> Answer:
        draft = self.store.draft(session_id)
        draft.__enter__()
        return _DraftAnswer(draft)

    async def open_async(self, session_id: str) -> AsyncAnswer:
        """What an async app uses: `store.draft_async()`, whose end awaits the final
        write without taking a thread."""
        draft = self.store.draft_async(session_id)
        await draft.__aenter__()
        return _AsyncDraftAnswer(draft)
