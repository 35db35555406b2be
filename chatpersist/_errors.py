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
    """The tables (or the draft columns of an app's table) are missing or behind."""

    def __init__(self, detail: str, table: str | None = None) -> None:
        if table is None:
            fix = "run `chatpersist migrate --db URL` or `store.migrate()` first"
            what = "the database has no chatpersist schema"
        else:
            fix = (
                f"run `chatpersist migrate --db URL --table {table}` (or your "
                "`module:MESSAGES` definition) or `store.migrate()` first, or "
                "`add_draft_columns(op, ...)` in your own alembic history"
            )
            what = f"table {table!r} lacks chatpersist's draft columns"
        super().__init__(f"{what} ({detail}); {fix}")
        self.table = table


class TableMismatch(ChatPersistError, ValueError):
    """An app's table does not match its `MessagesTable` (the message says how to fix it)."""


class FlushError(ChatPersistError):
    """The final flush of a draft could not be committed in time."""


class NotAJournal(ChatPersistError, ValueError):
    """A journal path names a file that is not a chatpersist journal; it is left untouched."""

    def __init__(
        self, path: object, detail: str = "it does not start with the journal header"
    ) -> None:
        super().__init__(
            f"{str(path)!r} is not a chatpersist journal ({detail}); "
            "it was left untouched: give the store a path of its own for its journal"
        )
        self.path = path


class JournalLocked(ChatPersistError):
    """Another process (or another Journal object) is using the journal file."""

    def __init__(self, path: object) -> None:
        super().__init__(
            f"the journal {str(path)!r} is in use by another store (a live process, or another "
            "Journal object in this one); one journal file belongs to one running store"
        )
        self.path = path


class StoreClosed(ChatPersistError, RuntimeError):
    """The store was closed: no draft can be opened or written any more."""


class DraftNotOpen(ChatPersistError, RuntimeError):
    """A draft used outside its `with` block: not entered yet, or already ended."""


class NoSessionsTable(ChatPersistError, RuntimeError):
    """A store on an app's messages table without a sessions table was asked to
    create or check a session: the app owns its sessions."""


class MigrationsMissing(ChatPersistError, RuntimeError):
    """chatpersist's migration scripts are not in this installation (a broken wheel)."""
