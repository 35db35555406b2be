"""Engines: building one from a URL, and the SQLite settings concurrent writers need."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

_BEGIN_OPTION = "chatpersist_begin"
_CONFIGURED = "_chatpersist_sqlite_configured"


def make_engine(url_or_engine: str | sa.URL | Engine, *, busy_timeout: float = 30.0) -> Engine:
    """chatpersist's engine: from a URL, or beside an app's engine.

    An app's engine is never changed. On PostgreSQL and MySQL it is used as it is (we
    add nothing to it). On SQLite our writers need transactions that begin with
    `BEGIN IMMEDIATE`, which takes listeners that would change how every one of the
    app's transactions begins: chatpersist opens its own engine on the same file.
    """
    if isinstance(url_or_engine, Engine):
        if url_or_engine.dialect.name != "sqlite":
            return url_or_engine
        url = url_or_engine.url
    else:
        try:
            url = sa.make_url(url_or_engine)
        except sa.exc.ArgumentError as exc:
            raise ValueError(f"not a database URL: {url_or_engine!r}") from exc
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:") or "mode=memory" in str(url):
            raise ValueError(
                "an in-memory SQLite database is private to one connection, but the "
                "background writer needs its own: use a file, e.g. sqlite:///chat.db"
            )
        kwargs = {"connect_args": {"check_same_thread": False, "timeout": busy_timeout}}
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, busy_timeout)
    return engine


def _configure_sqlite(engine: Engine, busy_timeout: float) -> None:
    if getattr(engine, _CONFIGURED, False):
        return
    setattr(engine, _CONFIGURED, True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not pysqlite, decide how transactions start.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front: a deferred transaction that upgrades to a
        # write lock fails at once with "database is locked" instead of waiting.
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A transaction meant to write: BEGIN IMMEDIATE on SQLite."""
    with engine.connect() as conn:
        conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            yield conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn
