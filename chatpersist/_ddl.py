"""Schema changes that can be run again: migrations that survive a kill.

On MariaDB/MySQL every DDL statement commits by itself, so a migration killed halfway
leaves some of its steps done while the version table still names the revision before.
The next `migrate` runs that revision again from its first step. Every step here looks
at the live schema first (through the migration's own connection, so on PostgreSQL and
SQLite, where the migration is one transaction, it sees the migration's own changes): a
table, column or index that exists is not created again, one that is gone is not
dropped again. What was found already done is reported once per migration, as a
warning on the `chatpersist` logger and in the list `_migrate.upgrade` returns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.reflection import Inspector

from ._errors import ChatPersistError

log = logging.getLogger("chatpersist")

_PLURAL = {
    "table": "tables", "column": "columns", "index": "indexes", "foreign key": "foreign keys"
}  # fmt: skip


class _Migration:
    """What one migration found already done."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.found: dict[tuple[str, str], list[str]] = {}

    def note(self, kind: str, state: str, what: str) -> None:
        self.found.setdefault((kind, state), []).append(what)

    def message(self, ok: bool) -> str:
        parts = [
            f"{kind if len(names) == 1 else _PLURAL[kind]} {', '.join(names)} {state}"
            for (kind, state), names in self.found.items()
        ]
        end = "finished it" if ok else "could not finish it"
        return f"chatpersist: {self.name} was half done ({'; '.join(parts)}); {end}"


_current: ContextVar[_Migration | None] = ContextVar("chatpersist_ddl_migration", default=None)
_notes: ContextVar[list[str] | None] = ContextVar("chatpersist_ddl_notes", default=None)


@contextmanager
def migration(name: str) -> Iterator[None]:
    """Run one migration's steps; if some were found done, say so once at the end.

    Nested calls (a retrofit revision calling `add_draft_columns`) report as the
    outermost one."""
    if _current.get() is not None:
        yield
        return
    m = _Migration(name)
    token = _current.set(m)
    ok = False
    try:
        yield
        ok = True
    finally:
        _current.reset(token)
        if m.found:
            text = m.message(ok)
            log.warning("%s", text)
            notes = _notes.get()
            if notes is not None:
                notes.append(text)


@contextmanager
def collect() -> Iterator[list[str]]:
    """The messages of the half-done migrations finished meanwhile (in this context)."""
    notes: list[str] = []
    token = _notes.set(notes)
    try:
        yield notes
    finally:
        _notes.reset(token)


def _found(kind: str, state: str, what: str) -> None:
    m = _current.get()
    if m is not None:
        m.note(kind, state, what)
    else:
        log.warning("chatpersist: %s %s %s; skipped", kind, what, state)


def _inspector(op: Any) -> Inspector:
    # A new inspector each time: a cached one would not see the steps just run.
    bind: sa.Connection = op.get_bind()
    return sa.inspect(bind)


def has_table(op: Any, name: str, schema: str | None = None) -> bool:
    return _inspector(op).has_table(name, schema=schema)


def columns(op: Any, table: str, schema: str | None = None) -> dict[str, dict[str, Any]]:
    """The table's columns as reflected now, by name."""
    return {str(c["name"]): dict(c) for c in _inspector(op).get_columns(table, schema=schema)}


def indexes(op: Any, table: str, schema: str | None = None) -> dict[str, list[str]]:
    """The table's named indexes as reflected now: name -> column names."""
    return {
        str(ix["name"]): [str(c) for c in ix["column_names"]]
        for ix in _inspector(op).get_indexes(table, schema=schema)
        if ix["name"]
    }


def _same_kind(want: sa.types.TypeEngine[Any], have: sa.types.TypeEngine[Any]) -> bool:
    if isinstance(want, sa.JSON) and isinstance(have, (sa.JSON, sa.String)):
        return True  # MariaDB's JSON is LONGTEXT (with a json_valid check)
    try:
        if want.python_type is not have.python_type:
            return False
    except NotImplementedError:
        return True
    a, b = getattr(want, "length", None), getattr(have, "length", None)
    return a is None or b is None or a == b


def _check_existing(table: str, column: sa.Column[Any], have: dict[str, Any]) -> None:
    """A column of that name is there: fine if it is the one this step adds (a step
    done before a crash), refused if it is something else (the app's own column)."""
    if _same_kind(column.type, have["type"]) and (column.nullable or not have["nullable"]):
        return
    want = f"{column.type}{'' if column.nullable else ' NOT NULL'}"
    got = f"{have['type']}{'' if have['nullable'] else ' NOT NULL'}"
    raise ChatPersistError(
        f"column {table}.{column.name} exists as {got}, not as the {want} this migration "
        "adds: it is not ours. Map the field to another column name "
        "(MessagesTable(columns=...)) or, if it is meant to be shared, list it in reuse"
    )


