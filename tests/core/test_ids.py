"""Ids are compared exactly on every database, and odd ids get clear errors."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from chatpersist import ChatStore, MessagesTable

LOOKALIKES = [("CaseAbc", "caseabc"), ("cafe", "café"), ("sp1", "sp1 ")]


@pytest.mark.parametrize(("a", "b"), LOOKALIKES)
def test_ids_that_look_alike_are_different_messages(store: ChatStore, a: str, b: str) -> None:
    sa_, sb = store.create_session(session_id=a), store.create_session(session_id=b)
    assert (sa_, sb) == (a, b)
    store.add_message(a, "user", "first", message_id=a)
    store.add_message(b, "user", "second", message_id=b)
    assert store.get_message(a).content == "first"
    assert store.get_message(b).content == "second"
    assert [m.content for m in store.history(a)] == ["first"]


def test_a_nul_in_an_id_is_a_clear_error(store: ChatStore) -> None:
    sid = store.create_session()
    with pytest.raises(ValueError, match="NUL"):
        store.draft(sid, message_id="a\x00b")
    with pytest.raises(ValueError, match="NUL"):
        store.create_session(session_id="s\x00")


@pytest.mark.parametrize("backend", ["mysql"])
def test_a_retrofitted_table_with_loose_id_collation_is_warned_about(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE messages (id VARCHAR(64) PRIMARY KEY, session_id VARCHAR(64) NOT NULL, "
            "role VARCHAR(32) NOT NULL, content LONGTEXT NOT NULL, created_at DATETIME(6) NOT NULL) "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        )
    caplog.set_level(logging.WARNING, "chatpersist")
    with ChatStore(engine, table=MessagesTable("messages")) as store:
        store.migrate()
    assert "utf8mb4_general_ci" in caplog.text and "COLLATE utf8mb4_nopad_bin" in caplog.text
    engine.dispose()
