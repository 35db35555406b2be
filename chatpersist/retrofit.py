"""Fitting chatpersist onto an app's existing messages table.

store = ChatStore(engine, table=MessagesTable("messages"))
store.migrate()            # or, in the app's own alembic history:
                           #   add_draft_columns(op, "messages")
"""

from ._retrofit import (
    DRAFT_COLUMNS,
    HOST_COLUMNS,
    MessagesTable,
    SessionsTable,
    add_draft_columns,
    drop_draft_columns,
    include_object_for,
)

#: For the app's alembic env.py: hides chatpersist's default-named draft columns on any
#: table named "messages" and its version tables. Use `include_object_for(...)` for others.
include_object = include_object_for("messages")

__all__ = [
    "DRAFT_COLUMNS",
    "HOST_COLUMNS",
    "MessagesTable",
    "SessionsTable",
    "add_draft_columns",
    "drop_draft_columns",
    "include_object",
    "include_object_for",
]
