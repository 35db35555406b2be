"""The database goes away mid-stream: cut connections, killed sessions, a held lock."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import CRASH_WRITER, OffsetClock, fresh_database, wait_until
from tcp_proxy import TcpProxy

from chatpersist import COMPLETE, ChatStore
from chatpersist._journal import Journal

SERVER_BACKENDS = ["postgresql", "mysql"]


@pytest.fixture(params=SERVER_BACKENDS)
def server_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database(str(request.param), tmp_path)


def through(proxy: TcpProxy, url: str) -> str:
    return sa.make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


def stream_in_background(d: object, stop: threading.Event, counter: list[int]) -> threading.Thread:
    def run() -> None:
        i = 0
        while not stop.is_set():
            d.append(f"w{i} ")  # type: ignore[attr-defined]
            i += 1
            counter[0] = i
            time.sleep(0.01)

    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.slow
def test_outage_of_10_s_loses_nothing(server_url: str, tmp_path: Path) -> None:
    real = sa.make_url(server_url)
    proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
    journal = tmp_path / "journal.jsonl"
    store = ChatStore(
        through(proxy, server_url),
        every_chunks=5,
        every_seconds=0.2,
        journal=journal,
        spill_after=3,
    )
    try:
        store.migrate()
        sid = store.create_session()
        stop = threading.Event()
        count = [0]
        with store.draft(sid) as d:
            t = stream_in_background(d, stop, count)
            wait_until(lambda: count[0] > 20, what="stream start")
            proxy.cut()
            before = count[0]
            time.sleep(10)
            during = count[0] - before
            proxy.restore()
            # The user's stream went on while the database was away.
            assert during > 200, during
            assert store.stats.spilled > 0  # past spill_after, drafts went to the journal
            wait_until(
                lambda: store.get_message(d.message_id).content.count(" ") >= count[0] - 50,
                timeout=20,
                what="recovery",
            )
            stop.set()
            t.join()
        m = store.get_message(d.message_id)
        assert (m.content, m.status) == (d.text, COMPLETE)
        assert m.content == "".join(f"w{i} " for i in range(count[0]))
        assert journal.stat().st_size == 0  # replayed and forgotten
        assert store.stats.failures > 0
    finally:
        store.close()
        proxy.close()


@pytest.mark.slow
def test_crash_during_outage_is_recovered_from_the_journal(server_url: str, tmp_path: Path) -> None:
    real = sa.make_url(server_url)
    proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
    journal = tmp_path / "journal.jsonl"
    with ChatStore(server_url) as store:
        store.migrate()
        sid = store.create_session()
    mid = f"j-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(CRASH_WRITER),
            through(proxy, server_url),
            sid,
            mid,
            "5",
            "0.2",
            "0.01",
            str(journal),
            "2",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "open"
        time.sleep(0.3)
        proxy.cut()
        wait_until(
            lambda: journal.exists() and journal.stat().st_size > 0,
            timeout=20,
            what="spill to the journal",
        )
        time.sleep(0.5)
        proc.kill()
        proc.wait()
    finally:
        proxy.close()
    records = [asdict(r) for r in Journal(journal).latest()]
    newest = max(records, key=lambda r: r["seq"])
    with ChatStore(server_url) as plain:
        in_db_before = plain.get_message(mid)
    # The journal is never behind the database. It is usually ahead (text only it has),
    # but not always: when the cut loses the reply of a COMMIT that landed, the writer
    # spills that same text, and the journal and the database both hold it.
    assert newest["seq"] >= in_db_before.seq
    assert newest["content"].startswith(in_db_before.content)
    saved = tmp_path / "journal-copy.jsonl"
    saved.write_bytes(journal.read_bytes())
    # The next start with the same journal replays it.
    with ChatStore(server_url, journal=journal) as again:
        m = again.get_message(mid)
        assert again.stats.replayed >= 1
    # Nothing lost: the database now holds all the text the journal had, in order.
    assert m.content == newest["content"] and m.seq == newest["seq"]
    assert "".join(f"w{i} " for i in range(m.content.count(" "))) == m.content
    # Replaying the same journal again changes nothing (idempotent).
    with ChatStore(server_url, journal=saved) as twice:
        m2 = twice.get_message(mid)
    assert (m2.content, m2.seq, m2.status) == (m.content, m.seq, m.status)
    assert saved.stat().st_size == 0
    later = ChatStore(server_url, clock=OffsetClock(31))
    assert later.get_message(mid).interrupted  # once the lease has passed
    later.close()
    assert journal.stat().st_size == 0


def test_server_kills_our_connection(server_url: str) -> None:
    url = sa.make_url(server_url)
    tag = f"cpvictim{uuid.uuid4().hex[:6]}"
    if url.get_backend_name() == "postgresql":
        url = url.update_query_dict({"application_name": tag})
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    db = url.database

    def kill() -> int:
        with admin.connect() as conn:
            if url.get_backend_name() == "postgresql":
                return len(
                    conn.execute(
                        sa.text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = :t"
                        ),
                        {"t": tag},
                    ).all()
                )
            ids = (
                conn.execute(
                    sa.text(
                        "SELECT id FROM information_schema.processlist"
                        " WHERE db = :d AND id <> CONNECTION_ID()"
                    ),
                    {"d": db},
                )
                .scalars()
                .all()
            )
            for i in ids:
                conn.execute(sa.text(f"KILL {int(i)}"))
            return len(ids)

    with ChatStore(url, every_chunks=3, every_seconds=0.1) as store:
        store.migrate()
        sid = store.create_session()
        killed = 0
        with store.draft(sid) as d:
            for i in range(300):
                d.append(f"k{i} ")
                time.sleep(0.005)
                if i % 100 == 50:
                    killed += kill()
        assert killed >= 1
        m = store.get_message(d.message_id)
        assert (m.content, m.status) == ("".join(f"k{i} " for i in range(300)), COMPLETE)
    admin.dispose()


@pytest.mark.slow
def test_sqlite_locked_by_another_process_for_5_s(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/locked.db"
    with ChatStore(url, every_chunks=2, every_seconds=0.1) as store:
        store.migrate()
        sid = store.create_session()
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sqlite3, sys, time\n"
                "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                "c.execute('BEGIN IMMEDIATE'); c.execute('CREATE TABLE IF NOT EXISTS hold(x)')\n"
                "print('locked', flush=True); time.sleep(5); c.execute('COMMIT')",
                f"{tmp_path}/locked.db",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        with store.draft(sid) as d:
            d.append("before ")
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            start = time.monotonic()
            for i in range(100):
                d.append(f"x{i} ")  # never raises into the stream
                time.sleep(0.01)
        waited = time.monotonic() - start
        holder.wait()
        m = store.get_message(d.message_id)
        assert m.content == "before " + "".join(f"x{i} " for i in range(100))
        assert m.status == COMPLETE and waited > 4  # the final flush waited for the lock
