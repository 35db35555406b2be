"""The statements a flush is made of, built from a `Layout` with each dialect's upsert.

Every write carries the message's sequence number. A write applies only if it is
newer than what is stored and the row is still streaming, so a late or repeated
flush can never overwrite newer text or reopen a complete message.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

from ._schema import FACTS, STREAMING, Layout

# Bound-parameter names (prefixed so they never collide with column names).
P_ID, P_SEQ, P_PREV, P_DELTA = "p_id", "p_seq", "p_prev", "p_delta"
P_STATUS, P_REASON, P_NOW, P_WRITER = "p_status", "p_reason", "p_now", "p_writer"
P_ROWS = "p_rows"
#: The new segments of the parts log (JSON text of an array), or None: no change.
P_PARTS = "p_parts"
# Facts a writer learns along the way (model, usage, error); None keeps what is stored.
EXTRAS = FACTS


def extra_param(field: str) -> str:
    return f"p_x_{field}"


#: What one flush binds, by name (a row of `append_rows`, in this order), and the
#: parameter of `flush_update` each is bound as.
APPEND_PARAMS: dict[str, str] = {
    "id": P_ID, "writer": P_WRITER, "prev": P_PREV, "seq": P_SEQ, "delta": P_DELTA,
    "status": P_STATUS, "reason": P_REASON, "parts": P_PARTS,
    **{f: extra_param(f) for f in EXTRAS},
}  # fmt: skip


def bind(row: dict[str, Any], now: Any) -> dict[str, Any]:
    """The parameters of `flush_update` for a row named as in `APPEND_PARAMS`."""
    return {APPEND_PARAMS[k]: v for k, v in row.items()} | {P_NOW: now}


def row_values(row: dict[str, Any]) -> list[Any]:
    """A row of `append_rows`: the values in the order of `APPEND_PARAMS`."""
    return [row[k] for k in APPEND_PARAMS]


def held_by(layout: Layout, writer: Any) -> sa.ColumnElement[bool]:
    """The row belongs to this writer token ('' stands for a row without one)."""
    same: sa.ColumnElement[bool] = sa.func.coalesce(layout.writer, "") == writer
    return same


def _guard(layout: Layout, whole: bool) -> list[sa.ColumnElement[bool]]:
    """Where a flush may write: this writer's row, still streaming, and at the
    previous seq (an append) or behind the new one (a whole rewrite)."""
    seq = layout.seq < sa.bindparam(P_SEQ) if whole else layout.seq == sa.bindparam(P_PREV)
    return [
        layout.id == sa.bindparam(P_ID),
        held_by(layout, sa.bindparam(P_WRITER, type_=sa.String())),
        layout.status == STREAMING,
        seq,
    ]


def parts_value(layout: Layout, dialect: str, value: Any, *, concat: bool) -> Any:
    """The new value of the parts column: the stored log with the segments of `value`
    (JSON text of an array; NULL changes nothing) appended (`concat`), or `value`
    itself. Appending sends only the new segments: JSONB's `||` on PostgreSQL,
    JSON_MERGE_PRESERVE on MySQL / MariaDB, and on SQLite (JSON as text) the two
    arrays' texts spliced together."""
    col = layout.parts
    text = sa.cast(value, sa.Text())
    if dialect == "postgresql":
        new = sa.cast(text, JSONB)
        if not concat:
            return new
        old = sa.func.coalesce(col, sa.cast(sa.literal("[]", sa.Text()), JSONB))
        return sa.case((text.is_(None), col), else_=old.op("||")(new))
    if not concat:
        return text
    if dialect in ("mysql", "mariadb"):
        merged = sa.func.json_merge_preserve(sa.func.coalesce(col, "[]"), text)
        return sa.case((text.is_(None), col), else_=merged)
    stored = sa.cast(col, sa.Text())
    spliced = sa.func.substr(stored, 1, sa.func.length(stored) - 1) + "," + sa.func.substr(text, 2)
    return sa.case((text.is_(None), col), (col.is_(None), text), else_=spliced)


