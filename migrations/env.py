"""alembic environment for chatpersist's own tables.

Run from `store.migrate()` / `chatpersist migrate` (an engine is passed in
`config.attributes`), or in a checkout with `alembic -x db=URL upgrade head`
(else the CHATPERSIST_DB environment variable).
"""

from __future__ import annotations

import os
from typing import Any

from alembic import context

from chatpersist._engine import make_engine
from chatpersist._migrate import VERSION_TABLE
from chatpersist._schema import metadata

config = context.config


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    # Only our tables: a host's tables in the same database are none of our business.
    if type_ == "table":
        return bool(name and name.startswith("chatpersist_"))
    return True


def run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        url = (
            context.get_x_argument(as_dictionary=True).get("db")
            or os.environ.get("CHATPERSIST_DB")
            or config.get_main_option("sqlalchemy.url")
        )
        if not url:
            raise SystemExit("give a database: alembic -x db=URL ... or CHATPERSIST_DB=URL")
        engine = make_engine(url)
    with engine.connect() as connection:
        run(connection)
        connection.commit()


main()
