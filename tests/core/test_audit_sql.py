"""`audit_stats()`, `sessions()` and `sweep()` count in the database by the rule of
`Message.interrupted` (`Loader.interrupted`), with the results the rule applied to
loaded messages gives: rows without a heartbeat, a finish_reason set while streaming,
the lease's exact boundary on an injected clock, days, models and `since`."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from chatpersist import ABANDONED, COMPLETE, STREAMING, ChatStore, MessagesTable, StatRow
from chatpersist.testing import ManualClock

#: A minute before midnight: answers fall on two days.
T = datetime(2024, 3, 1, 23, 59, 0, tzinfo=UTC)
LEASE = 30.0
US = timedelta(microseconds=1)


def naive(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None)


def expected_stats(store: ChatStore, since: timedelta | datetime | None = None) -> list[StatRow]:
    """The rule applied to the loaded messages (how `audit_stats` counted before it
    counted in the database)."""
    L = store.layout
    with store.engine.connect() as conn:
        rows = conn.execute(store.loader.select().where(L.role == "assistant")).all()
    now = store.clock.now()
    cutoff = None if since is None else now - since if isinstance(since, timedelta) else since
    answers: Counter[tuple[str, str | None]] = Counter()
    cut: Counter[tuple[str, str | None, str]] = Counter()
    for m in store.loader.messages(rows):
        if m.live or (cutoff is not None and m.created_at < cutoff):
            continue
        key = (m.created_at.date().isoformat(), m.model)
        answers[key] += 1
        if m.interrupted:
            cut[(*key, m.finish_reason or "lease_expired")] += 1
    out = [StatRow(d, mo, r, answers[(d, mo)], n) for (d, mo, r), n in cut.items()]
    out += [
        StatRow(d, mo, None, n, 0)
        for (d, mo), n in answers.items()
        if not any(r.day == d and r.model == mo for r in out)
    ]
    return sorted(out, key=lambda r: (r.day, r.model or "", r.reason or ""))


def loaded(store: ChatStore) -> dict[Any, Any]:
    """Every message, as the loader reads it, by id."""
    with store.engine.connect() as conn:
        rows = conn.execute(store.loader.select()).all()
    return {m.id: m for m in store.loader.messages(rows)}


@pytest.fixture
def statements() -> Iterator[Callable[[sa.Engine], list[str]]]:
    """`watch(engine)`: the list every SQL statement the engine runs is appended to."""
    watched: list[tuple[sa.Engine, Any]] = []

    def watch(engine: sa.Engine) -> list[str]:
        seen: list[str] = []

        def before(conn: Any, cursor: Any, stmt: str, *args: Any) -> None:
            seen.append(stmt)

        event.listen(engine, "before_cursor_execute", before)
        watched.append((engine, before))
        return seen

    yield watch
    for engine, fn in watched:
        event.remove(engine, "before_cursor_execute", fn)


def add(store: ChatStore, sid: str, name: str, **values: Any) -> str:
    """A message row written as it stands in the database (no writer involved)."""
    L = store.layout
    row = {
        "id": name, "session_id": sid, "role": "assistant", "content": f"text of {name}",
        "status": COMPLETE, "finish_reason": "stop", "seq": 1,
        "created_at": naive(T), "updated_at": naive(T), **values,
    }  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(sa.insert(L.messages).values(L.row(**row)))
    return name


def test_own_tables(
    make_store: Callable[..., ChatStore], statements: Callable[[sa.Engine], list[str]]
) -> None:
    clock = ManualClock(T)
    store = make_store(clock=clock, lease_seconds=LEASE)
    older = store.create_session("older")
    sid = store.create_session("newer")
    day1, day2 = naive(T - timedelta(days=1)), naive(T)
    add(store, sid, "user", role="user", created_at=day2)
    add(store, sid, "ok-a", model="m-a", created_at=day1, updated_at=day1)
    add(store, sid, "len-a", model="m-a", finish_reason="length", created_at=day1)
    add(store, sid, "no-model", model=None)
    # status complete with a cut reason: complete (the status says so)
    add(store, sid, "complete-error", model="m-b", finish_reason="error")
    add(store, sid, "stopped", model="m-b", status=STREAMING, finish_reason="stopped")
    # a finish_reason on a streaming row, heartbeat fresh: its writer ended it
    add(store, sid, "reason-live", model="m-b", status=STREAMING, finish_reason="stop")
    add(store, sid, "live", model="m-b", status=STREAMING, finish_reason=None)
    boundary = naive(T - timedelta(seconds=LEASE))
    add(store, older, "at-lease", model="m-c", status=STREAMING, finish_reason=None,
        updated_at=boundary, created_at=boundary)  # fmt: skip
    add(store, older, "past-lease", model="m-c", status=STREAMING, finish_reason=None,
        updated_at=boundary - US, created_at=boundary)  # fmt: skip
    add(store, older, "stale", model=None, status=STREAMING, finish_reason=None,
        updated_at=datetime(2020, 1, 1), created_at=datetime(2020, 1, 1))  # fmt: skip
    # the last microsecond of a day and the first of the next
    add(store, older, "late", model="m-c", created_at=naive(T.replace(hour=0, minute=0)) - US)
    add(store, older, "early", model="m-c", created_at=naive(T.replace(hour=0, minute=0)))
    with store.engine.begin() as conn:  # `older` is the less recently active session
        S = store.layout.sessions
        assert S is not None
        conn.execute(sa.update(S).where(S.c.id == older).values(updated_at=naive(T) - US))

    sql = statements(store.engine)
    stats = store.audit_stats()
    assert not [s for s in sql if "content" in s], "audit_stats read message texts"
    assert stats == expected_stats(store)
    by = {(r.day, r.model, r.reason): r for r in stats}
    assert by[("2024-03-01", "m-b", "stopped")].answers == 3  # live left out
    assert by[("2024-03-01", "m-b", "stop")].interrupted == 1
    assert by[("2024-03-01", "m-c", "lease_expired")].interrupted == 1  # past-lease only
    assert by[("2024-03-01", "m-c", "lease_expired")].answers == 2  # and `early`
    assert by[("2020-01-01", None, "lease_expired")].rate == 1.0
    assert by[("2024-02-29", "m-a", None)].answers == 2  # a leap day
    assert by[("2024-02-29", "m-c", None)].answers == 1  # `late`
    for since in (timedelta(seconds=LEASE), timedelta(days=1), T.replace(hour=0, minute=0), T - US):
        assert store.audit_stats(since) == expected_stats(store, since)

    sql.clear()
    info = store.sessions()
    assert not [s for s in sql if "content" in s], "sessions read message texts"
    messages = loaded(store)
    for s in info:
        mine = [m for m in messages.values() if m.session_id == s.id]
        assert (s.messages, s.interrupted) == (len(mine), sum(m.interrupted for m in mine))
    assert [s.id for s in info] == [sid, older]
    assert [(s.id, s.messages) for s in store.sessions(limit=1)] == [(sid, 8)]
    assert store.sessions(limit=0) == []

    # One microsecond later the draft at the lease's boundary has expired too.
    clock.advance(US.total_seconds())
    stats = store.audit_stats()
    assert stats == expected_stats(store)
    assert {(r.day, r.model, r.reason): r.interrupted for r in stats}[
        ("2024-03-01", "m-c", "lease_expired")
    ] == 2
    assert {s.id: s.interrupted for s in store.sessions()}[older] == 3

    # sweep marks exactly the drafts that read as interrupted without a reason
    assert store.sweep() == 3
    assert store.sweep() == 0
    after = loaded(store)
    assert {m.id for m in after.values() if m.finish_reason == ABANDONED} == {
        "at-lease", "past-lease", "stale"
    }  # fmt: skip
    assert after["live"].live and after["live"].finish_reason is None
    assert store.audit_stats() == expected_stats(store)


def test_sweep_leaves_the_lease_boundary(make_store: Callable[..., ChatStore]) -> None:
    clock = ManualClock(T)
    store = make_store(clock=clock, lease_seconds=LEASE)
    sid = store.create_session()
    boundary = naive(T - timedelta(seconds=LEASE))
    add(store, sid, "at-lease", status=STREAMING, finish_reason=None, updated_at=boundary)
    add(store, sid, "past-lease", status=STREAMING, finish_reason=None, updated_at=boundary - US)
    assert store.sweep() == 1
    assert loaded(store)["at-lease"].live
    assert [m.id for m in store.interrupted(reason=ABANDONED)] == ["past-lease"]


@pytest.fixture(params=["created_at", "no created_at"])
def app_store(
    request: pytest.FixtureRequest, db_url: str
) -> Iterator[tuple[ChatStore, ManualClock]]:
    """chatpersist on an app's table whose rows may have no heartbeat (the column is
    added, empty, by the retrofit migration) and no creation time."""
    name = f"app_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(db_url)
    md = sa.MetaData()
    columns: list[sa.Column[Any]] = [
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
    ]
    has_created = request.param == "created_at"
    if has_created:
        columns.append(sa.Column("created_at", sa.DateTime(), nullable=True))
    sa.Table(name, md, *columns)
    md.create_all(engine)
    engine.dispose()
    clock = ManualClock(T)
    table = MessagesTable(name, columns={} if has_created else {"created_at": None})
    store = ChatStore(db_url, table=table, clock=clock, lease_seconds=LEASE)
    store.migrate()
    try:
        yield store, clock
    finally:
        store.close()


def test_app_table_rows_without_heartbeat(
    app_store: tuple[ChatStore, ManualClock], statements: Callable[[sa.Engine], list[str]]
) -> None:
    store, clock = app_store
    L = store.layout
    hour_ago, fresh = naive(T - timedelta(hours=1)), naive(T)
    rows: list[dict[str, Any]] = [
        {"id": "app-user", "session_id": "s1", "role": "user", "created_at": hour_ago},
        {"id": "app-done", "session_id": "s1", "role": "assistant", "created_at": hour_ago},
        {"id": "app-undated", "session_id": "s2", "role": "assistant", "created_at": None},
        # streaming rows no writer ever beat for: their creation time stands in
        {"id": "cut-old", "session_id": "s1", "role": "assistant", "status": STREAMING,
         "created_at": hour_ago},
        {"id": "cut-fresh", "session_id": "s1", "role": "assistant", "status": STREAMING,
         "created_at": naive(T - timedelta(seconds=1))},
        {"id": "cut-undated", "session_id": "s2", "role": "assistant", "status": STREAMING,
         "created_at": None},
        {"id": "beat", "session_id": "s3", "role": "assistant", "status": STREAMING,
         "created_at": hour_ago, "updated_at": fresh, "model": "m"},
        {"id": "reason", "session_id": "s3", "role": "assistant", "status": STREAMING,
         "created_at": fresh, "updated_at": fresh, "finish_reason": "error"},
    ]  # fmt: skip
    with store.engine.begin() as conn:
        for r in rows:
            values = {"content": f"text of {r['id']}", **r}
            if L.created_at is None:
                values.pop("created_at")
            conn.execute(sa.insert(L.messages).values(L.row(**values)))
    messages = loaded(store)
    assert messages["cut-old"].interrupted
    assert messages["cut-undated"].interrupted
    assert messages["cut-fresh"].live is (L.created_at is not None)

    sql = statements(store.engine)
    stats = store.audit_stats()
    info = store.sessions()
    assert not [s for s in sql if "content" in s], "read message texts"
    assert stats == expected_stats(store)
    assert store.audit_stats(timedelta(days=1)) == expected_stats(store, timedelta(days=1))
    assert ("1970-01-01", None, "lease_expired") in {(r.day, r.model, r.reason) for r in stats}
    for s in info:
        mine = [m for m in messages.values() if m.session_id == s.id]
        assert (s.messages, s.interrupted) == (len(mine), sum(m.interrupted for m in mine))
    assert [s.id for s in info][0] == "s3"  # the freshest heartbeat
    assert [s.id for s in store.sessions(limit=2)] == [s.id for s in info][:2]

    swept = {m.id for m in messages.values() if m.interrupted and m.finish_reason is None}
    assert store.sweep() == len(swept) >= 2
    after = loaded(store)
    assert {m.id for m in after.values() if m.finish_reason == ABANDONED} == swept
    assert after["beat"].live
    assert store.audit_stats() == expected_stats(store)
    clock.advance(2 * 3600)  # every heartbeat and creation time is now past the lease
    assert store.audit_stats() == expected_stats(store)
    assert store.sweep() >= 1
    assert not [m for m in loaded(store).values() if m.live]