def flush_update(
    layout: Layout, *, dialect: str, whole: bool = False, concat: bool = True
) -> sa.Update:
    """One flush: add the new text (`concat`) or set the text (not `concat`), with the
    seq, status and facts. `whole` guards it as a rewrite (the row may be behind)
    instead of an append (the row must be exactly at the previous seq).

    Executed with many parameter sets at once; a row that does not match (another
    writer, a complete or deleted row, a lost write) is sorted out afterwards. New
    segments of the parts log are appended (a whole rewrite sets the log first, with
    `parts_piece_update`).
    """
    delta = sa.bindparam(P_DELTA, type_=sa.Text())
    parts = sa.bindparam(P_PARTS, type_=sa.Text())
    return (
        sa.update(layout.messages)
        .where(*_guard(layout, whole))
        .values(
            {
                layout.content: layout.content.concat(delta) if concat else delta,
                layout.parts: parts_value(layout, dialect, parts, concat=True),
                layout.seq: sa.bindparam(P_SEQ),
                layout.status: sa.bindparam(P_STATUS),
                layout.finish_reason: sa.bindparam(P_REASON),
                layout.updated_at: sa.bindparam(P_NOW),
                **{
                    getattr(layout, f): sa.func.coalesce(
                        sa.bindparam(extra_param(f)), getattr(layout, f)
                    )
                    for f in EXTRAS
                },
            }
        )
    )


def append_update(layout: Layout, dialect: str) -> sa.Update:
    """Add only the new text: the row must be exactly at the previous seq."""
    return flush_update(layout, dialect=dialect)


def parts_piece_update(layout: Layout, dialect: str, *, whole: bool, concat: bool) -> sa.Update:
    """Part of a parts log too large for one statement: only the parts change, under
    the same guard as the flush that follows it in the same transaction."""
    parts = sa.bindparam(P_PARTS, type_=sa.Text())
    return (
        sa.update(layout.messages)
        .where(*_guard(layout, whole))
        .values({layout.parts: parts_value(layout, dialect, parts, concat=concat)})
    )


def piece_update(layout: Layout, *, whole: bool, concat: bool) -> sa.Update:
    """Part of a text too large for one statement: only the text changes, under the
    same guard as the flush that follows it in the same transaction."""
    delta = sa.bindparam(P_DELTA, type_=sa.Text())
    return (
        sa.update(layout.messages)
        .where(*_guard(layout, whole))
        .values({layout.content: layout.content.concat(delta) if concat else delta})
    )


def _json_rows(types: dict[str, Any]) -> Any:
    """A derived table `v` of rows sent as one JSON array of arrays (`p_rows`), each
    field cast to its column's type: many rows, one parameter, one round trip.

    JSON rather than one array per field: `json.dumps` encodes a batch several times
    faster than the driver adapts ten arrays, and the writer shares the GIL with the
    app while the server has CPU to spare.
    """
    r = (
        sa.func.jsonb_array_elements(sa.cast(sa.bindparam(P_ROWS, type_=sa.Text()), JSONB))
        .table_valued("value")
        .render_derived(name="r")
    )
    return sa.select(
        *[
            sa.cast(r.c.value.op("->>")(sa.literal_column(str(i))), _unbounded(t)).label(n)
            for i, (n, t) in enumerate(types.items())
        ]
    ).subquery("v")


def _unbounded(type_: Any) -> Any:
    # An explicit cast to VARCHAR(n) would silently cut a longer value; as TEXT, the
    # assignment to the column refuses it, as a plain UPDATE does.
    if isinstance(type_, sa.String) and not isinstance(type_, sa.Enum):
        return sa.Text()
    return type_


def append_row_types(layout: Layout) -> dict[str, Any]:
    """The per-row fields of `append_rows` and their types, in `APPEND_PARAMS` order."""
    types = {
        "id": layout.id.type,
        "writer": sa.Text(),
        "prev": layout.seq.type,
        "seq": layout.seq.type,
        "delta": sa.Text(),
        "status": layout.status.type,
        "reason": layout.finish_reason.type,
        "parts": sa.Text(),
    } | {f: layout.column(f).type for f in EXTRAS}
    return {k: types[k] for k in APPEND_PARAMS}


def append_rows(layout: Layout) -> sa.Update:
    """`append_update` for many rows in one statement (PostgreSQL).

    `executemany` costs a round trip per row and, in a busy process, a wait for the
    GIL after each; this costs one for the whole batch.
    """
    v = _json_rows(append_row_types(layout))
    return (
        sa.update(layout.messages)
        .where(
            layout.id == v.c.id,
            held_by(layout, v.c.writer),
            layout.seq == v.c.prev,
            layout.status == STREAMING,
        )
        .values(
            {
                layout.content: layout.content.concat(v.c.delta),
                layout.parts: parts_value(layout, "postgresql", v.c.parts, concat=True),
                layout.seq: v.c.seq,
                layout.status: v.c.status,
                layout.finish_reason: v.c.reason,
                layout.updated_at: sa.bindparam(P_NOW),
                **{
                    getattr(layout, f): sa.func.coalesce(v.c[f], getattr(layout, f)) for f in EXTRAS
                },
            }
        )
    )


