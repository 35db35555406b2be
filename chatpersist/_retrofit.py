"""Pointing chatpersist at an app's existing messages table.

`MessagesTable` names the app's table and columns in one place; the draft columns
chatpersist needs are added by one additive migration (`add_draft_columns`), run
either by `chatpersist migrate --table` or from the app's own alembic history.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from . import _ddl
from ._schema import FIELD, FIELDS, ID_LENGTH, Layout, Timestamp

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

#: The app's own columns chatpersist reads and writes (logical name -> default name).
HOST_COLUMNS = {f.name: f.name for f in FIELDS if f.host}
#: The columns the additive migration adds (logical name -> default name). Names that
#: apps commonly use for something else get a `draft_` prefix.
DRAFT_COLUMNS = {f.name: f.draft_column for f in FIELDS if f.draft_column is not None}
#: The draft columns of the first retrofit migration (r0001); later ones add the rest.
FIRST_DRAFT_FIELDS = tuple(f.name for f in FIELDS if f.draft_column and f.since == "r0001")


def _draft_column(logical: str, name: str) -> sa.Column[Any]:
    """The column as the migration adds it. `status` and `seq` get constant defaults, so
    existing rows read as complete and the app's INSERTs need no change; adding a
    column with a constant default is a metadata-only change on all three databases.
    The others are nullable: the app's existing rows have no value for them."""
    f = FIELD[logical]
    return sa.Column(name, f.type, nullable=f.default is None, server_default=f.default)


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(
            f"{what} must be a plain SQL identifier (letters, digits, _; at most 63): {name!r}"
        )
    return name


@dataclass(frozen=True)
class SessionsTable:
    """The app's sessions table: a draft's session id must exist in it."""

    name: str
    id: str = "id"
    #: A column to touch once per draft (sidebars sort by it), or None.
    updated_at: str | None = None
    schema: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "sessions table name")
        _check_name(self.id, "sessions id column")
        if self.updated_at is not None:
            _check_name(self.updated_at, "sessions updated_at column")
        if self.schema is not None:
            _check_name(self.schema, "schema")


@dataclass(frozen=True)
class MessagesTable:
    """An app's existing messages table, e.g. `MessagesTable("messages")`.

    `columns` maps chatpersist's field names to the table's column names where they
    differ, for the app's columns (`id`, `session_id`, `role`, `content`,
    `created_at`; `created_at` may map to None: history is then ordered by id) and for
    the draft columns the migration adds (see `DRAFT_COLUMNS`). `reuse` lists draft
    fields that map onto columns the app already has (e.g. an `updated_at` to use as the
    heartbeat; named by `columns`, else by the field's name, e.g. `reuse={"updated_at"}`
    uses the app's `updated_at`): the migration neither adds nor drops them.
    `insert_defaults` gives values
    (or callables) for the app's NOT NULL columns chatpersist does not know.
    """

    name: str
    schema: str | None = None
    columns: Mapping[str, str | None] = field(default_factory=dict)
    reuse: AbstractSet[str] = frozenset()
    int_ids: bool = False
    int_session_ids: bool = False
    sessions: SessionsTable | None = None
    insert_defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name(self.name, "table name")
        if self.schema is not None:
            _check_name(self.schema, "schema")
        known = HOST_COLUMNS.keys() | DRAFT_COLUMNS.keys()
        for logical, physical in self.columns.items():
            if logical not in known:
                raise ValueError(f"unknown field {logical!r}; known: {', '.join(sorted(known))}")
            if physical is None and logical != "created_at":
                raise ValueError(f"only created_at may map to None, not {logical!r}")
            if physical is not None:
                _check_name(physical, f"column for {logical}")
        object.__setattr__(self, "reuse", frozenset(self.reuse))
        for logical in self.reuse:
            if logical not in DRAFT_COLUMNS:
                raise ValueError(f"only draft columns can be reused, not {logical!r}")
        for name in self.insert_defaults:
            _check_name(name, "insert_defaults column")
        names = [n for n in (self.column(f) for f in known) if n is not None]
        if len(set(names)) != len(names):
            raise ValueError(f"two fields map onto the same column: {sorted(names)}")

    def column(self, logical: str) -> str | None:
        """The app's column name for a logical field, or None when the table has none."""
        default = HOST_COLUMNS.get(logical) or DRAFT_COLUMNS[logical]
        if logical in self.reuse:
            default = logical  # an app's own column: by the field's plain name
        return self.columns.get(logical, default)

    def added_columns(self, fields: Iterable[str] | None = None) -> list[sa.Column[Any]]:
        """The columns the additive migrations add (and their downgrades drop): all,
        or those of `fields`."""
        wanted = DRAFT_COLUMNS.keys() if fields is None else set(fields)
        unknown = set(wanted) - DRAFT_COLUMNS.keys()
        if unknown:
            raise ValueError(f"not draft fields: {', '.join(sorted(unknown))}")
        return [
            _draft_column(f, str(self.column(f)))
            for f in DRAFT_COLUMNS
            if f in wanted and f not in self.reuse
        ]

    @property
    def version_table(self) -> str:
        """The alembic version table of this table's draft columns."""
        # One alembic version table per target table, never the app's alembic_version.
        return f"chatpersist_version_{self.name}"[:63]

    def layout(self) -> Layout:
        """The SQLAlchemy layout the store reads and writes this table through."""
        md = sa.MetaData()
        id_type: Any = sa.Integer() if self.int_ids else sa.String(ID_LENGTH)
        sid_type: Any = sa.Integer() if self.int_session_ids else sa.String(ID_LENGTH)
        types: dict[str, Any] = {
            f.name: f.type for f in FIELDS if f.host
        } | {"id": id_type, "session_id": sid_type}
        cols: dict[str, sa.Column[Any]] = {}
        for logical, type_ in types.items():
            name = self.column(logical)
            if name is not None:
                cols[logical] = sa.Column(name, type_, primary_key=logical == "id")
        for f in DRAFT_COLUMNS:
            cols[f] = _draft_column(f, str(self.column(f)))
        taken = {col.name for col in cols.values()}
        # Bound as given: the app knows the types of its own columns.
        extra = [sa.Column(n, sa.types.NullType()) for n in self.insert_defaults if n not in taken]
        table = sa.Table(self.name, md, *cols.values(), *extra, schema=self.schema)
        check = touch = None
        if self.sessions is not None:
            s = self.sessions
            scols = [sa.Column(s.id, sid_type, primary_key=True)]
            if s.updated_at is not None:
                scols.append(sa.Column(s.updated_at, Timestamp))
            st = sa.Table(s.name, md, *scols, schema=s.schema)
            check = st.c[s.id]
            touch = st.c[s.updated_at] if s.updated_at is not None else None
        c = table.c
        by_field: dict[str, Any] = {f.name: cols.get(f.name) for f in FIELDS}
        return Layout(
            messages=table,
            **by_field,
            session_check=check,
            session_touch=touch,
            int_ids=self.int_ids,
            int_session_ids=self.int_session_ids,
            insert_defaults=tuple((c[k].key, v) for k, v in self.insert_defaults.items()),
        )


