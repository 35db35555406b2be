"""Running chatpersist's alembic migrations from a checkout or an installed wheel."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import _ddl
from ._errors import MigrationsMissing

# alembic is imported when a migration runs, not with chatpersist (a third of its
# import time): most processes only read and write drafts.
if TYPE_CHECKING:
    from alembic.config import Config

    from ._retrofit import MessagesTable
    from ._schema import Layout

VERSION_TABLE = "chatpersist_alembic_version"


def script_location(retrofit: bool = False) -> str:
    # In a wheel the migrations are packaged as chatpersist/migrations; in a
    # checkout (or an editable install) they are the repository's top-level folder.
    packaged = resources.files("chatpersist") / "migrations"
    if packaged.is_dir():
        base = str(packaged)
    else:
        checkout = Path(__file__).resolve().parent.parent / "migrations"
        if not (checkout / "env.py").is_file():
            raise MigrationsMissing("chatpersist's migrations are missing from this installation")
        base = str(checkout)
    return str(Path(base) / "retrofit") if retrofit else base


def config(engine: Engine, table: MessagesTable | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", script_location(retrofit=table is not None))
    cfg.attributes["engine"] = engine
    cfg.attributes["table"] = table
    return cfg


def upgrade(
    engine: Engine, revision: str = "head", table: MessagesTable | None = None
) -> list[str]:
    """Upgrade to `revision`. A migration a crash left half done (on MariaDB/MySQL each
    DDL statement commits by itself) is finished: its steps check the live schema first.
    Processes that migrate at once (the workers of one app starting together) take
    turns. Returns one message per half-done migration (each is also logged)."""
    from alembic import command

    with _exclusive(engine), _ddl.collect() as notes:
        command.upgrade(config(engine, table), revision)
    return notes


# A key of our own for the database's application lock (PostgreSQL takes a bigint).
_LOCK_KEY = 0x63686174_70657273  # "chatpers"
_LOCK_NAME = "chatpersist_migrate"


@contextmanager
def _exclusive(engine: Engine) -> Iterator[None]:
    """Hold the database's application lock while migrating: without it, workers
    starting together race to create the version table and all but one fail."""
    name = engine.dialect.name
    if name not in ("postgresql", "mysql", "mariadb"):
        yield  # SQLite: DDL takes the database's write lock anyway
        return
    with engine.connect() as conn:
        if name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({_LOCK_KEY})")
        else:
            got = conn.exec_driver_sql(f"SELECT GET_LOCK('{_LOCK_NAME}', 600)").scalar()
            if got != 1:
                raise TimeoutError("another process has been migrating for 10 minutes")
        conn.commit()
        try:
            yield
        finally:
            if name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_LOCK_KEY})")
            else:
                conn.exec_driver_sql(f"SELECT RELEASE_LOCK('{_LOCK_NAME}')")
            conn.commit()


def downgrade(
    engine: Engine, revision: str = "base", table: MessagesTable | None = None
) -> list[str]:
    """Downgrade to `revision`; like `upgrade`, finishes a half-done downgrade."""
    from alembic import command

    with _ddl.collect() as notes:
        command.downgrade(config(engine, table), revision)
    return notes


def current(engine: Engine, table: MessagesTable | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    opts = {"version_table": VERSION_TABLE if table is None else table.version_table}
    if table is not None and table.schema:
        opts["version_table_schema"] = table.schema
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts=opts).get_current_revision()


def missing(engine: Engine, layout: Layout) -> str | None:
    """Why the schema does not fit `layout` (a table or a draft column missing), or None."""
    t = layout.messages
    inspector = sa.inspect(engine)
    if not inspector.has_table(t.name, schema=t.schema):
        return f"table {t.name!r} is missing"
    have = {c["name"] for c in inspector.get_columns(t.name, schema=t.schema)}
    lacking = sorted(c.name for c in t.columns if c.name not in have)
    if lacking:
        return f"table {t.name!r} lacks the columns {', '.join(lacking)}"
    return None


def mismatch(engine: Engine, table: MessagesTable) -> str | None:
    """How an app's table differs from its `MessagesTable` in ways that make writes fail
    (integer ids declared as strings or the other way round), or None."""
    inspector = sa.inspect(engine)
    if not inspector.has_table(table.name, schema=table.schema):
        return None
    types = {c["name"]: c["type"] for c in inspector.get_columns(table.name, schema=table.schema)}
    for logical, declared in (("id", table.int_ids), ("session_id", table.int_session_ids)):
        name = table.column(logical)
        if name not in types:
            continue
        is_int = isinstance(types[name], sa.Integer)
        if is_int != declared:
            flag = "int_ids" if logical == "id" else "int_session_ids"
            return (
                f"column {table.name}.{name} holds {'integers' if is_int else 'strings'}: "
                f"use MessagesTable({table.name!r}, ..., {flag}={is_int})"
            )
    return None


def loose_id_collation(engine: Engine, table: MessagesTable) -> str | None:
    """On MariaDB / MySQL, a warning when the app's message id column compares ids
    loosely ("A" = "a", "x" = "x "): two ids the app tells apart would be one row."""
    from ._schema import exact_collation, is_exact

    if engine.dialect.name not in ("mysql", "mariadb") or table.int_ids:
        return None
    name = table.column("id")
    with engine.connect() as conn:
        collation = conn.execute(
            sa.text(
                "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE "
                "TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :t "
                "AND COLUMN_NAME = :c"
            ),
            {"schema": table.schema, "t": table.name, "c": name},
        ).scalar()
        exact = exact_collation(conn)
    if is_exact(collation):
        return None
    return (
        f"{table.name}.{name} has collation {collation}: ids that differ only in case, "
        f"accents or trailing spaces are the same row there; to compare them exactly: "
        f"ALTER TABLE {table.name} MODIFY {name} VARCHAR(...) CHARACTER SET utf8mb4 "
        f"COLLATE {exact} NOT NULL"
    )