def create_table_if_missing(
    op: Any, name: str, *elements: Any, schema: str | None = None, **kw: Any
) -> bool:
    """`op.create_table` unless the table exists; True if it was created."""
    if has_table(op, name, schema=schema):
        _found("table", "present", name)
        return False
    op.create_table(name, *elements, schema=schema, **kw)
    return True


def drop_table_if_exists(op: Any, name: str, schema: str | None = None) -> bool:
    """`op.drop_table` unless the table is gone; True if it was dropped."""
    if not has_table(op, name, schema=schema):
        _found("table", "already dropped", name)
        return False
    op.drop_table(name, schema=schema)
    return True


def _missing(
    op: Any, table: str, cols: Iterable[sa.Column[Any]], schema: str | None
) -> list[sa.Column[Any]]:
    have = columns(op, table, schema)
    todo = []
    for column in cols:
        if column.name in have:
            _check_existing(table, column, have[column.name])
            _found("column", "present", column.name)
        else:
            todo.append(column)
    return todo


def add_column_if_missing(
    op: Any, table: str, column: sa.Column[Any], schema: str | None = None
) -> bool:
    """`op.add_column` unless the column exists; True if it was added."""
    if not _missing(op, table, [column], schema):
        return False
    op.add_column(table, column, schema=schema)
    return True


def add_columns_if_missing(
    op: Any,
    table: str,
    cols: Sequence[sa.Column[Any]],
    schema: str | None = None,
    batch: bool = False,
) -> list[str]:
    """Add those of `cols` the table lacks (with `batch`, in one `op.batch_alter_table`,
    which SQLite needs for some changes); the names of the columns added."""
    todo = _missing(op, table, cols, schema)
    if batch and todo:
        with op.batch_alter_table(table, schema=schema) as b:
            for column in todo:
                b.add_column(column)
    else:
        for column in todo:
            op.add_column(table, column, schema=schema)
    return [c.name for c in todo]


def drop_columns_if_exist(
    op: Any, table: str, names: Sequence[str], schema: str | None = None, batch: bool = False
) -> list[str]:
    """Drop those of `names` the table still has, in order; the names dropped."""
    have = columns(op, table, schema)
    todo = []
    for name in names:
        if name in have:
            todo.append(name)
        else:
            _found("column", "already dropped", name)
    if batch and todo:
        with op.batch_alter_table(table, schema=schema) as b:
            for name in todo:
                b.drop_column(name)
    else:
        for name in todo:
            op.drop_column(table, name, schema=schema)
    return todo


def drop_column_if_exists(op: Any, table: str, name: str, schema: str | None = None) -> bool:
    return bool(drop_columns_if_exist(op, table, [name], schema))


def _describe(name: str, cols: Sequence[str]) -> str:
    return f"{name} ({', '.join(cols)})"


def create_index_if_missing(
    op: Any,
    name: str,
    table: str,
    cols: Sequence[str],
    schema: str | None = None,
    **kw: Any,
) -> bool:
    """`op.create_index` unless an index of that name exists; True if it was created.

    An index of that name on other columns is an error: it is not this step's."""
    have = indexes(op, table, schema).get(name)
    if have is None:
        op.create_index(name, table, list(cols), schema=schema, **kw)
        return True
    if have != list(cols):
        raise ChatPersistError(
            f"index {name} on {table} is on ({', '.join(have)}), "
            f"not on ({', '.join(cols)}) as this migration creates it"
        )
    _found("index", "present", _describe(name, cols))
    return False


def drop_index_if_exists(
    op: Any,
    name: str,
    table: str,
    schema: str | None = None,
    cols: Sequence[str] | None = None,
) -> bool:
    """`op.drop_index` unless the index is gone; True if it was dropped.

    With `cols`, only an index of that name on exactly those columns is dropped (a
    migration that replaces an index by a new one of the same name must not drop the
    new one when it runs again)."""
    have = indexes(op, table, schema).get(name)
    if have is None or (cols is not None and have != list(cols)):
        _found("index", "already dropped", _describe(name, cols) if cols else name)
        return False
    op.drop_index(name, table_name=table, schema=schema)
    return True
