"""Write strategies side by side, on the same simulated streams.

    python -m benchmarks.run --quick            # under 2 minutes: SQLite and PostgreSQL
    python -m benchmarks.run --full             # adds 10,000 PostgreSQL streams, 2 KB answers
    python -m benchmarks.run --quick --db sqlite
    python -m benchmarks.run --scale            # benchmarks/scale.py: big tables, many processes

Each (strategy, workload, database) runs in its own subprocess on a fresh database,
so peak RSS and CPU are its own. Prints a table, writes benchmarks/results/run.json and
benchmarks/results/run.png. See docs/benchmarks.md for what each column means.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from chatpersist import ChatStore

from .strategies import (
    EVERY_CHUNKS,
    EVERY_SECONDS,
    ChatPersistDefault,
    PerDraftFlush,
    SaveEveryChunk,
    SaveOnFinish,
)

PG = os.environ.get(
    "CHATPERSIST_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
RESULTS = Path(__file__).resolve().parent / "results"
STRATEGIES = ["finish", "every-chunk", "per-draft", "chatpersist"]
RATE = 30.0  # chunks per second per stream
WORDS = "the quick brown fox jumps over a lazy dog while streams flow on and on".split()


def answer_chunks(seed: int, size: int, chunk: int = 4) -> list[str]:
    rng = random.Random(seed)
    words, length = [], 0
    while length < size:  # joined once: `text +=` here took 30 s for 1 MB
        words.append(rng.choice(WORDS) + " ")
        length += len(words[-1])
    text = "".join(words)
    return [text[i : i + chunk] for i in range(0, len(text), chunk)]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


class Meter:
    """Counts what reaches the database: commits, rows, bytes of text sent."""

    def __init__(self, engine: sa.Engine) -> None:
        self.lock = threading.Lock()
        self.transactions = self.rows = self.bytes = 0
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "after_cursor_execute", self._executed)

    def _commit(self, conn: Any) -> None:
        # Only transactions that wrote count (history reads commit too).
        if conn.info.pop("bench_wrote", False):
            with self.lock:
                self.transactions += 1

    def _executed(
        self, conn: Any, cursor: Any, stmt: str, params: Any, ctx: Any, many: bool
    ) -> None:
        sets = params if many else [params]
        size = 0
        for p in sets:
            values = p.values() if isinstance(p, dict) else (p or ())
            size += sum(len(v.encode()) for v in values if isinstance(v, str))
        if stmt.lstrip().upper().startswith(("INSERT", "UPDATE")):
            conn.info["bench_wrote"] = True
            with self.lock:
                self.bytes += size
                self.rows += max(cursor.rowcount, 0)


def make_strategy(name: str, store: ChatStore) -> Any:
    return {
        "finish": lambda: SaveOnFinish(store),
        "every-chunk": lambda: SaveEveryChunk(store),
        "per-draft": lambda: PerDraftFlush(store, time.monotonic),
        "chatpersist": lambda: ChatPersistDefault(store),
    }[name]()


def fresh_db(kind: str, tmp: str) -> tuple[str, Any]:
    if kind == "sqlite":
        return f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:8]}.db", lambda: None
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    url = sa.make_url(PG).update_query_dict({"options": f"-csearch_path={name}"})

    def drop() -> None:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


# -- one run (in a child process) --


async def drive(
    strategy: Any,
    store: ChatStore,
    streams: int,
    size: int,
    paced: bool,
    mode: str,
    ready: Callable[[str], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Open `streams` answers, append their chunks (30/s each when `paced`), end them.
    `ready("opening")` is awaited before the answers open, `ready("streaming")` before
    the first chunk (benchmarks.scale starts its processes' streams together) and
    `ready("ended")` after the last one, before the answers end."""
    # One unpaced stream (the 1 MB answer) calls every strategy inline.
    blocking = strategy.name in ("every-chunk", "per-draft") and paced
    sessions = [store.create_session() for _ in range(max(1, streams // 100))]
    texts = [answer_chunks(i, size) for i in range(streams)]
    # An async app ends a draft with its async API where there is one; the others
    # (their close does blocking I/O) in a thread.
    native = mode == "async" and hasattr(strategy, "open_async")
    if ready is not None:
        await ready("opening")
    answers = [
        await strategy.open_async(sessions[i % len(sessions)])
        if native
        else await asyncio.to_thread(strategy.open, sessions[i % len(sessions)])
        for i in range(streams)
    ]
    costs: list[float] = []
    lags: list[float] = []
    marks: list[tuple[int, float, int]] = []  # (stream, append time, length so far)
    done = asyncio.Event()

    async def ticker() -> None:
        # Sampled while the streams append, not while they end: every stream ends in
        # the same instant here, and a long idle wait for closes would dilute the p99.
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            if not done.is_set():
                lags.append(time.perf_counter() - t - 0.01)

    done_chunks = [0]

    async def group(members: list[int]) -> None:
        t0 = time.perf_counter()
        lengths = dict.fromkeys(members, 0)
        k = 0
        while any(k < len(texts[i]) for i in members):
            if paced and time.perf_counter() - t0 > cap:
                break  # a strategy that cannot keep up: its rate is measured, not waited for
            if paced:
                delay = t0 + k / RATE - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif k % 64 == 0:
                await asyncio.sleep(0)
            for i in members:
                if k >= len(texts[i]):
                    continue
                piece = texts[i][k]
                start = time.perf_counter()
                if blocking:
                    await asyncio.to_thread(answers[i].append, piece)
                else:
                    answers[i].append(piece)
                now = time.perf_counter()
                costs.append(now - start)
                lengths[i] += len(piece)
                done_chunks[0] += 1
                if k % 7 == 3:
                    marks.append((i, now, lengths[i]))
            k += 1

    ideal = max(len(t) for t in texts) / RATE
    cap = 2 * ideal + 5 if ideal > 4 else ideal + 3  # quick mode: short answers, short cap
    if ready is not None:
        await ready("streaming")
    tick = asyncio.create_task(ticker())
    size_of_group = 50 if mode == "async" else streams
    start = time.perf_counter()
    await asyncio.gather(
        *(
            group(list(range(g, min(streams, g + size_of_group))))
            for g in range(0, streams, size_of_group)
        )
    )
    appended_at = time.perf_counter()
    done.set()
    await tick
    if ready is not None:
        await ready("ended")
    await asyncio.gather(*(a.aclose() if native else asyncio.to_thread(a.close) for a in answers))
    return {"costs": costs, "lags": lags, "marks": marks, "elapsed": appended_at - start,
            "paced": paced, "chunks": done_chunks[0], "streams": streams,
            "answers": answers, "window": (start, appended_at)}  # fmt: skip


def drive_threads(strategy: Any, store: ChatStore, streams: int, size: int) -> dict[str, Any]:
    sessions = [store.create_session() for _ in range(max(1, streams // 100))]
    texts = [answer_chunks(i, size) for i in range(streams)]
    costs: list[float] = []
    marks: list[tuple[int, float, int]] = []
    answers: list[Any] = [None] * streams
    lock = threading.Lock()
    barrier = threading.Barrier(streams)

    def run(i: int) -> None:
        a = answers[i] = strategy.open(sessions[i % len(sessions)])
        mine: list[float] = []
        barrier.wait()
        t0, length = time.perf_counter(), 0
        for k, piece in enumerate(texts[i]):
            delay = t0 + k / RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            s = time.perf_counter()
            a.append(piece)
            now = time.perf_counter()
            mine.append(now - s)
            length += len(piece)
            if k % 7 == 3:
                with lock:
                    marks.append((i, now, length))
        a.close()
        with lock:
            costs.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.perf_counter()
    return {"costs": costs, "lags": [], "marks": marks, "elapsed": end - start,
            "paced": True, "chunks": sum(len(t) for t in texts), "streams": streams,
            "answers": answers, "window": (start, end)}  # fmt: skip


def _poll(url: str, stop: Any, out: Any, every: float) -> None:
    """In its own process (no GIL shared with the run): when each answer's committed
    length changes, as (time, id, length)."""
    engine = sa.create_engine(url)
    q = sa.text("SELECT id, LENGTH(content) FROM chatpersist_messages WHERE role = 'assistant'")
    seen: dict[str, int] = {}
    changes: list[tuple[float, str, int]] = []
    while not stop.is_set():
        with engine.connect() as c:
            rows = c.execute(q).all()
        now = time.perf_counter()  # CLOCK_MONOTONIC: the same clock in every process
        for mid, length in rows:
            if seen.get(mid) != length:
                seen[mid] = length
                changes.append((now, mid, int(length or 0)))
        time.sleep(every)
    out.send(changes)
    engine.dispose()


class Poller:
    """Reads how much of each answer is committed, for the flush lag."""

    def __init__(self, url: str, every: float) -> None:
        ctx = multiprocessing.get_context("fork")  # before any writer thread: fork is safe and fast
        self._stop = ctx.Event()
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_poll, args=(url, self._stop, send, every), daemon=True)

    def start(self) -> None:
        self._proc.start()

    def finish(self) -> dict[str, list[tuple[float, int]]]:
        self._stop.set()
        changes = self._recv.recv()
        self._proc.join()
        by_id: dict[str, list[tuple[float, int]]] = {}
        for t, mid, length in changes:
            by_id.setdefault(mid, []).append((t, length))
        return by_id


def flush_lags(
    marks: list[tuple[int, float, int]],
    ids: list[str | None],
    seen: dict[str, list[tuple[float, int]]],
) -> list[float]:
    """For sampled chunks: from the append to the first poll that saw it committed."""
    lags = []
    for i, t, length in marks:
        for when, stored in seen.get(ids[i] or "", []):
            if when >= t and stored >= length:
                lags.append(when - t)
                break
    return lags


class GcWatch:
    """The collector's passes (generation, start, duration), from `gc.callbacks`."""

    def __init__(self) -> None:
        self.passes: list[tuple[int, float, float]] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
        else:
            self.passes.append((int(info["generation"]), self._started, now - self._started))

    def summary(self, window: tuple[float, float]) -> dict[str, Any]:
        """Full (generation 2) passes within `window`: count, longest and total ms."""
        full = [d for g, t, d in self.passes if g == 2 and window[0] <= t <= window[1]]
        young = [d for g, t, d in self.passes if g < 2 and window[0] <= t <= window[1]]
        return {"gc_full": len(full), "gc_full_max_ms": max(full, default=0.0) * 1e3,
                "gc_full_ms": sum(full) * 1e3, "gc_young": len(young),
                "gc_young_max_ms": max(young, default=0.0) * 1e3}  # fmt: skip


def one(
    strategy_name: str, kind: str, streams: int, size: int, mode: str, paced: bool
) -> dict[str, Any]:
    # BENCH_GC_FREEZE=1: `gc.freeze()` once the app has started (store, strategy), as
    # docs/benchmarks.md suggests for processes with thousands of streams.
    freeze = os.environ.get("BENCH_GC_FREEZE") == "1"
    # BENCH_SWITCH_INTERVAL=0.001: how often a thread waiting for the GIL (the event
    # loop, while the writer thread builds a batch) gets it (Python's default: 5 ms).
    switch = float(os.environ.get("BENCH_SWITCH_INTERVAL") or sys.getswitchinterval())
    sys.setswitchinterval(switch)
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = fresh_db(kind, tmp)
        try:
            store = ChatStore(url, every_chunks=EVERY_CHUNKS, every_seconds=EVERY_SECONDS)
            store.migrate()
            meter = Meter(store.engine)
            strategy = make_strategy(strategy_name, store)
            poller = Poller(url, every=0.05 if streams <= 1000 else 0.25)
            poller.start()
            if freeze:
                gc.collect()
                gc.freeze()
            watch = GcWatch()
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            if mode == "threads":
                r = drive_threads(strategy, store, streams, size)
            else:
                r = asyncio.run(drive(strategy, store, streams, size, paced, mode))
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            time.sleep(0.3)
            seen = poller.finish()
            ids = [a.message_id for a in r["answers"]]
            lags = flush_lags(r["marks"], ids, seen)
            store.close()
        finally:
            drop()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    # Chunks appended per second, against what the streams asked for (30/s each).
    sustained = r["chunks"] / (r["elapsed"] * RATE * r["streams"]) if r["paced"] else None
    return {
        "strategy": strategy_name, "db": kind, "streams": streams, "mode": mode,
        "answer_bytes": size, "chunks": r["chunks"],
        "append_p50_us": pct(r["costs"], 50) * 1e6, "append_p99_us": pct(r["costs"], 99) * 1e6,
        "loop_lag_p99_ms": pct(r["lags"], 99) * 1e3 if r["lags"] else None,
        "transactions": meter.transactions, "rows": meter.rows, "bytes": meter.bytes,
        "flush_lag_p50_s": pct(lags, 50) if lags else None,
        "flush_lag_p99_s": pct(lags, 99) if lags else None,
        "cpu_s_per_1k_chunks": cpu / r["chunks"] * 1000,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "elapsed_s": r["elapsed"], "sustained": sustained, "gc_freeze": freeze,
        "switch_interval_ms": switch * 1e3,
        **watch.summary(r["window"]),
    }  # fmt: skip


# -- loss when the writer is killed --


def killed_child(strategy_name: str, url: str, sid: str) -> None:
    store = ChatStore(url, every_chunks=EVERY_CHUNKS, every_seconds=EVERY_SECONDS)
    answer = make_strategy(strategy_name, store).open(sid)
    for k, piece in enumerate(answer_chunks(1, 10_000)):
        answer.append(piece)
        print(k + 1, flush=True)
        time.sleep(1 / 100)


def kill_runs(strategy_name: str, kind: str, runs: int) -> dict[str, Any]:
    rng = random.Random(strategy_name)
    losses = []
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = fresh_db(kind, tmp)
        try:
            store = ChatStore(url)
            store.migrate()
            for _ in range(runs):
                sid = store.create_session()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.run", "--killed-child", strategy_name, url, sid],
                    stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                target, seen = rng.randrange(20, 200), 0
                assert proc.stdout is not None
                for line in proc.stdout:
                    seen = int(line)
                    if seen >= target:
                        break
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                with store.engine.connect() as c:
                    stored = c.execute(
                        sa.text(
                            "SELECT COALESCE(MAX(LENGTH(m.content)), 0) FROM chatpersist_messages m WHERE m.session_id = :s"
                        ),
                        {"s": sid},
                    ).scalar()
                losses.append(seen - int(stored or 0) / 4)  # chunks of 4 characters
            store.close()
        finally:
            drop()
    return {"strategy": strategy_name, "db": kind, "runs": runs,
            "lost_chunks_max": max(losses), "lost_chunks_mean": statistics.mean(losses)}  # fmt: skip


# -- the suite --


def workloads(full: bool, dbs: list[str]) -> list[tuple[str, int, int, str, bool]]:
    # Quick mode: shorter answers (300 bytes, 2.5 s at 30 chunks/s), no thread runs.
    size = 2048 if full else 300
    out = []
    for kind in dbs:
        for n in (1, 100, 1000):
            out.append((kind, n, size, "async", True))
        for n in (1, 100) if full else ():
            out.append((kind, n, size, "threads", True))
        if full and kind == "postgresql":
            out.append((kind, 10_000, 600, "async", True))
        out.append((kind, 1, 1024 * 1024, "async", False))  # one 1 MB answer, unpaced
    return out


def child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--one", *args],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if out.returncode != 0:
        return {"error": out.stderr[-2000:], "args": args}
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument(
        "--db",
        choices=["sqlite", "postgresql", "all"],
        default=None,
        help="default: sqlite with --quick, all with --full",
    )
    ap.add_argument("--one", nargs=6)
    ap.add_argument("--killed-child", nargs=3)
    ap.add_argument("--show", action="store_true", help="print the table of the last run")
    ap.add_argument("--markdown", action="store_true", help="the last run as a Markdown table")
    ap.add_argument(
        "--scale", action="store_true", help="benchmarks.scale: big tables, many processes"
    )
    if "--scale" in sys.argv[1:]:  # the rest of the command line is benchmarks.scale's
        from . import scale

        sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a != "--scale")]
        scale.main()
        return
    args = ap.parse_args()
    if args.markdown:
        saved = json.loads((RESULTS / "run.json").read_text())
        print("| " + " | ".join(HEAD) + " |")
        print("|" + "---|" * len(HEAD))
        for r in saved["results"]:
            print("| " + " | ".join(row(r).split()) + " |")
        print()
        print("| strategy | runs | lost chunks, max | mean |")
        print("|---|---|---|---|")
        for k in saved["kills"]:
            print(
                f"| {k['strategy']} | {k['runs']} | {k['lost_chunks_max']:.0f} | {k['lost_chunks_mean']:.1f} |"
            )
        return
    if args.show:
        saved = json.loads((RESULTS / "run.json").read_text())
        print(table(saved["results"]))
        for k in saved["kills"]:
            print(k)
        return
    if args.killed_child:
        killed_child(*args.killed_child)
        return
    if args.one:
        s, kind, n, size, mode, paced = args.one
        print(json.dumps(one(s, kind, int(n), int(size), mode, paced == "1")))
        return
    db = args.db or ("all" if args.full else "sqlite")
    dbs = ["sqlite", "postgresql"] if db == "all" else [db]
    results: list[dict[str, Any]] = []
    for kind, n, size, mode, paced in workloads(args.full, dbs):
        for s in STRATEGIES:
            if size > 100_000 and s == "every-chunk":
                continue  # 262,144 transactions rewriting up to 1 MB each: ~137 GB
            if size > 100_000 and s == "per-draft" and not args.full:
                continue  # 13,000 transactions: a minute; the full run has it
            r = child([s, kind, str(n), str(size), mode, "1" if paced else "0"])
            results.append(r)
            print(row(r), flush=True)
    kills = [kill_runs(s, "sqlite", 20 if args.full else 2) for s in STRATEGIES]
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "cores": os.cpu_count(),
        "mode": "full" if args.full else "quick",
        "results": results,
        "kills": kills,
    }
    (RESULTS / "run.json").write_text(json.dumps(payload, indent=2))
    print()
    print(table(results))
    print()
    print(
        f"{'strategy':<12} {'runs':>5} {'lost chunks max':>16} {'mean':>8}   (SIGKILL at random moments, SQLite)"
    )
    for k in kills:
        print(
            f"{k['strategy']:<12} {k['runs']:>5} {k['lost_chunks_max']:>16.0f} {k['lost_chunks_mean']:>8.1f}"
        )
    plot(results, RESULTS / "run.png")


COLS = [("strategy", "{:<12}"), ("db", "{:<10}"), ("streams", "{:>7}"), ("mode", "{:<7}"),
        ("answer_bytes", "{:>8}"), ("sustained", "{:>6.1%}"), ("append_p50_us", "{:>8.1f}"),
        ("append_p99_us", "{:>9.1f}"), ("loop_lag_p99_ms", "{:>7.1f}"), ("transactions", "{:>7}"),
        ("rows", "{:>7}"), ("bytes", "{:>11}"), ("flush_lag_p50_s", "{:>6.2f}"),
        ("flush_lag_p99_s", "{:>6.2f}"), ("cpu_s_per_1k_chunks", "{:>6.3f}"), ("peak_rss_mb", "{:>6.0f}")]  # fmt: skip
HEAD = ["strategy", "db", "streams", "mode", "answer", "rate", "app p50us", "app p99us", "lag99ms",
        "tx", "rows", "bytes", "fl p50", "fl p99", "cpu/1k", "rss MB"]  # fmt: skip


def _width(fmt: str, head: str) -> int:
    m = re.search(r"[<>](\d+)", fmt)
    return max(len(head), int(m[1]) if m else 0)


def row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"ERROR {r['args']}: {r['error'][-300:]}"
    cells = []
    for (key, fmt), head in zip(COLS, HEAD, strict=True):
        v, w = r.get(key), _width(fmt, head)
        cells.append("-".rjust(w) if v is None else fmt.format(v).strip().rjust(w))
    return " ".join(cells)


def table(results: list[dict[str, Any]]) -> str:
    head = " ".join(h.rjust(_width(f, h)) for (_, f), h in zip(COLS, HEAD, strict=True))
    return "\n".join([head, *(row(r) for r in results)])


def plot(results: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
        return
    ok = [
        r
        for r in results
        if "error" not in r and r["mode"] == "async" and r["answer_bytes"] < 100_000
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for s in STRATEGIES:
        for kind, marker in (("sqlite", "o"), ("postgresql", "s")):
            pts = sorted(
                (r["streams"], r["transactions"], r["sustained"] or 0)
                for r in ok
                if r["strategy"] == s and r["db"] == kind
            )
            if pts:
                axes[0].plot(
                    [p[0] for p in pts], [p[1] for p in pts], marker=marker, label=f"{s} ({kind})"
                )
                axes[1].plot(
                    [p[0] for p in pts], [p[2] for p in pts], marker=marker, label=f"{s} ({kind})"
                )
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="concurrent streams",
        ylabel="transactions",
        title="Transactions",
    )
    axes[1].set(
        xscale="log",
        xlabel="concurrent streams",
        ylabel="achieved / target rate",
        title="Streams sustained",
    )
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