def heartbeat_rows(layout: Layout) -> sa.Update:
    """`heartbeat_update` for many rows in one statement (PostgreSQL)."""
    v = _json_rows({"id": layout.id.type, "writer": sa.Text(), "seq": layout.seq.type})
    return (
        sa.update(layout.messages)
        .where(
            layout.id == v.c.id,
            held_by(layout, v.c.writer),
            layout.seq == v.c.seq,
            layout.status == STREAMING,
        )
        .values(_beat_values(layout))
    )


def _beat_values(layout: Layout) -> dict[Any, Any]:
    # A beat also clears a mark that `sweep()` left while the writer was paused.
    return {layout.updated_at: sa.bindparam(P_NOW), layout.finish_reason: None}


# Wakes followers (chatpersist.asgi.follow): one notification per group of ids.
NOTIFY = sa.text("SELECT pg_notify('chatpersist', p) FROM unnest(CAST(:ids AS TEXT[])) AS p")


def heartbeat_update(layout: Layout) -> sa.Update:
    return (
        sa.update(layout.messages)
        .where(
            layout.id == sa.bindparam(P_ID),
            held_by(layout, sa.bindparam(P_WRITER, type_=sa.String())),
            layout.seq == sa.bindparam(P_SEQ),
            layout.status == STREAMING,
        )
        .values(_beat_values(layout))
    )


def full_upsert(layout: Layout, dialect: Dialect, rows: list[dict[str, Any]]) -> sa.Executable:
    """Insert or write whole texts for many messages in one statement, guarded by
    seq and by the writer token (a row held by another writer is left alone).

    `rows` are keyed by column *key* of the layout's table. The writer of open drafts
    never inserts (a deleted row stays deleted); this serves texts a client sends
    whole (`ChatStore.save_partial`).
    """
    t = layout.messages
    keys: list[sa.Column[Any]] = [
        layout.content,
        layout.parts,
        layout.finish_reason,
        layout.updated_at,
        layout.status,
    ]
    name = dialect.name
    if name in ("sqlite", "postgresql"):
        ins = (sqlite.insert(t) if name == "sqlite" else postgresql.insert(t)).values(rows)
        ex = ins.excluded
        set_: dict[str, Any] = {c.key: ex[c.key] for c in [*keys, layout.seq, layout.writer]}
        set_.update({c.key: sa.func.coalesce(ex[c.key], c) for c in layout.extras})
        return ins.on_conflict_do_update(
            index_elements=[layout.id],
            set_=set_,
            where=(layout.seq < ex[layout.seq.key])
            & (layout.status == STREAMING)
            & (layout.session_id == ex[layout.session_id.key])
            & held_by(layout, sa.func.coalesce(ex[layout.writer.key], "")),
        )
    if name in ("mysql", "mariadb"):
        mins = mysql.insert(t).values(rows)
        new = mins.inserted
        # MySQL has no WHERE here, and applies the assignments left to right, each
        # seeing the ones before. So every column but status is guarded by `newer`
        # (which reads seq, status, session_id and writer) and seq is set after them;
        # status comes last, guarded by "this very write landed" (seq and the
        # write's timestamp now match it).
        newer = (
            (layout.seq < new[layout.seq.key])
            & (layout.status == STREAMING)
            & (layout.session_id == new[layout.session_id.key])
            & held_by(layout, sa.func.coalesce(new[layout.writer.key], ""))
        )
        content_cols = [c for c in keys if c is not layout.status]
        assignments: list[tuple[Any, Any]] = [
            (c.key, sa.case((newer, new[c.key]), else_=c)) for c in content_cols
        ]
        assignments += [
            (c.key, sa.case((newer, sa.func.coalesce(new[c.key], c)), else_=c))
            for c in layout.extras
        ]
        # The writer before seq: `newer` keeps its truth once the token is set.
        assignments.append(
            (layout.writer.key, sa.case((newer, new[layout.writer.key]), else_=layout.writer))
        )
        assignments.append(
            (layout.seq.key, sa.case((newer, new[layout.seq.key]), else_=layout.seq))
        )
        landed = (
            (layout.seq == new[layout.seq.key])
            & (layout.updated_at == new[layout.updated_at.key])
            & (layout.status == STREAMING)
        )
        assignments.append(
            (layout.status.key, sa.case((landed, new[layout.status.key]), else_=layout.status))
        )
        return mins.on_duplicate_key_update(assignments)
    raise NotImplementedError(f"chatpersist does not support the {name!r} dialect")