def _target(table: str | MessagesTable, kw: dict[str, Any]) -> MessagesTable:
    return MessagesTable(table, **kw) if isinstance(table, str) else table


def add_draft_columns(
    op: Any, table: str | MessagesTable, *, fields: Iterable[str] | None = None, **kw: Any
) -> None:
    """Alembic operation for the app's own history: add chatpersist's draft columns.

    `add_draft_columns(op, "messages")`, or with a `MessagesTable` (or its keyword
    arguments, e.g. `schema="app"`) when names differ. `fields` adds only those draft
    fields: an app that added the columns with an earlier release adds the new ones
    with, e.g., `add_draft_columns(op, "messages", fields=["writer"])`.
    """
    t = _target(table, kw)
    # Columns already there (a run killed halfway on MariaDB/MySQL, where each ALTER
    # commits by itself) are not added again; see chatpersist/_ddl.py.
    with _ddl.migration(f"add_draft_columns on table {t.name}"):
        _ddl.add_columns_if_missing(op, t.name, t.added_columns(fields), schema=t.schema)


def drop_draft_columns(
    op: Any, table: str | MessagesTable, *, fields: Iterable[str] | None = None, **kw: Any
) -> None:
    """Alembic operation: remove exactly what `add_draft_columns` added."""
    t = _target(table, kw)
    names = [c.name for c in reversed(t.added_columns(fields))]
    with _ddl.migration(f"drop_draft_columns on table {t.name}"):
        _ddl.drop_columns_if_exist(op, t.name, names, schema=t.schema)


def include_object_for(
    *tables: str | MessagesTable,
) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """An alembic `include_object` that hides chatpersist's columns and version tables
    from the app's autogenerate, so it never proposes to drop them."""
    targets = [_target(t, {}) for t in tables]
    ours = {(t.schema, t.name): {c.name for c in t.added_columns()} for t in targets}

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        """Alembic's hook: False for chatpersist's own columns and version tables."""
        if type_ == "table" and name is not None and name.startswith("chatpersist_"):
            return False
        if type_ == "column" and reflected and compare_to is None:
            table = getattr(obj, "table", None)
            key = (getattr(table, "schema", None), str(getattr(table, "name", "")))
            if name in ours.get(key, set()):
                return False
        return True

    return include_object
