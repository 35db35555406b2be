"""alembic environment for the draft columns added to an app's own messages table.

Run by `ChatStore(engine, table=...).migrate()` or `chatpersist migrate --table`; the
target table comes in `config.attributes["table"]` and has its own version table.
"""

from __future__ import annotations

from alembic import context

config = context.config
table = config.attributes["table"]
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=None,
        version_table=table.version_table,
        version_table_schema=table.schema,
    )
    with context.begin_transaction():
        context.run_migrations(table=table)
    connection.commit()
