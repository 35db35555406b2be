"""`chatpersist.metrics`: the writer's work as OpenTelemetry metrics, read back with
the SDK's in-memory reader after real drafts on a real database."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from support import ROOT, subprocess_env, wait_until
from tcp_proxy import TcpProxy

from chatpersist import AsyncChatStore, ChatStore
from chatpersist.metrics import INSTRUMENTS, instrument
from chatpersist.testing import ManualClock

#: name -> attributes (sorted pairs) -> the data point (a number, or (count, sum))
Points = dict[str, dict[tuple[tuple[str, Any], ...], Any]]


def read(reader: InMemoryMetricReader) -> tuple[Points, dict[str, str]]:
    """What the reader collects now: the points by metric name, and each one's unit."""
    points: Points = {}
    units: dict[str, str] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert sm.scope.name == "chatpersist"
            for metric in sm.metrics:
                units[metric.name] = metric.unit or ""
                by_attrs = points.setdefault(metric.name, {})
                for p in metric.data.data_points:
                    key = tuple(sorted((p.attributes or {}).items()))
                    value = getattr(p, "value", None)
                    by_attrs[key] = (p.count, p.sum) if value is None else value  # type: ignore[union-attr]
    return points, units


def one(points: Points, name: str, **attrs: str) -> Any:
    return points[name][tuple(sorted(attrs.items()))]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_instruments_after_real_drafts(
    make_store: Callable[..., ChatStore], reader: InMemoryMetricReader
) -> None:
    clock = ManualClock()
    store = make_store(clock=clock, every_seconds=2.0)
    other = make_store(clock=clock)  # another writer, not instrumented
    provider = MeterProvider(metric_readers=[reader])
    metrics = instrument(store, provider)
    assert metrics.enabled and store._writer.hooks is not None
    sid = store.create_session()

    # Flush lag: the text waits for the timer (every_seconds = 2) until the clock says 3 s.
    with store.draft(sid, every_chunks=1000) as d:
        d.append("waits for the timer")
        points, _ = read(reader)
        assert one(points, "chatpersist.draft.count") == 1
        clock.advance(3)
        wait_until(lambda: store.stats.flushes >= 1, what="the timer's flush")
        points, _ = read(reader)
        assert one(points, "chatpersist.flush.lag") == (1, pytest.approx(3.0))
    # Its end wrote no new text: no lag of its own.
    points, _ = read(reader)
    assert one(points, "chatpersist.flush.lag")[0] == 1

    # Interrupted, by reason; each end writes its text at once (a lag of 0 s).
    with store.draft(sid) as d:
        d.append("cut")
        d.stop("disconnected")
    with pytest.raises(RuntimeError), store.draft(sid) as d:
        d.append("failed")
        raise RuntimeError("the provider broke")
    # Fenced: taken over by another writer, and a row deleted under its draft.
    old = store.draft(sid, every_chunks=1000)
    old.__enter__()
    old.append("old writer ")
    old.flush(timeout=10)
    with other.draft(sid, message_id=old.message_id) as new:
        new.append("new writer")
    old.append("too late")
    old.flush(timeout=10)
    old.__exit__(None, None, None)
    assert old.superseded
    gone = store.draft(sid, every_chunks=1000)
    gone.__enter__()
    gone.append("soon deleted ")
    gone.flush(timeout=10)
    with store.engine.begin() as conn:
        conn.execute(sa.delete(store.layout.messages).where(store.layout.id == gone.message_id))
    gone.append("nowhere to go")
    gone.flush(timeout=10)
    gone.__exit__(None, None, None)
    assert gone.deleted

    points, units = read(reader)
    s = store.stats
    assert one(points, "chatpersist.draft.interrupted", reason="disconnected") == 1
    assert one(points, "chatpersist.draft.interrupted", reason="error") == 1
    assert len(points["chatpersist.draft.interrupted"]) == 2  # complete ends are not counted
    assert one(points, "chatpersist.draft.fenced", reason="superseded") == 1
    assert one(points, "chatpersist.draft.fenced", reason="deleted") == 1
    assert one(points, "chatpersist.flushes") == s.flushes >= 6
    assert one(points, "chatpersist.transactions") == s.transactions
    assert one(points, "chatpersist.heartbeats") == s.heartbeats
    assert one(points, "chatpersist.flush.failures") == s.failures == 0
    assert one(points, "chatpersist.journal.spills") == 0
    assert one(points, "chatpersist.draft.count") == 0
    count, total = one(points, "chatpersist.flush.lag")
    assert count >= 5 and total == pytest.approx(3.0)  # the other flushes waited no time
    commits, seconds = one(points, "chatpersist.commit.duration")
    assert commits == s.transactions and 0 < seconds < 30
    assert "chatpersist.journal.size" not in points  # no journal
    for m in INSTRUMENTS:  # as documented
        if m.name in units:
            assert units[m.name] == m.unit, m.name

    # Closed: the writer has no hook any more; the counters keep their last values.
    metrics.close()
    metrics.close()
    assert store._writer.hooks is None and not metrics.enabled
    flushes = s.flushes
    with store.draft(sid) as d:
        d.append("not reported")
    assert store.stats.flushes > flushes
    points, _ = read(reader)
    assert one(points, "chatpersist.flushes") == flushes
    assert one(points, "chatpersist.draft.interrupted", reason="error") == 1


