"""One declaration of a message row's fields (`_schema.FIELDS`): everything that
names the fields is built from it, so none can drift from the others."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from chatpersist import Message, MessagesTable
from chatpersist._schema import FACTS, FIELDS, READ, Layout, messages
from chatpersist._sql import APPEND_PARAMS, EXTRAS, append_row_types
from chatpersist.retrofit import DRAFT_COLUMNS, HOST_COLUMNS


def test_every_field_is_a_column_a_layout_slot_and_if_read_a_message_attribute() -> None:
    names = [f.name for f in FIELDS]
    assert [c.name for c in messages.columns] == names
    slots = {f.name for f in dataclasses.fields(Layout)}
    assert set(names) <= slots
    attrs = {f.name for f in dataclasses.fields(Message)}
    assert set(READ) <= attrs
    assert "writer" not in READ  # the fencing token is the writers' business


def test_the_retrofit_columns_and_the_flush_come_from_the_fields() -> None:
    assert set(HOST_COLUMNS) | set(DRAFT_COLUMNS) == {f.name for f in FIELDS}
    assert not set(HOST_COLUMNS) & set(DRAFT_COLUMNS)
    assert EXTRAS == FACTS == ("model", "input_tokens", "output_tokens", "error")
    assert list(APPEND_PARAMS)[-len(FACTS) :] == list(FACTS)
    layout = MessagesTable("app_messages").layout()
    assert list(append_row_types(layout)) == list(APPEND_PARAMS)
    for f in FIELDS:
        col = layout.column(f.name)
        assert col is not None and col.name == (f.name if f.host else DRAFT_COLUMNS[f.name])
        if not f.host:  # added to an app's rows that exist: nullable unless defaulted
            assert col.nullable == (f.default is None), f.name


def test_the_select_list_reads_every_message_field_by_name() -> None:
    layout = Layout.default()
    labels = [c.name for c in layout.read_columns()]
    assert labels == list(READ)
    row = layout.row(content="x", seq=3)
    assert row["content"] == "x" and row["seq"] == 3
    assert all(row[c.key] is None for c in layout.extras)
    assert isinstance(layout.read_columns()[0], sa.sql.elements.Label)
