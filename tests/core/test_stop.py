"""Stop from anywhere: a Stop recorded by one store (another worker) ends the answer
another store is writing, 'stopped', with every piece it streamed kept."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from chatpersist import COMPLETE, STREAMING, ChatStore
from chatpersist.providers import stream_into
from chatpersist.testing import OffsetClock


def slow_pieces(sent: list[str], stop_after: float = 20.0) -> Iterator[str]:
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < stop_after:
        piece = f"p{i} "
        sent.append(piece)
        yield piece
        i += 1
        time.sleep(0.01)


def test_a_stop_from_another_worker_ends_the_answer_stopped(
    make_store: Callable[..., ChatStore],
) -> None:
    generating = make_store(stop_poll=0.2)
    elsewhere = make_store()
    sid = generating.create_session()
    generating.add_message(sid, "user", "go on forever")
    sent: list[str] = []
    result: dict[str, object] = {}

    def generate() -> None:
        result["message"] = stream_into(generating, sid, slow_pieces(sent))

    worker = threading.Thread(target=generate)
    worker.start()
    deadline = time.monotonic() + 10
    while len(sent) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    mid = elsewhere.history(sid)[-1].id
    assert elsewhere.get_message(mid).live
    asked = time.monotonic()
    assert elsewhere.request_stop(mid) is True
    worker.join(10)
    took = time.monotonic() - asked
    assert not worker.is_alive()
    m = elsewhere.get_message(mid)
    assert (m.status, m.finish_reason) == (STREAMING, "stopped") and m.interrupted
    assert m.content == "".join(sent)  # nothing streamed before the Stop is lost
    assert took < 2.0, took  # a poll of 0.2 s, plus the final flush
    # a second Stop finds nothing live
    assert elsewhere.request_stop(mid) is False


def test_stop_of_what_is_not_live(store: ChatStore, make_store: Callable[..., ChatStore]) -> None:
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("finished")
    assert store.request_stop(d.message_id) is False  # complete
    assert store.get_message(d.message_id).status == COMPLETE
    with store.draft(sid) as cut:
        cut.append("cut")
        cut.stop("disconnected")
    assert store.request_stop(cut.message_id) is False  # interrupted already
    assert store.request_stop("no-such-message") is False


def test_a_writer_gone_past_its_lease_is_not_live(make_store: Callable[..., ChatStore]) -> None:
    store = make_store()
    later = make_store(clock=OffsetClock(31))  # sees the 30 s lease as passed
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("x")
        d.flush()
        assert store.request_stop(d.message_id) is True  # live now
        assert later.request_stop(d.message_id) is False  # its writer looks gone


def test_a_new_draft_on_a_stopped_answer_is_not_stopped_again(
    make_store: Callable[..., ChatStore],
) -> None:
    store = make_store(stop_poll=0.05)
    sid = store.create_session()
    with store.draft(sid) as d:
        d.append("before ")
        d.flush()
        assert store.request_stop(d.message_id)
        deadline = time.monotonic() + 5
        while not d.stop_requested and time.monotonic() < deadline:
            time.sleep(0.02)
        assert d.stop_requested
        d.stop("stopped")
    # Continuing it (a new draft on the same id) clears the old request.
    with store.draft(sid, message_id=d.message_id) as again:
        again.append("after")
        time.sleep(0.3)  # several polls
        assert not again.stop_requested
    m = store.get_message(d.message_id)
    assert (m.content, m.status) == ("before after", COMPLETE)


@pytest.mark.parametrize("n", [300])
def test_one_query_checks_every_open_draft(make_store: Callable[..., ChatStore], n: int) -> None:
    store = make_store(stop_poll=0.05)
    sid = store.create_session()
    drafts = [store.draft(sid) for _ in range(n)]
    for d in drafts:
        d.__enter__()
        d.append("x")
    try:
        for d in drafts[::50]:
            assert store.request_stop(d.message_id)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(d.stop_requested for d in drafts[::50]):
            time.sleep(0.02)
        assert [i for i, d in enumerate(drafts) if d.stop_requested] == list(range(0, n, 50))
    finally:
        for d in drafts:
            d.__exit__(None, None, None)


def test_a_stop_on_an_apps_own_table(db_url: str) -> None:
    """An app's own table has no index of pending stops: its writers ask by id, and a
    Stop from another worker ends the answer the same way."""
    import sqlalchemy as sa

    from chatpersist import MessagesTable, _migrate

    engine = sa.create_engine(db_url)
    md = sa.MetaData()
    sa.Table(
        "app_messages", md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )  # fmt: skip
    md.create_all(engine)
    target = MessagesTable("app_messages")
    try:
        with ChatStore(engine, table=target, stop_poll=0.05) as store:
            store.migrate()
            assert store._writer._pending_query is None  # asked by id
            other = ChatStore(engine, table=target)
            with store.draft("s1") as d:
                d.append("before ")
                d.flush()
                assert other.request_stop(d.message_id)
                deadline = time.monotonic() + 5
                while not d.stop_requested and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert d.stop_requested
                d.stop("stopped")
            other.close()
            m = store.get_message(d.message_id)
            assert (m.content, m.finish_reason) == ("before ", "stopped")
    finally:
        _migrate.downgrade(engine, "base", target)
        md.drop_all(engine)
        engine.dispose()


def test_chatpersists_own_table_asks_for_pending_stops_without_ids(
    make_store: Callable[..., ChatStore],
) -> None:
    store = make_store()
    assert store._writer._pending_query is not None