def test_several_stores_one_provider(tmp_path: Path, reader: InMemoryMetricReader) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    provider = MeterProvider(metric_readers=[reader])
    with ChatStore(url) as a, ChatStore(url) as b:
        a.migrate()
        sid = a.create_session()
        async_b = AsyncChatStore(b)
        ma = instrument(a, provider, attributes={"chatpersist.store": "a"})
        mb = instrument(async_b, provider, attributes={"chatpersist.store": "b"})
        with pytest.raises(ValueError, match="already reports"):
            instrument(a, provider)
        twice = instrument(a, MeterProvider(metric_readers=[InMemoryMetricReader()]))
        for store, reason in ((a, "stopped"), (b, "stopped"), (b, "disconnected")):
            with store.draft(sid) as d:
                d.append("x")
                d.stop(reason)
        points, _ = read(reader)
        key = "chatpersist.draft.interrupted"
        assert one(points, key, reason="stopped", **{"chatpersist.store": "a"}) == 1
        assert one(points, key, reason="stopped", **{"chatpersist.store": "b"}) == 1
        assert one(points, key, reason="disconnected", **{"chatpersist.store": "b"}) == 1
        lags = {k: v[0] for k, v in points["chatpersist.flush.lag"].items()}
        assert lags == {(("chatpersist.store", "a"),): 1, (("chatpersist.store", "b"),): 2}
        mb.close()
        ma.close()
        twice.close()
        assert a._writer.hooks is None and b._writer.hooks is None


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_spill_to_the_journal_and_its_replay(
    store: ChatStore, db_url: str, tmp_path: Path, reader: InMemoryMetricReader
) -> None:
    real = sa.make_url(db_url)
    proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
    url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    sid = store.create_session()
    away = ChatStore(url, journal=tmp_path / "drafts.journal", spill_after=0.3, final_timeout=30)
    metrics = instrument(away, MeterProvider(metric_readers=[reader]))
    try:
        points, _ = read(reader)
        assert one(points, "chatpersist.journal.size") == 0
        with away.draft(sid) as d:
            d.append("flushed ")
            d.flush()
            proxy.cut()
            d.append("while the database is away")
        points, _ = read(reader)
        assert one(points, "chatpersist.journal.spills") == 1
        assert one(points, "chatpersist.journal.size") > 0
        assert one(points, "chatpersist.flush.failures") >= 1
        proxy.restore()
        away.recover()
        points, _ = read(reader)
        assert one(points, "chatpersist.journal.replays") == 1
        assert one(points, "chatpersist.journal.size") == 0
    finally:
        proxy.restore()
        metrics.close()
        away.close()
        proxy.close()
    assert store.get_message(d.message_id).content == "flushed while the database is away"


PROBE = """
import json, sys
{code}
print(json.dumps(sorted(m for m, v in sys.modules.items() if v and m.startswith("opentelemetry"))))
"""


def run(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)],
        capture_output=True, text=True, env=subprocess_env(), timeout=60, check=True,
    )  # fmt: skip
    found: list[str] = json.loads(out.stdout.splitlines()[-1])
    return found


def test_opentelemetry_is_imported_only_to_instrument(tmp_path: Path) -> None:
    assert run("import chatpersist, chatpersist.metrics, chatpersist.cli") == []
    url = f"sqlite:///{tmp_path}/noop.db"
    # Without opentelemetry installed: a no-op, and the store works as before.
    code = (
        "sys.modules['opentelemetry'] = None\n"
        "from chatpersist import ChatStore\n"
        "from chatpersist.metrics import instrument\n"
        f"store = ChatStore({url!r}); store.migrate()\n"
        "m = instrument(store)\n"
        "assert not m.enabled and store._writer.hooks is None\n"
        "with store.draft(store.create_session()) as d:\n"
        "    d.append('text')\n"
        "m.close(); store.close()\n"
    )
    assert run(code) == []


def test_every_instrument_is_documented() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    rows = {
        cells[0].strip("` "): [c.strip("` ") for c in cells]
        for line in doc.splitlines()
        if line.startswith("| `chatpersist.")
        for cells in [line.strip("|").split("|")]
    }
    for m in INSTRUMENTS:
        assert re.fullmatch(r"chatpersist(\.[a-z_]+)+", m.name), m.name
        assert m.name in rows, f"{m.name} is not in docs/operations.md"
        name, kind, unit, attributes = rows[m.name][:4]
        assert (kind.lower().replace(" ", "").replace("(observable)", ""), unit) == (
            m.kind, m.unit
        ), m.name
        assert attributes == (", ".join(m.attributes) or "-"), m.name
    assert set(rows) == {m.name for m in INSTRUMENTS}
