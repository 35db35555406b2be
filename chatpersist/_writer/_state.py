"""What the writer knows of each open draft, and the write it is making."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .._parts import PartsLog

#: What became of a write: applied, the row behind it, another writer's, or gone.
Verdict = Literal["landed", "behind", "superseded", "deleted"]


class DraftState:
    """What the writer knows of one open draft. Guarded by the writer's lock."""

    def __init__(
        self,
        *,
        message_id: str,
        session_id: str,
        role: str,
        every_chunks: int,
        every_seconds: float,
        committed_text: str,
        seq: int,
        writer: str,
        parts: PartsLog | None = None,
    ) -> None:
        self.message_id = message_id
        self.session_id = session_id
        self.role = role
        self.every_chunks = every_chunks
        self.every_seconds = every_seconds
        #: The fencing token this draft writes under.
        self.writer = writer
        self.pending: list[str] = []
        self.first_pending_at: float | None = None
        # When the text a forced flush (`flush_now`) writes started waiting.
        self.forced_since: float | None = None
        # Committed text kept as the joined deltas of past flushes: joining once per
        # flush, not once per chunk, keeps long answers linear.
        self.committed: list[str] = [committed_text] if committed_text else []
        #: Characters of text so far (where a new text part starts).
        self.text_len = len(committed_text)
        #: Reasoning, tool calls and results (None while the answer is text only).
        self.log = parts
        #: The write being made, or waiting for its retry (then `retry_at` is set).
        self.job: _Job | None = None
        self.retry_at: float | None = None
        self.failing_since: float | None = None
        self.attempts = 0
        # Failures while other writes committed (the trouble is this draft's own).
        self.strikes = 0
        self.strikes_base = 0
        self.seq = seq
        self.last_write_at = 0.0
        self.final: tuple[str, str | None] | None = None
        self.closed = False
        #: Another writer took the row over; this draft stopped writing it.
        self.superseded = False
        #: The row was deleted (by the app); this draft stopped writing it.
        self.deleted = False
        # A user asked to stop it, from any worker (see `_stops`).
        self.stop_requested = False
        # False once text went to the journal instead: the row is behind, so the next
        # database write must be a whole one.
        self.row_in_sync = True
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.callbacks: list[Callable[[], None]] = []
        #: model / input_tokens / output_tokens / error, written with the next flush.
        self.extras: dict[str, Any] = {}

    def text(self) -> str:
        inflight = self.job.delta if self.job is not None else ""
        return "".join([*self.committed, inflight, *self.pending])

    def segments(self) -> list[dict[str, Any]] | None:
        """All parts segments so far, flushed or not (None: text only)."""
        if self.log is None:
            return None
        inflight = self.job.parts if self.job is not None and self.job.parts else []
        return self.log.all(inflight)

    def due(self, now: float) -> bool:
        if self.closed or self.job is not None:
            return False
        if self.final is not None:
            return True
        if len(self.pending) >= self.every_chunks:
            return True
        return (
            self.first_pending_at is not None and now - self.first_pending_at >= self.every_seconds
        )


@dataclass
class _Job:
    state: DraftState
    seq: int
    delta: str
    status: str
    reason: str | None
    final: bool
    heartbeat: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
    #: New segments of the parts log, and their JSON text as bound.
    parts: list[dict[str, Any]] | None = None
    parts_json: str | None = None
    #: When its first chunk started waiting (writer clock), for the flush lag metric.
    since: float | None = None

    def size(self) -> int:
        """Characters this write sends."""
        return len(self.delta) + (len(self.parts_json) if self.parts_json else 0)
