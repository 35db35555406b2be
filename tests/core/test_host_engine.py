"""chatpersist inside someone else's app: the app's engine, sessions and writes go on
exactly as without it, while drafts stream."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from chatpersist import COMPLETE, ChatStore


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "app_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.String(200))


@pytest.fixture
def app_engine(db_url: str) -> Iterator[sa.Engine]:
    kwargs = {"connect_args": {"timeout": 5}} if db_url.startswith("sqlite") else {}
    engine = sa.create_engine(db_url, **kwargs)  # as an app makes it: nothing special
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _listeners(engine: sa.Engine) -> tuple[int, int]:
    """Listeners on how connections open and transactions begin."""
    return len(engine.dispatch.begin), len(engine.pool.dispatch.connect)


def test_the_apps_engine_is_left_as_it_was(app_engine: sa.Engine) -> None:
    before = (_listeners(app_engine), dict(app_engine.get_execution_options()))
    store = ChatStore(app_engine)
    try:
        store.migrate()
        sid = store.create_session()
        with store.draft(sid) as d:
            d.append("text")
        assert (_listeners(app_engine), dict(app_engine.get_execution_options())) == before
    finally:
        store.close()
    with app_engine.connect() as conn:  # still usable: close() did not dispose it
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1


def test_orm_read_then_write_after_another_commit_while_drafts_stream(
    app_engine: sa.Engine,
) -> None:
    # What broke the websocket app: a session reads, another connection commits, then
    # the session writes. With chatpersist's listeners on the app's SQLite engine the
    # read began a deferred transaction whose snapshot was stale: "database is locked".
    store = ChatStore(app_engine, every_chunks=1, every_seconds=0.05)
    store.migrate()
    sid = store.create_session()
    stop = threading.Event()
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            with store.draft(sid) as d:
                i = 0
                while not stop.is_set():
                    d.append(f"w{i} ")
                    i += 1
                    stop.wait(0.002)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def host_writer(n: int) -> None:
        try:
            for i in range(30):
                with Session(app_engine) as s, s.begin():
                    s.add(Note(text=f"writer {n} note {i}"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        with Session(app_engine) as session:
            session.add(Note(text="first"))
            session.commit()
            assert session.scalars(sa.select(Note)).all()  # a read...
            with app_engine.begin() as other:  # ...another connection commits...
                other.execute(sa.insert(Note).values(text="other"))
            session.add(Note(text="after"))  # ...then the session writes
            session.commit()
        writers = [threading.Thread(target=host_writer, args=(n,)) for n in range(2)]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
    finally:
        stop.set()
        streamer.join()
        store.close()
    assert not errors, errors
    with Session(app_engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Note)) == 3 + 60
    with ChatStore(app_engine) as again:
        (m,) = again.history(sid)
        assert m.status == COMPLETE and m.content.startswith("w0 w1 ")
