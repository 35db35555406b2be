"""Fixtures: a fresh database per test on SQLite, PostgreSQL and MariaDB/MySQL.

PostgreSQL and MariaDB are found through CHATPERSIST_TEST_POSTGRES and
CHATPERSIST_TEST_MYSQL (defaults: local servers). When one cannot be reached the
tests that need it are skipped with the reason, except in CI (CI=true or
CHATPERSIST_REQUIRE_DBS=1), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from support import fresh_database

from chatpersist import ChatStore

BACKENDS = ["sqlite", "postgresql", "mysql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: os.PathLike[str]) -> Iterator[str]:
    yield from fresh_database(backend, tmp_path)


@pytest.fixture
def make_store(db_url: str) -> Iterator[Callable[..., ChatStore]]:
    """Build migrated stores on the test's database; all are closed afterwards."""
    stores: list[ChatStore] = []

    def make(**kwargs: object) -> ChatStore:
        store = ChatStore(db_url, **kwargs)  # type: ignore[arg-type]
        if not stores:
            store.migrate()
        stores.append(store)
        return store

    yield make
    for s in stores:
        s.close()


@pytest.fixture
def store(make_store: Callable[..., ChatStore]) -> ChatStore:
    return make_store()
