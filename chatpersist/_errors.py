"""Exceptions raised by chatpersist."""

from __future__ import annotations


class ChatPersistError(Exception):
    """Base class of every error chatpersist raises on purpose."""


class UnknownSession(ChatPersistError, LookupError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"unknown session id {session_id!r}")
        self.session_id = session_id


class UnknownMessage(ChatPersistError, LookupError):
    def __init__(self, message_id: str) -> None:
        super().__init__(f"unknown message id {message_id!r}")
        self.message_id = message_id


class MessageConflict(ChatPersistError, ValueError):
    """A message id that cannot be used for this draft (other session, already complete)."""


class NotMigrated(ChatPersistError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            f"the database has no chatpersist schema ({detail}); "
            "run `chatpersist migrate --db URL` or `store.migrate()` first"
        )


class FlushError(ChatPersistError):
    """The final flush of a draft could not be committed in time."""
