"""`AsyncChatStore`: the asyncio twin of `ChatStore` over the same implementation.

Every call runs the store's own (blocking) code in a worker thread, so there is one
implementation of each rule and the event loop never waits on the database. Drafts
are `AsyncDraft`s on the store's one shared writer.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal

from ._activity import Activity
from ._audit import SessionInfo, StatRow
from ._draft import AsyncDraft
from ._history import CutToolCalls, HistoryFormat
from ._message import Message
from ._retention import SweepReport
from ._store import ChatStore
from ._writer import WriterStats


class AsyncChatStore:
    """`async with AsyncChatStore(url) as store: ...`, or `AsyncChatStore(chat_store)`
    to share a `ChatStore` (its engine, writer and clock) between sync and async code.

    Takes the same keyword options as `ChatStore`. Each method is the awaitable twin
    of the `ChatStore` method of the same name; `draft()` returns an `AsyncDraft`.
    """

    def __init__(self, url_or_store: ChatStore | Any, **options: Any) -> None:
        if isinstance(url_or_store, ChatStore):
            if options:
                raise TypeError("options go to the ChatStore, not to a wrapper of one")
            #: The synchronous store this one runs (shared engine, writer and clock).
            self.sync = url_or_store
        else:
            self.sync = ChatStore(url_or_store, **options)

    async def __aenter__(self) -> AsyncChatStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def stats(self) -> WriterStats:
        """The shared writer's counters (see `ChatStore.stats`)."""
        return self.sync.stats

    # -- lifecycle --

    async def migrate(self, revision: str = "head") -> None:
        """See `ChatStore.migrate`."""
        await asyncio.to_thread(self.sync.migrate, revision)

    async def recover(self) -> int:
        """See `ChatStore.recover`."""
        return await asyncio.to_thread(self.sync.recover)

    async def recover_from(
        self,
        journal: str | os.PathLike[str],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """See `ChatStore.recover_from` (`progress` is called from a worker thread)."""
        return await asyncio.to_thread(
            functools.partial(self.sync.recover_from, journal, progress=progress)
        )

    async def close(self, timeout: float | None = 10.0) -> None:
        """See `ChatStore.close`."""
        await asyncio.to_thread(self.sync.close, timeout)

    # -- writing --

    async def create_session(
        self, title: str | None = None, *, session_id: str | None = None
    ) -> str:
        """See `ChatStore.create_session`."""
        return await asyncio.to_thread(self.sync.create_session, title, session_id=session_id)

    async def rename_session(self, session_id: str, title: str | None) -> None:
        """See `ChatStore.rename_session`."""
        await asyncio.to_thread(self.sync.rename_session, session_id, title)

    async def delete_session(self, session_id: str) -> int:
        """See `ChatStore.delete_session`."""
        return await asyncio.to_thread(self.sync.delete_session, session_id)

    async def add_message(
        self, session_id: str, role: str, content: str, message_id: str | None = None
    ) -> Message:
        """See `ChatStore.add_message`."""
        return await asyncio.to_thread(self.sync.add_message, session_id, role, content, message_id)

    async def save_partial(
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
        """See `ChatStore.save_partial`."""
        return await asyncio.to_thread(
            self.sync.save_partial, session_id, message_id, content, seq,
            done=done, finish_reason=finish_reason, role=role,
        )  # fmt: skip

    def draft(
        self,
        session_id: str | int,
        message_id: str | int | None = None,
        role: str = "assistant",
        every_chunks: int | None = None,
        every_seconds: float | None = None,
        *,
        recover_with: str | None = None,
    ) -> AsyncDraft:
        """`async with store.draft(sid) as d: d.append(piece)` (see `ChatStore.draft`)."""
        return self.sync.draft_async(
            session_id, message_id, role, every_chunks, every_seconds, recover_with=recover_with
        )

    async def clean(
        self,
        older_than: timedelta | None = None,
        *,
        delete_empty: bool = True,
        dry_run: bool = False,
    ) -> SweepReport:
        """See `ChatStore.clean`."""
        return await asyncio.to_thread(
            functools.partial(
                self.sync.clean, older_than, delete_empty=delete_empty, dry_run=dry_run
            )
        )

    async def activity(self, limit: int = 20, stalled_after: float | None = None) -> Activity:
        """See `ChatStore.activity`."""
        return await asyncio.to_thread(self.sync.activity, limit, stalled_after)

    async def claim_recoverable(self, limit: int = 1) -> list[Message]:
        """See `ChatStore.claim_recoverable`."""
        return await asyncio.to_thread(self.sync.claim_recoverable, limit)

    async def restart(self, message_id: str | int) -> Message:
        """See `ChatStore.restart`."""
        return await asyncio.to_thread(self.sync.restart, message_id)

    async def request_stop(self, message_id: str | int) -> bool:
        """See `ChatStore.request_stop`."""
        return await asyncio.to_thread(self.sync.request_stop, message_id)

    async def sweep(self) -> int:
        """See `ChatStore.sweep`."""
        return await asyncio.to_thread(self.sync.sweep)

    # -- reading --

    async def get_message(self, message_id: str | int) -> Message:
        """See `ChatStore.get_message`."""
        return await asyncio.to_thread(self.sync.get_message, message_id)

    async def read_from(self, message_id: str | int, offset: int) -> Message:
        """See `ChatStore.read_from`."""
        return await asyncio.to_thread(self.sync.read_from, message_id, offset)

    async def history(self, session_id: str | int) -> list[Message]:
        """See `ChatStore.history`."""
        return await asyncio.to_thread(self.sync.history, session_id)

    async def history_for_model(
        self,
        session_id: str | int,
        *,
        interrupted: Literal["keep", "drop"] = "keep",
        before: str | int | None = None,
        format: HistoryFormat = "openai",
        cut_tool_calls: CutToolCalls = "drop",
        keep_reasoning: bool = False,
    ) -> list[dict[str, Any]]:
        """See `ChatStore.history_for_model`."""
        return await asyncio.to_thread(
            functools.partial(
                self.sync.history_for_model, session_id, interrupted=interrupted,
                before=before, format=format, cut_tool_calls=cut_tool_calls,
                keep_reasoning=keep_reasoning,
            )
        )  # fmt: skip

    async def sessions(self, limit: int | None = None) -> list[SessionInfo]:
        """See `ChatStore.sessions`."""
        return await asyncio.to_thread(self.sync.sessions, limit)

    async def interrupted(
        self,
        since: timedelta | datetime | None = None,
        session_id: str | None = None,
        reason: str | None = None,
    ) -> list[Message]:
        """See `ChatStore.interrupted`."""
        return await asyncio.to_thread(self.sync.interrupted, since, session_id, reason)

    async def audit_stats(self, since: timedelta | datetime | None = None) -> list[StatRow]:
        """See `ChatStore.audit_stats`."""
        return await asyncio.to_thread(self.sync.audit_stats, since)
