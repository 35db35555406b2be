"""The shared background writer: one thread per store flushes every open draft.

Drafts only buffer text (`DraftState.add`); the writer decides when each is due
(every N chunks, every T seconds after the first unflushed chunk, or at its end),
takes the due ones together and commits them in one transaction (group commit).
Sync and async drafts both go through here: this is the only flush logic.

Every write is guarded by the draft's writer token (a takeover gives the row a new
one) and its seq, so a writer that was taken over, or whose row was deleted, learns
it at its next flush and never changes the row again. A failed write is retried as
the very same job (a commit whose reply was lost is then recognised, not applied
twice), with a backoff of its own: one draft's trouble never holds the others back.

`Writer` (`_loop`) is built from layers, bottom up:

- `_state`: `DraftState` (one open draft) and `_Job` (one write of it);
- `_stats`: `WriterStats`, and `CommitHook`, what `chatpersist.metrics` gives the writer;
- `_base`: the shared lock and queues, and settling a write's outcome on its draft;
- `_schedule`: which drafts are due at a wake-up, and when the next one is;
- `_commit`: group commit of a batch, and its verdicts (PostgreSQL's batch path too);
- `_retry`: a failed write retried with a backoff, split out, or refused;
- `_spill`: the journal, written when the database cannot take a draft, and replayed.
"""

from ._loop import Writer
from ._state import DraftState, _Job
from ._stats import CommitHook, WriterStats

__all__ = ["CommitHook", "DraftState", "Writer", "WriterStats", "_Job"]
