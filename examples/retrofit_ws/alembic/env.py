"""alembic environment of the chat app: its tables, in its own alembic_version."""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

from chatpersist.retrofit import include_object_for
from examples.retrofit_ws.models import MESSAGES, metadata

config = context.config
url = os.environ.get("CHAT_DB_URL") or config.get_main_option("sqlalchemy.url")


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = sa.create_engine(str(url))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            # autogenerate must not propose to drop chatpersist's draft columns
            include_object=include_object_for(MESSAGES),
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
