"""chatpersist: never lose a streamed chat answer.

Drafts are flushed to the database every N chunks or T seconds while an answer
streams, and once more however the stream ends; the history loader shows drafts
nobody is writing any more as interrupted.

The core lives here; around it: `chatpersist.providers` (streaming from models),
`chatpersist.recovery` (continue or regenerate an interrupted answer),
`chatpersist.asgi` (HTTP endpoints), `chatpersist.retrofit` (an app's own tables and
migrations), `chatpersist.testing` (clocks for tests) and `chatpersist.cli`.
"""

from ._async_store import AsyncChatStore
from ._audit import ABANDONED, SessionInfo, StatRow
from ._clock import Clock, SystemClock
from ._draft import AsyncDraft, Draft
from ._errors import (
    ChatPersistError,
    DraftNotOpen,
    FlushError,
    JournalLocked,
    MessageConflict,
    MigrationsMissing,
    NoSessionsTable,
    NotAJournal,
    NotMigrated,
    StoreClosed,
    TableMismatch,
    UnknownMessage,
    UnknownSession,
)
from ._message import CUT_REASONS, INTERRUPTED_MARKER, Message
from ._parts import OtherPart, Part, ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from ._retrofit import MessagesTable, SessionsTable
from ._schema import COMPLETE, STREAMING
from ._store import ChatStore

__version__ = "0.1.0"

__all__ = [
    "ABANDONED",
    "COMPLETE",
    "CUT_REASONS",
    "INTERRUPTED_MARKER",
    "STREAMING",
    "AsyncChatStore",
    "AsyncDraft",
    "ChatPersistError",
    "ChatStore",
    "Clock",
    "Draft",
    "DraftNotOpen",
    "FlushError",
    "JournalLocked",
    "Message",
    "MessageConflict",
    "MessagesTable",
    "MigrationsMissing",
    "NoSessionsTable",
    "NotAJournal",
    "NotMigrated",
    "OtherPart",
    "Part",
    "ReasoningPart",
    "SessionInfo",
    "SessionsTable",
    "StatRow",
    "StoreClosed",
    "SystemClock",
    "TableMismatch",
    "TextPart",
    "ToolCallPart",
    "ToolResultPart",
    "UnknownMessage",
    "UnknownSession",
    "__version__",
]
