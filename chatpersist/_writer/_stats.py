"""Counters of what the writer did, read through `ChatStore.stats`, and the hook a
metrics exporter gives the writer (`chatpersist.metrics`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class WriterStats:
    transactions: int = 0
    flushes: int = 0
    heartbeats: int = 0
    full_writes: int = 0
    #: failed attempts that were retried
    failures: int = 0
    #: drafts written to the journal while the database was away, and replayed from it
    spilled: int = 0
    replayed: int = 0
    #: drafts that stopped writing: taken over by another writer, or their row deleted
    superseded: int = 0
    deleted: int = 0
    #: writes the database refused for good (the text is kept when only facts were bad)
    refused: int = 0
    #: appends to the journal that failed (disk full, read-only): retried
    journal_errors: int = 0
    #: drafts whose end was written not complete, by finish_reason (stopped, error...)
    interrupted: dict[str, int] = field(default_factory=dict)


class CommitHook(Protocol):
    """Told of every group commit, by the writer thread, after the commit (never per
    append). It must be quick and must not raise (a fault is logged and ignored)."""

    def committed(self, seconds: float, lags: list[float]) -> None:
        """A transaction took `seconds`; `lags` holds, for each draft whose text it
        wrote, the seconds since that text's first unflushed chunk."""
        ...
