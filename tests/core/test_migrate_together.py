"""The workers of one app starting together all migrate: they take turns (the
database's application lock), and none fails."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from support import fresh_database

from chatpersist import ChatStore


def migrate(url: str) -> str:
    with ChatStore(url) as store:
        store.migrate()
        sid = store.create_session()
        store.add_message(sid, "user", "after migrating")
    return "ok"


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_six_processes_migrate_an_empty_database_at_once(kind: str, tmp_path: Path) -> None:
    for url in fresh_database(kind, tmp_path):
        with multiprocessing.get_context("spawn").Pool(6) as pool:
            assert pool.map(migrate, [url] * 6) == ["ok"] * 6
        with ChatStore(url) as store:
            assert len(store.sessions()) == 6
