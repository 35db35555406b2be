"""chatpersist: never lose a streamed chat answer.

Drafts are flushed to the database every N chunks or T seconds while an answer
streams, and once more however the stream ends; the history loader shows drafts
nobody is writing any more as interrupted.
"""

from ._audit import ABANDONED, SessionInfo, StatRow
from ._clock import Clock, ManualClock, SystemClock
from ._draft import AsyncDraft, Draft
from ._errors import (
    ChatPersistError,
    FlushError,
    JournalLocked,
    MessageConflict,
    NotAJournal,
    NotMigrated,
    StoreClosed,
    UnknownMessage,
    UnknownSession,
)
from ._message import CUT_REASONS, INTERRUPTED_MARKER, Message
from ._retrofit import MessagesTable, SessionsTable
from ._schema import COMPLETE, STREAMING
from ._store import ChatStore
from ._writer import WriterStats

__version__ = "0.1.0"

__all__ = [
    "ABANDONED",
    "COMPLETE",
    "CUT_REASONS",
    "INTERRUPTED_MARKER",
    "STREAMING",
    "SessionInfo",
    "SessionsTable",
    "StatRow",
    "AsyncDraft",
    "ChatPersistError",
    "ChatStore",
    "Clock",
    "Draft",
    "FlushError",
    "JournalLocked",
    "ManualClock",
    "Message",
    "MessageConflict",
    "MessagesTable",
    "NotAJournal",
    "NotMigrated",
    "StoreClosed",
    "SystemClock",
    "UnknownMessage",
    "UnknownSession",
    "WriterStats",
    "__version__",
]
