"""chatpersist at scale: big tables, many processes, many streams in one process.

    python -m benchmarks.scale                  # everything (about 8 minutes on 2 cores)
    python -m benchmarks.run --scale            # the same
    python -m benchmarks.scale --only queries   # one part: queries, import, flush, procs, loop
    python -m benchmarks.scale --show           # the table of the last run again

Parts (docs/benchmarks.md says what each figure means):

- **queries**: 100,000 messages of 20 KB (500 sessions of 200) on SQLite, PostgreSQL
  and MariaDB, loaded with bulk INSERT ... SELECT; then `sessions(limit=20)`,
  `audit_stats()`, `history()` of one session and `sweep()`, timed.
- **import**: `import chatpersist` in a fresh interpreter, and which heavy modules it
  brought in (alembic, model SDKs).
- **flush**: what a flush costs on PostgreSQL: 1,000 drafts due at once (20 new
  chunks each, the default throttle), by the length of the text already stored: the
  writer thread's CPU, the database backends' CPU and the WAL, per flushed row.
- **procs**: 4 worker processes x 5,000 async streams on one PostgreSQL database,
  chatpersist beside save-on-finish in the same run (the stream workload of
  `benchmarks.run`): rate, flush lag, loop lag, connections per process (from
  `pg_stat_activity`), memory per open draft, CPU by thread and the database's CPU.
- **loop**: event-loop lag p99 at 1,000 and 10,000 async streams in one process, and
  `append` p50 at one stream (async and threads), each beside save-on-finish; the
  10,000-stream case also with `gc.freeze()` after start-up.

Results go to benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from chatpersist import ChatStore
from chatpersist._schema import COMPLETE, STREAMING, LongText, Timestamp

from .run import (
    PG,
    RESULTS,
    GcWatch,
    Poller,
    answer_chunks,
    drive,
    flush_lags,
    fresh_db,
    make_strategy,
    pct,
)
from .strategies import EVERY_CHUNKS, EVERY_SECONDS

MYSQL = os.environ.get(
    "CHATPERSIST_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
)
DBS = ["sqlite", "postgresql", "mysql"]
DB_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB"}
MESSAGES = 100_000
SIZE = 20 * 1024
PER_SESSION = 200
POOL = 64  # distinct texts; row i gets text i % POOL (each stored on its own)
TARGETS_MS = {"sessions": 20.0, "audit_stats": 200.0, "history": 20.0}
HEAVY = ("alembic", "openai", "anthropic", "litellm", "langchain", "langchain_core")


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def load_avg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# -- big tables --


@contextmanager
def scratch_db(kind: str, tmp: str) -> Iterator[str]:
    """A fresh, empty database (PostgreSQL schema, MariaDB database, SQLite file),
    dropped afterwards."""
    name = f"bench_scale_{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/{name}.db"
        return
    if kind == "postgresql":
        admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
        create, drop = f'CREATE SCHEMA "{name}"', f'DROP SCHEMA "{name}" CASCADE'
        url = sa.make_url(PG).update_query_dict({"options": f"-csearch_path={name}"})
    else:
        admin = sa.create_engine(MYSQL, isolation_level="AUTOCOMMIT")
        create = f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"
        drop = f"DROP DATABASE `{name}`"
        url = sa.make_url(MYSQL).set(database=name)
    with admin.connect() as c:
        c.execute(sa.text(create))
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(drop))
        admin.dispose()


def texts(size: int) -> list[str]:
    return ["".join(answer_chunks(1000 + k, size))[:size] for k in range(POOL)]


def plan(
    n: int, per_session: int, now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Sessions and message rows (without their text: `k` names it), spread over the
    last 30 days; assistant answers end as apps see them end."""
    rng = random.Random(20)
    n_sessions = max(1, n // per_session)
    span = timedelta(days=30)
    sessions: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for s in range(n_sessions):
        start = now - span + span * s / n_sessions
        sid = f"s{s:05d}"
        last = start + timedelta(seconds=20 * (per_session - 1))
        sessions.append(
            {"id": sid, "title": f"session {s}", "created_at": start, "updated_at": last}
        )
    models = ["model-a", "model-b", "model-c"]
    for i in range(n):
        s, j = divmod(i, per_session)
        created = sessions[min(s, n_sessions - 1)]["created_at"] + timedelta(seconds=20 * j)
        row = {"n": i, "k": i % POOL, "id": f"m{i:07d}", "session_id": f"s{min(s, n_sessions - 1):05d}",
               "role": "user", "status": COMPLETE, "finish_reason": None, "seq": 0,
               "created_at": created, "updated_at": created, "model": None}  # fmt: skip
        if i % 2:
            row.update(role="assistant", model=rng.choice(models), finish_reason="stop", seq=12)
            r = rng.random()
            if r < 0.02:
                row["finish_reason"] = "length"
            elif r < 0.06:  # cut: Stop, a client gone, a provider error
                row.update(
                    status=STREAMING, finish_reason=rng.choice(["stopped", "disconnected", "error"])
                )
            elif r < 0.09:  # the worker died: the heartbeat stopped
                row.update(
                    status=STREAMING, finish_reason=None, updated_at=created + timedelta(seconds=8)
                )
            elif r < 0.10:
                row.update(status=STREAMING, finish_reason="abandoned")
        rows.append(row)
    return sessions, rows


def load(
    url: str, kind: str, n: int, size: int, per_session: int, lz4: bool = False
) -> dict[str, Any]:
    """Create chatpersist's tables and fill them: the rows' metadata through a staging
    table, the texts joined in on the server (INSERT ... SELECT, 10,000 rows a statement).
    `lz4`: PostgreSQL compresses the texts with lz4 (proposed), not pglz."""
    t0 = time.perf_counter()
    store = ChatStore(url)
    store.migrate()
    L = store.layout
    store.close()
    store.engine.dispose()
    now = datetime.now(UTC).replace(tzinfo=None)
    sessions, rows = plan(n, per_session, now)
    engine = sa.create_engine(url)
    md = sa.MetaData()
    pool = sa.Table(
        "bench_pool",
        md,
        sa.Column("k", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("t", LongText),
    )
    staging = sa.Table(
        "bench_rows", md,
        sa.Column("n", sa.Integer, primary_key=True, autoincrement=False), sa.Column("k", sa.Integer),
        sa.Column("id", sa.String(64)), sa.Column("session_id", sa.String(64)),
        sa.Column("role", sa.String(16)), sa.Column("status", sa.String(16)),
        sa.Column("finish_reason", sa.String(64)), sa.Column("seq", sa.Integer),
        sa.Column("created_at", Timestamp), sa.Column("updated_at", Timestamp),
        sa.Column("model", sa.String(64)),
    )  # fmt: skip
    with engine.connect() as conn:
        if lz4:
            conn.exec_driver_sql(
                "ALTER TABLE chatpersist_messages ALTER COLUMN content SET COMPRESSION lz4"
            )
            conn.exec_driver_sql("SET default_toast_compression = lz4")  # the staged texts too
        if kind == "sqlite":  # new pages need no journal; back to WAL afterwards
            conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
        md.create_all(conn)
        conn.execute(sa.insert(pool), [{"k": k, "t": t} for k, t in enumerate(texts(size))])
        assert L.sessions is not None
        conn.execute(sa.insert(L.sessions), sessions)
        for i in range(0, len(rows), 5000):
            conn.execute(sa.insert(staging), rows[i : i + 5000])
        conn.commit()
        names = [
            "id",
            "session_id",
            "role",
            "status",
            "finish_reason",
            "seq",
            "created_at",
            "updated_at",
            "model",
        ]
        for lo in range(0, n, 10_000):
            select = (
                sa.select(*[staging.c[c] for c in names], pool.c.t)
                .join(pool, pool.c.k == staging.c.k)
                .where(staging.c.n >= lo, staging.c.n < lo + 10_000)
            )
            conn.execute(sa.insert(L.messages).from_select([*names, "content"], select))
            conn.commit()
        md.drop_all(conn)
        conn.commit()
    loaded = time.perf_counter() - t0
    # What autovacuum / a DBA does after a bulk load: fresh statistics.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if kind == "postgresql":
            conn.exec_driver_sql("VACUUM ANALYZE chatpersist_messages")
            conn.exec_driver_sql("VACUUM ANALYZE chatpersist_sessions")
            size_bytes = conn.exec_driver_sql(
                "SELECT pg_total_relation_size('chatpersist_messages')"
            ).scalar()
        elif kind == "mysql":
            conn.exec_driver_sql("ANALYZE TABLE chatpersist_messages, chatpersist_sessions").all()
            size_bytes = conn.exec_driver_sql(
                "SELECT data_length + index_length FROM information_schema.tables"
                " WHERE table_schema = DATABASE() AND table_name = 'chatpersist_messages'"
            ).scalar()
        else:
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            size_bytes = os.path.getsize(sa.make_url(url).database or "")
    engine.dispose()
    return {"load_s": loaded, "analyze_s": time.perf_counter() - t0 - loaded,
            "table_mb": int(size_bytes or 0) / 2**20, "sessions": len(sessions)}  # fmt: skip


def timed(fn: Callable[[int], Any], reps: int) -> dict[str, Any]:
    """The first call (caches as the load left them), then `reps` more: p50 and max."""
    t = time.perf_counter()
    fn(0)
    first = time.perf_counter() - t
    times = []
    for i in range(1, reps + 1):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return {"first_ms": first * 1e3, "p50_ms": statistics.median(times) * 1e3,
            "max_ms": max(times) * 1e3, "reps": reps}  # fmt: skip


#: Changes outside the benchmark proposed for SQLite, measured beside the shipped
#: settings: a memory-mapped file (a connection PRAGMA), or an index that covers the
#: columns `sessions()` and `audit_stats()` count from (a migration).
PROPOSALS = ("mmap", "index")
MMAP = "PRAGMA mmap_size=4294967296"


def counting_columns(store: ChatStore) -> list[str]:
    """The columns of the proposed covering index: the session, every column the rule
    of "interrupted" reads (`Loader.interrupted`), and what the counts group by."""
    L = store.layout
    rule = {c.name for c in sa.sql.visitors.iterate(store.loader.interrupted())
            if isinstance(c, sa.Column)}  # fmt: skip
    names = [L.session_id.name, L.status.name, L.finish_reason.name]
    names += sorted(rule - set(names))
    return names + [c.name for c in (L.created_at, L.updated_at, L.role, L.model)
                    if c is not None and c.name not in names]  # fmt: skip


def proposal_store(url: str, name: str) -> ChatStore:
    store = ChatStore(url)
    if name == "mmap":

        @sa.event.listens_for(store.engine, "connect")
        def _mmap(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute(MMAP)

    elif name == "index":
        columns = ", ".join(counting_columns(store))
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE INDEX ix_bench_counts ON chatpersist_messages ({columns})"
            )
            conn.exec_driver_sql("ANALYZE")
    return store


def measure_counts(url: str, proposal: str) -> dict[str, Any]:
    store = proposal_store(url, proposal)
    try:
        return {
            "index": counting_columns(store) if proposal == "index" else None,
            "sessions": timed(lambda i: store.sessions(limit=20), 30),
            "audit_stats": timed(lambda i: store.audit_stats(), 10),
        }
    finally:
        store.close()
        store.engine.dispose()


def measure_queries(url: str, n_sessions: int) -> dict[str, Any]:
    store = ChatStore(url)
    try:
        out: dict[str, Any] = {}
        out["sessions"] = timed(lambda i: store.sessions(limit=20), 30)
        stats = store.audit_stats()
        out["audit_stats"] = timed(lambda i: store.audit_stats(), 10)
        out["audit_stats"]["groups"] = len(stats)
        # A different session each call (not read since the load: on MariaDB its
        # texts are not in the buffer pool), then one session again and again.
        sids = [f"s{(n_sessions // 2 + 7 * i) % n_sessions:05d}" for i in range(31)]
        sizes: list[int] = []
        out["history"] = timed(lambda i: sizes.append(len(store.history(sids[i]))), 30)
        out["history"]["messages"] = sizes[-1]
        out["history_again"] = timed(lambda i: store.history(sids[0]), 30)
        t = time.perf_counter()
        swept = store.sweep()
        out["sweep"] = {"first_ms": (time.perf_counter() - t) * 1e3, "rows": swept}
        t = time.perf_counter()
        store.sweep()
        out["sweep"]["again_ms"] = (time.perf_counter() - t) * 1e3
        return out
    finally:
        store.close()
        store.engine.dispose()


def queries_one(kind: str, n: int, size: int, per_session: int) -> dict[str, Any]:
    """One database: load, measure, drop (in its own process)."""
    with tempfile.TemporaryDirectory() as tmp, scratch_db(kind, tmp) as url:
        log(f"  {DB_NAMES[kind]}: loading {n:,} messages of {size:,} bytes ...")
        info = load(url, kind, n, size, per_session)
        log(
            f"  {DB_NAMES[kind]}: loaded in {info['load_s']:.0f} s ({info['table_mb']:,.0f} MB); measuring"
        )
        out = {
            "db": kind,
            "messages": n,
            "size": size,
            **info,
            **measure_queries(url, info["sessions"]),
        }
        if kind == "sqlite":
            out["proposals"] = {name: measure_counts(url, name) for name in PROPOSALS}
    if kind == "postgresql":  # the texts compressed with lz4 (proposed): reads decompress faster
        with tempfile.TemporaryDirectory() as tmp, scratch_db(kind, tmp) as url:
            log(f"  {DB_NAMES[kind]}: again, texts compressed with lz4 ...")
            info = load(url, kind, n, size, per_session, lz4=True)
            out["proposals"] = {
                "lz4": {"table_mb": info["table_mb"], **measure_queries(url, info["sessions"])}
            }
    return {**out, "load_avg": load_avg()}


# -- import --

IMPORT_PROBE = """
import sys, time, json
t = time.perf_counter()
import {module}
took = time.perf_counter() - t
print(json.dumps({{"s": took, "modules": sorted({{m.split(".")[0] for m in sys.modules}})}}))
"""


def import_time(module: str, runs: int = 7) -> dict[str, Any]:
    """`import module` in fresh interpreters (the first run warms the file cache and
    the bytecode; the median of the others is reported)."""
    took, modules = [], []
    for _ in range(runs + 1):
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE.format(module=module)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        r = json.loads(out.stdout)
        took.append(r["s"])
        modules = r["modules"]
    return {"module": module, "median_ms": statistics.median(took[1:]) * 1e3,
            "max_ms": max(took[1:]) * 1e3, "runs": runs,
            "heavy": [m for m in HEAVY if m in modules],
            "httpx": "httpx" in modules, "modules": len(modules)}  # fmt: skip


def import_part() -> dict[str, Any]:
    return {"chatpersist": import_time("chatpersist"), "sqlalchemy": import_time("sqlalchemy"),
            "load_avg": load_avg()}  # fmt: skip


# -- many processes on one PostgreSQL --

WORKERS = 4
PROC_STREAMS = 5000
PROC_SIZE = 2048


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, by name (the event loop is MainThread)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = "loop" if int(tid) == os.getpid() else name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def process_cpu(pids: list[int]) -> float:
    """CPU seconds of other processes (PostgreSQL backends), summed."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Statements:
    """Statements the engine ran while streaming: count, rows and wall time by kind."""

    def __init__(self, engine: sa.Engine) -> None:
        self.on = False
        self.by_kind: dict[str, list[float]] = {}
        self.commits = 0
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)
        sa.event.listen(engine, "commit", self._commit)

    def _before(self, conn: Any, *args: Any) -> None:
        conn.info["bench_t"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, stmt: str, *args: Any) -> None:
        if self.on:
            kind = stmt.lstrip().split(None, 1)[0].upper()
            k = self.by_kind.setdefault(kind, [0, 0, 0.0])
            k[0] += 1
            k[1] += max(cursor.rowcount, 0)
            k[2] += time.perf_counter() - conn.info.pop("bench_t", time.perf_counter())

    def _commit(self, conn: Any) -> None:
        if self.on:
            self.commits += 1


def with_app(url: str, app: str) -> str:
    """`url` naming its connections `app` (pg_stat_activity tells processes apart)."""
    u = sa.make_url(url).update_query_dict({"application_name": app})
    return u.render_as_string(hide_password=False)


def worker(strategy_name: str, url: str, streams: int, size: int, app: str) -> dict[str, Any]:
    """One of the processes: opens its streams, says "ready", waits for "go" on stdin
    (all processes stream together), streams, ends them."""
    store = ChatStore(with_app(url, app), every_chunks=EVERY_CHUNKS, every_seconds=EVERY_SECONDS)
    strategy = make_strategy(strategy_name, store)
    rss: dict[str, int] = {}
    cpu: dict[str, dict[str, float]] = {}
    statements = Statements(store.engine)

    async def ready(phase: str) -> None:
        if phase == "ended":
            statements.on = False
            cpu["ended"] = thread_cpu()
            print("ended", flush=True)
            return
        gc.collect()
        rss[phase] = rss_bytes()
        if phase == "streaming":
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            cpu["streaming"] = thread_cpu()
            statements.on = True

    watch = GcWatch()
    cpu0 = os.times()
    r = asyncio.run(drive(strategy, store, streams, size, True, "async", ready))
    cpu1 = os.times()
    ids = [a.message_id for a in r["answers"]]
    store.close()
    # Flush lag from every tenth stream's samples (the others add time, not information).
    marks = [m for m in r["marks"] if m[0] % 10 == 0]
    return {
        "strategy": strategy_name, "app": app, "streams": streams, "chunks": r["chunks"],
        "elapsed_s": r["elapsed"], "window": r["window"],
        "sustained": r["chunks"] / (r["elapsed"] * 30.0 * streams),
        "append_p50_us": pct(r["costs"], 50) * 1e6, "append_p99_us": pct(r["costs"], 99) * 1e6,
        "loop_lag_p99_ms": pct(r["lags"], 99) * 1e3,
        "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        "rss_open_mb": rss["opening"] / 2**20, "rss_streaming_mb": rss["streaming"] / 2**20,
        "bytes_per_open_draft": (rss["streaming"] - rss["opening"]) / streams,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ids": ids, "marks": marks, **watch.summary(r["window"]),
        # While streaming: CPU by thread, statements by kind [count, rows, seconds].
        "thread_cpu_s": {k: v - cpu["streaming"].get(k, 0.0) for k, v in cpu["ended"].items()},
        "statements": statements.by_kind, "commits": statements.commits,
        "writer": vars(store.stats) if hasattr(store, "stats") else None,
    }  # fmt: skip


def server_probe(prefix: str, before: dict[str, Any] | None = None) -> dict[str, Any]:
    """PostgreSQL's side: CPU of the backends serving the workers, of every postgres
    process (other clients of the server included), and WAL written; as differences
    from `before` when given."""
    engine = sa.create_engine(PG)
    with engine.connect() as c:
        pids = [int(p) for (p,) in c.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE application_name LIKE :p"),
            {"p": prefix + "%"})]  # fmt: skip
        lsn = c.execute(sa.text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")).scalar()
    engine.dispose()
    everything = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "postgres":
                        everything.append(int(pid))
            except OSError:
                pass
    now = {"t": time.perf_counter(), "pids": pids, "backends_cpu_s": process_cpu(pids),
           "all_postgres_cpu_s": process_cpu(everything), "wal_bytes": int(lsn or 0)}  # fmt: skip
    if before is None:
        return now
    # the same backends as at the start (a pool may open more: counted from 0)
    fresh = [p for p in pids if p not in before["pids"]]
    return {
        "seconds": now["t"] - before["t"],
        "backends": len(set(pids) | set(before["pids"])),
        "backends_cpu_s": process_cpu(before["pids"])
        + process_cpu(fresh)
        - before["backends_cpu_s"],
        "all_postgres_cpu_s": now["all_postgres_cpu_s"] - before["all_postgres_cpu_s"],
        "wal_bytes": now["wal_bytes"] - before["wal_bytes"],
    }


class Connections:
    """Samples pg_stat_activity every 0.2 s: the most backends each process held."""

    def __init__(self, prefix: str) -> None:
        self.engine = sa.create_engine(PG)
        self.prefix = prefix
        self.peak: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        q = sa.text(
            "SELECT application_name, count(*) FROM pg_stat_activity"
            " WHERE application_name LIKE :p GROUP BY application_name"
        )
        while not self.stop.is_set():
            with self.engine.connect() as c:
                for app, n in c.execute(q, {"p": self.prefix + "%"}).all():
                    self.peak[app] = max(self.peak.get(app, 0), int(n))
            time.sleep(0.2)

    def __enter__(self) -> Connections:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.engine.dispose()


def procs_one(strategy_name: str, workers: int, streams: int, size: int) -> dict[str, Any]:
    """`workers` processes x `streams` async streams of one strategy on one fresh
    PostgreSQL schema; a poller process reads what is committed, for the flush lag."""
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = fresh_db("postgresql", tmp)
        try:
            setup = ChatStore(url)
            setup.migrate()
            setup.close()
            setup.engine.dispose()
            poller = Poller(url, every=0.25)
            poller.start()
            prefix = f"scale-{strategy_name}-{uuid.uuid4().hex[:6]}-"
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.scale",
                        "--worker",
                        strategy_name,
                        url,
                        str(streams),
                        str(size),
                        f"{prefix}w{k}",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )  # fmt: skip
                for k in range(workers)
            ]
            with Connections(prefix) as conns:
                for proc in procs:
                    assert proc.stdout is not None
                    if proc.stdout.readline().strip() != "ready":
                        raise RuntimeError("a worker failed before streaming")
                server = server_probe(prefix)
                for proc in procs:
                    assert proc.stdin is not None
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                for proc in procs:
                    assert proc.stdout is not None
                    if proc.stdout.readline().strip() != "ended":
                        raise RuntimeError("a worker failed while streaming")
                server = server_probe(prefix, server)
                outs = []
                for proc in procs:
                    out, _ = proc.communicate(timeout=600)
                    if proc.returncode != 0:
                        raise RuntimeError(f"worker exited with {proc.returncode}")
                    outs.append(json.loads(out.splitlines()[-1]))
            time.sleep(0.3)
            seen = poller.finish()
        finally:
            drop()
    lags: list[float] = []
    for o in outs:
        lags += flush_lags([tuple(m) for m in o.pop("marks")], o.pop("ids"), seen)  # type: ignore[misc]
        o["connections_peak"] = conns.peak.get(o["app"], 0)
    start = min(o["window"][0] for o in outs)
    end = max(o["window"][1] for o in outs)
    chunks = sum(o["chunks"] for o in outs)
    return {
        "strategy": strategy_name, "workers": workers, "streams_each": streams, "answer_bytes": size,
        # Chunks appended over what all streams asked for (30/s each) while any appended.
        "sustained": chunks / ((end - start) * 30.0 * streams * workers),
        "sustained_min_worker": min(o["sustained"] for o in outs),
        "chunks_per_s": chunks / (end - start),
        "flush_lag_p50_s": pct(lags, 50) if lags else None,
        "flush_lag_p99_s": pct(lags, 99) if lags else None,
        "loop_lag_p99_ms_max": max(o["loop_lag_p99_ms"] for o in outs),
        "append_p50_us": statistics.median(o["append_p50_us"] for o in outs),
        "connections_per_process": [o["connections_peak"] for o in outs],
        "bytes_per_open_draft": statistics.median(o["bytes_per_open_draft"] for o in outs),
        "cpu_s_per_1k_chunks": sum(o["cpu_s"] for o in outs) / chunks * 1000,
        "server": server, "workers_detail": outs, "load_avg": load_avg(),
    }  # fmt: skip


def draft_memory(strategy_name: str, n: int = 500, pieces: int = 512) -> dict[str, Any]:
    """Python heap (tracemalloc) per answer beyond its text: open, then after `pieces`
    new 4-character strings each (a 2 KB answer), written as the strategy writes."""
    import tracemalloc

    with tempfile.TemporaryDirectory() as tmp:
        url, drop = fresh_db("postgresql", tmp)
        try:
            store = ChatStore(url, every_chunks=EVERY_CHUNKS, every_seconds=EVERY_SECONDS)
            store.migrate()
            strategy = make_strategy(strategy_name, store)

            async def run() -> tuple[int, int, int]:
                sids = [store.create_session() for _ in range(n // 100)]
                native = hasattr(strategy, "open_async")
                gc.collect()
                tracemalloc.start()
                base = tracemalloc.get_traced_memory()[0]
                answers = []
                for i in range(n):
                    sid = sids[i % len(sids)]
                    answers.append(await strategy.open_async(sid) if native else strategy.open(sid))
                gc.collect()
                opened = tracemalloc.get_traced_memory()[0]
                for k in range(pieces):
                    for i, a in enumerate(answers):
                        a.append(f"{(i + k) % 10000:04d}")  # a new str, as from a model's SDK
                    if k % 20 == 19:
                        await asyncio.sleep(0.05)  # the writer flushes meanwhile
                await asyncio.sleep(EVERY_SECONDS + 1)
                gc.collect()
                full = tracemalloc.get_traced_memory()[0]
                tracemalloc.stop()
                await asyncio.gather(
                    *(a.aclose() if native else asyncio.to_thread(a.close) for a in answers)
                )
                return base, opened, full

            base, opened, full = asyncio.run(run())
            store.close()
        finally:
            drop()
    text = 4 * pieces
    return {"strategy": strategy_name, "drafts": n, "answer_chars": text,
            "bytes_open": (opened - base) / n,
            "bytes_beyond_text": (full - base) / n - text}  # fmt: skip


# -- the cost of a flush on PostgreSQL, by the length of the text already stored --

FLUSH_DRAFTS = 1000
FLUSH_LENGTHS = (512, 2048, 8192, 20480)


#: Storage of the text column, measured beside the shipped one (proposals: a migration).
FLUSH_STORAGE = {
    "pglz": None,  # PostgreSQL's default compression of long values
    "lz4": "ALTER TABLE chatpersist_messages ALTER COLUMN content SET COMPRESSION lz4",
}


def flush_cost(
    drafts: int = FLUSH_DRAFTS, rounds: int = 6, storage: str = "pglz"
) -> dict[str, Any]:
    """`drafts` open drafts whose stored text is `length` characters (the benchmark's
    words, which PostgreSQL compresses about as well as prose), all due at once (20 new
    chunks each, the default throttle): what a round of their flushes costs the writer
    thread, the database's backends and its WAL, per flushed row."""
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = fresh_db("postgresql", tmp)
        try:
            app = f"scale-flush-{uuid.uuid4().hex[:6]}"
            store = ChatStore(
                with_app(url, app), every_chunks=EVERY_CHUNKS, every_seconds=EVERY_SECONDS
            )
            store.migrate()
            if FLUSH_STORAGE[storage]:
                with store.engine.begin() as conn:
                    conn.exec_driver_sql(str(FLUSH_STORAGE[storage]))
            statements = Statements(store.engine)
            sids = [store.create_session() for _ in range(drafts // 100)]
            opened = [store.draft(sids[i % len(sids)]) for i in range(drafts)]
            texts = ["".join(answer_chunks(i, max(FLUSH_LENGTHS))) for i in range(drafts)]
            for d in opened:
                d.__enter__()

            def flush_round() -> None:
                seqs = [d.seq for d in opened]
                for d in opened:
                    for _k in range(EVERY_CHUNKS):
                        d.append("abcd")
                while any(d.seq == s0 for d, s0 in zip(opened, seqs, strict=True)):
                    time.sleep(0.002)

            for length in FLUSH_LENGTHS:
                for d, text in zip(opened, texts, strict=True):  # top the text up to `length`
                    d.append(text[len(d.text) : length])
                for d in opened:
                    d.flush(timeout=120)
                flush_round()  # pages touched once since the top-up (full-page writes)
                statements.by_kind.clear()
                statements.on = True
                tx0, rows0 = store.stats.transactions, store.stats.flushes
                cpu0 = sum(v for k, v in thread_cpu().items() if k != "loop")
                server0 = server_probe(app)
                t = time.perf_counter()
                for _ in range(rounds):
                    flush_round()
                wall = time.perf_counter() - t
                server = server_probe(app, server0)
                cpu1 = sum(v for k, v in thread_cpu().items() if k != "loop")
                statements.on = False
                rows = store.stats.flushes - rows0
                update = statements.by_kind.get("UPDATE", [0, 0, 0.0])
                out.append({
                    "length": length, "rows": rows, "transactions": store.stats.transactions - tx0,
                    "writer_cpu_us_per_row": (cpu1 - cpu0) / rows * 1e6,
                    "db_cpu_us_per_row": server["backends_cpu_s"] / rows * 1e6,
                    "wal_bytes_per_row": server["wal_bytes"] / rows,
                    "update_statements": update[0],
                    "update_ms_per_1000_rows": update[2] / max(update[1], 1) * 1e6,
                    "round_s": wall / rounds,
                })  # fmt: skip
                log(f"  {length:>6} characters: {out[-1]['db_cpu_us_per_row']:.0f} µs database CPU, "
                    f"{out[-1]['wal_bytes_per_row']:,.0f} B WAL, {out[-1]['writer_cpu_us_per_row']:.0f} µs "
                    f"writer CPU per row; {out[-1]['transactions'] / rounds:.1f} transactions a round")  # fmt: skip
            for d in opened:
                d.__exit__(None, None, None)
            store.close()
        finally:
            drop()
    return {
        "drafts": drafts,
        "rounds": rounds,
        "storage": storage,
        "by_length": out,
        "load_avg": load_avg(),
    }


# -- one process: loop lag and append cost, beside save-on-finish --

#: (streams, answer bytes, mode, gc.freeze() after start-up); PostgreSQL, paced. Each
#: beside save-on-finish (without gc.freeze(): the baseline as it is).
LOOP_CASES = [
    (1, 600, "async", False),
    (1, 600, "threads", False),
    (1000, 1200, "async", False),
    (10_000, 600, "async", False),
    (10_000, 600, "async", True),
]


def loop_one(
    strategy_name: str, streams: int, size: int, mode: str, freeze: bool
) -> dict[str, Any]:
    env = {**os.environ, "BENCH_GC_FREEZE": "1" if freeze else "0"}
    args = [strategy_name, "postgresql", str(streams), str(size), mode, "1"]
    out = subprocess.run([sys.executable, "-m", "benchmarks.run", "--one", *args],
                         capture_output=True, text=True, timeout=900, env=env)  # fmt: skip
    if out.returncode != 0:
        log(f"  FAILED: {' '.join(args)}: {out.stderr[-1500:]}")
        return {"error": out.stderr[-1500:], "args": args}
    r = dict(json.loads(out.stdout.splitlines()[-1]))
    r["load_avg"] = load_avg()
    return r


# -- the parts, each in child processes --


def run_child(args: list[str], timeout: float = 900) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    lines = out.stderr.splitlines()
    if out.returncode != 0:
        tail = "\n".join(line[:300] for line in lines[-12:])
        log(f"  FAILED: {' '.join(args)}\n{tail}")
        return {"error": tail, "args": args}
    log("\n".join(line for line in lines if line.startswith("  ")))
    return dict(json.loads(out.stdout.splitlines()[-1]))


# -- the table --


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f} ms" if v < 100 else f"{v:,.0f} ms"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def rows(results: dict[str, Any]) -> list[list[str]]:
    """The table: measure, case, chatpersist, baseline (save-on-finish), target, met."""
    out: list[list[str]] = []
    for q in results.get("queries", []):
        if "error" in q:
            out.append(["queries", " ".join(q["args"]), "ERROR", "-", "-", "-"])
            continue
        db = DB_NAMES[q["db"]]
        case = f"{db}, {q['messages']:,} x {q['size'] // 1024} KB ({q['table_mb']:,.0f} MB)"
        for key, name in (("sessions", "sessions(limit=20)"), ("audit_stats", "audit_stats()")):
            v = q[key]["p50_ms"]
            out.append([name, case, f"{_ms(v)} (max {_ms(q[key]['max_ms'])})", "-",
                        f"≤ {TARGETS_MS[key]:.0f} ms", _met(v <= TARGETS_MS[key])])  # fmt: skip
        h, again = q["history"], q["history_again"]
        out.append(["history(), 200 messages", f"{case}, a session not read since the load",
                    f"{_ms(h['p50_ms'])} (max {_ms(h['max_ms'])})", "-", "≤ 20 ms",
                    _met(h["p50_ms"] <= 20)])  # fmt: skip
        out.append(["history(), 200 messages", f"{case}, the same session again",
                    f"{_ms(again['p50_ms'])} (max {_ms(again['max_ms'])})", "-", "≤ 20 ms",
                    _met(again["p50_ms"] <= 20)])  # fmt: skip
        out.append(["sweep()", f"{case}, {q['sweep']['rows']:,} drafts marked",
                    f"{_ms(q['sweep']['first_ms'])} (again: {_ms(q['sweep']['again_ms'])})",
                    "-", "-", "-"])  # fmt: skip
        for name, m in q.get("proposals", {}).items():
            label = {"mmap": "with PRAGMA mmap_size (proposed)",
                     "index": "with a covering index (proposed)"}.get(name)  # fmt: skip
            if name == "lz4":
                label = f"texts compressed with lz4 (proposed; {m['table_mb']:,.0f} MB)"
            if "history" in m:
                h = m["history"]
                out.append(["history(), 200 messages", f"{db}, {label}, a session not read since the load",
                            f"{_ms(h['p50_ms'])} (max {_ms(h['max_ms'])})", "-", "≤ 20 ms",
                            _met(h["p50_ms"] <= 20)])  # fmt: skip
                out.append(["history(), 200 messages", f"{db}, {label}, the same session again",
                            _ms(m["history_again"]["p50_ms"]), "-", "≤ 20 ms",
                            _met(m["history_again"]["p50_ms"] <= 20)])  # fmt: skip
            for key, what in (("sessions", "sessions(limit=20)"), ("audit_stats", "audit_stats()")):
                v = m[key]["p50_ms"]
                out.append([what, f"{db}, {label}", _ms(v), "-", f"≤ {TARGETS_MS[key]:.0f} ms",
                            _met(v <= TARGETS_MS[key])])  # fmt: skip
    imp = results.get("import")
    if imp:
        c = imp["chatpersist"]
        out.append(["import chatpersist", "fresh interpreter, median of 7",
                    f"{_ms(c['median_ms'])}; alembic, SDKs: {', '.join(c['heavy']) or 'none'}",
                    f"import sqlalchemy alone: {_ms(imp['sqlalchemy']['median_ms'])}",
                    "no alembic, no SDK", _met(not c["heavy"])])  # fmt: skip
    flush = {f.get("storage"): f for f in results.get("flush", []) if "error" not in f}
    if "pglz" in flush:
        lz4 = {r["length"]: r for r in flush.get("lz4", {}).get("by_length", [])}
        for r in flush["pglz"]["by_length"]:
            alt = lz4.get(r["length"])
            other = (
                f" (content compressed with lz4: {alt['db_cpu_us_per_row']:.0f} µs, {alt['wal_bytes_per_row']:,.0f} B)"
                if alt
                else ""
            )
            out.append(["flush of one draft: database CPU, WAL",
                        f"PostgreSQL, {r['length']:,} characters stored, {flush['pglz']['drafts']:,} drafts due at once",
                        f"{r['db_cpu_us_per_row']:.0f} µs, {r['wal_bytes_per_row']:,.0f} B{other}; writer thread "
                        f"{r['writer_cpu_us_per_row']:.0f} µs", "-", "-", "-"])  # fmt: skip
    ok = [p for p in results.get("procs", []) if "error" not in p]
    for each in sorted({p["streams_each"] for p in ok}, reverse=True):
        procs = {p["strategy"]: p for p in ok if p["streams_each"] == each}
        cp, fin = procs.get("chatpersist"), procs.get("finish")
        if not cp or not fin:
            continue
        case = (f"PostgreSQL, {cp['workers']} processes x {each:,} async streams"
                f" (load {cp['load_avg'].split()[0]})")  # fmt: skip
        ratio = cp["sustained"] / fin["sustained"]
        out.append(["rate", case, f"{cp['sustained']:.1%} ({cp['chunks_per_s']:,.0f} chunks/s)",
                    f"{fin['sustained']:.1%}", "≥ 95% of baseline",
                    f"{_met(ratio >= 0.95)} ({ratio:.1%})"])  # fmt: skip
        out.append(["flush lag p99", case, f"{cp['flush_lag_p99_s']:.2f} s (p50 {cp['flush_lag_p50_s']:.2f} s)",
                    "-", "≤ 2.5 s", _met(cp["flush_lag_p99_s"] <= 2.5)])  # fmt: skip
        out.append(["loop lag p99, worst process", case, _ms(cp["loop_lag_p99_ms_max"]),
                    _ms(fin["loop_lag_p99_ms_max"]), "-", "-"])  # fmt: skip
        out.append(["connections per process (peak)", case,
                    ", ".join(map(str, cp["connections_per_process"])),
                    ", ".join(map(str, fin["connections_per_process"])), "-", "-"])  # fmt: skip
        out.append(["RSS per open answer", case, f"{cp['bytes_per_open_draft']:,.0f} B",
                    f"{fin['bytes_per_open_draft']:,.0f} B", "-", "-"])  # fmt: skip
        out.append(["CPU per 1,000 chunks (all workers)", case, f"{cp['cpu_s_per_1k_chunks'] * 1e3:.1f} ms",
                    f"{fin['cpu_s_per_1k_chunks'] * 1e3:.1f} ms", "-", "-"])  # fmt: skip

        def while_streaming(r: dict[str, Any]) -> str:
            loop = sum(w["thread_cpu_s"].get("loop", 0.0) for w in r["workers_detail"])
            other = sum(
                v for w in r["workers_detail"] for k, v in w["thread_cpu_s"].items() if k != "loop"
            )
            srv = r["server"]
            return (f"loops {loop / srv['seconds']:.2f}, writers {other / srv['seconds']:.2f}, "
                    f"database {srv['backends_cpu_s'] / srv['seconds']:.2f} cores; "
                    f"WAL {srv['wal_bytes'] / srv['seconds'] / 2**20:.1f} MB/s")  # fmt: skip

        out.append(
            ["CPU while streaming", case, while_streaming(cp), while_streaming(fin), "-", "-"]
        )
    mem = {m.get("strategy"): m for m in results.get("memory", [])}
    if "chatpersist" in mem and "finish" in mem and "error" not in mem["chatpersist"]:
        m, f = mem["chatpersist"], mem["finish"]
        out.append(["heap per answer (tracemalloc)", f"{m['drafts']:,} answers, open",
                    f"{m['bytes_open']:,.0f} B", f"{f['bytes_open']:,.0f} B", "-", "-"])  # fmt: skip
        out.append(["heap per answer beyond its text", f"after {m['answer_chars']:,} characters in 4-character pieces",
                    f"{m['bytes_beyond_text']:,.0f} B", f"{f['bytes_beyond_text']:,.0f} B", "-", "-"])  # fmt: skip
    loop = results.get("loop", [])
    for streams, _size, mode, freeze in LOOP_CASES:
        same = [r for r in loop if r.get("streams") == streams and r.get("mode") == mode]
        cpr = next(
            (
                r
                for r in same
                if r.get("strategy") == "chatpersist" and r.get("gc_freeze") == freeze
            ),
            None,
        )
        fr = next(
            (r for r in same if r.get("strategy") == "finish" and not r.get("gc_freeze")), None
        )
        if not cpr or not fr:
            continue
        case = f"PostgreSQL, {streams:,} {mode} stream{'s' if streams > 1 else ''}"
        case += ", gc.freeze() after start-up" if freeze else ""
        if streams == 1:
            out.append(
                [
                    "append p50",
                    case,
                    f"{cpr['append_p50_us']:.1f} µs",
                    f"{fr['append_p50_us']:.1f} µs",
                    "-",
                    "-",
                ]
            )
        else:
            gcs = (f"; full GCs while streaming: {cpr['gc_full']} (longest {_ms(cpr['gc_full_max_ms'])})"
                   f" vs {fr['gc_full']} ({_ms(fr['gc_full_max_ms'])}); load {cpr['load_avg'].split()[0]}")  # fmt: skip
            out.append(["loop lag p99", case + gcs, _ms(cpr["loop_lag_p99_ms"]), _ms(fr["loop_lag_p99_ms"]),
                        "≤ 5 ms at 1,000" if streams == 1000 else "-",
                        _met(cpr["loop_lag_p99_ms"] <= 5) if streams == 1000 else "-"])  # fmt: skip
            out.append(["rate, flush lag p99", case, f"{cpr['sustained']:.1%}, {cpr['flush_lag_p99_s']:.2f} s",
                        f"{fr['sustained']:.1%}", "-", "-"])  # fmt: skip
    return out


def markdown(results: dict[str, Any]) -> str:
    head = ["measure", "case", "chatpersist", "baseline (save-on-finish)", "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--only", choices=["queries", "import", "procs", "loop", "flush"], action="append"
    )
    ap.add_argument("--db", choices=DBS, action="append", help="queries: these databases only")
    ap.add_argument("--messages", type=int, default=MESSAGES)
    ap.add_argument("--size", type=int, default=SIZE)
    ap.add_argument("--queries-one", nargs=1, metavar="DB")
    ap.add_argument("--worker", nargs=5)
    ap.add_argument("--procs-one", nargs=1, metavar="STRATEGY")
    ap.add_argument("--memory-one", nargs=1, metavar="STRATEGY")
    ap.add_argument("--flush-one", nargs=1, metavar="STORAGE")
    ap.add_argument("--workers", type=int, default=WORKERS)
    ap.add_argument("--streams", type=int, default=PROC_STREAMS)
    ap.add_argument("--show", action="store_true", help="the table of the last run again")
    args = ap.parse_args()
    if args.worker:
        s, url, n, size, app = args.worker
        print(json.dumps(worker(s, url, int(n), int(size), app)))
        return
    if args.procs_one:
        print(json.dumps(procs_one(args.procs_one[0], args.workers, args.streams, PROC_SIZE)))
        return
    if args.flush_one:
        print(json.dumps(flush_cost(storage=args.flush_one[0])))
        return
    if args.memory_one:
        print(json.dumps(draft_memory(args.memory_one[0])))
        return
    if args.queries_one:
        print(json.dumps(queries_one(args.queries_one[0], args.messages, args.size, PER_SESSION)))
        return
    if args.show:
        print(markdown(json.loads((RESULTS / "scale.json").read_text())))
        return
    parts = args.only or ["queries", "import", "flush", "procs", "loop"]
    started = time.perf_counter()
    results: dict[str, Any] = {"cores": os.cpu_count(), "started_load_avg": load_avg()}
    if "queries" in parts:
        results["queries"] = [
            run_child(
                ["--queries-one", kind, "--messages", str(args.messages), "--size", str(args.size)]
            )
            for kind in args.db or DBS
        ]
    if "flush" in parts:
        log(f"flush cost on PostgreSQL: {FLUSH_DRAFTS:,} drafts due at once, by stored length ...")
        results["flush"] = [run_child(["--flush-one", name]) for name in FLUSH_STORAGE]
    if "procs" in parts:
        results["procs"] = []
        # The asked-for scale, then one that leaves this machine's 2 cores room.
        for streams in (args.streams, args.streams // 4):
            log(f"{args.workers} processes x {streams:,} streams on PostgreSQL ...")
            results["procs"] += [
                run_child(
                    ["--procs-one", s, "--workers", str(args.workers), "--streams", str(streams)]
                )
                for s in ("finish", "chatpersist")
            ]
        results["memory"] = [run_child(["--memory-one", s]) for s in ("finish", "chatpersist")]
    if "loop" in parts:
        results["loop"] = []
        for streams, size, mode, freeze in LOOP_CASES:
            for strategy_name in ("chatpersist",) if freeze else ("finish", "chatpersist"):
                log(
                    f"{strategy_name}: {streams:,} {mode} streams"
                    + (", gc.freeze()" if freeze else "")
                )
                results["loop"].append(loop_one(strategy_name, streams, size, mode, freeze))
    if "import" in parts:
        log("import chatpersist ...")
        results["import"] = import_part()
    results["elapsed_s"] = time.perf_counter() - started
    results["ended_load_avg"] = load_avg()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "scale.json"
    if args.only and path.exists():  # one part again: the others stay as they were
        saved = json.loads(path.read_text())
        if "queries" in results and args.db:  # and the other databases' queries
            mine = {q.get("db") for q in results["queries"]}
            results["queries"] = [
                q for q in saved.get("queries", []) if q.get("db") not in mine
            ] + results["queries"]
        results = {**saved, **results}
    path.write_text(json.dumps(results, indent=1))
    print(markdown(results))
    print(f"\n{time.perf_counter() - started:.0f} s; load average {results['started_load_avg']}"
          f" -> {results['ended_load_avg']}; {path}")  # fmt: skip


if __name__ == "__main__":
    main()
