"""Structured answers measured: what parts cost a text append, and what they write.

    python -m benchmarks.parts            # about a minute
    python -m benchmarks.parts --show     # the table of the last run again

1. `append` of text, 1 stream (SQLite, default throttle), per call, p50 and p99 of
   batches of 100 calls: saving on finish (a list), chatpersist before parts existed
   (the release tagged by BEFORE, extracted from git into a temporary folder, when the
   checkout has it), and chatpersist now with a text-only answer and with an answer
   that already has parts (each text append must then check where the text part is).
2. Bytes written for a 1 MB answer with 200 tool calls (PostgreSQL): reasoning, then
   200 rounds of ~5 KB of text in 100-character pieces, a tool call whose arguments
   stream in 10 fragments and its result. Bound parameter bytes sent and WAL bytes,
   chatpersist (new segments appended: `parts || new`) against rewriting the whole
   parts document at every flush, over the very same sequence of flushes.

Each case runs in its own process. Results: benchmarks/results/parts.json and parts.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: The last commit before parts were stored.
BEFORE = "d659e69"
PG = os.environ.get(
    "CHATPERSIST_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
APPENDS = 100_000


def _append_case(kind: str) -> dict[str, float]:
    """Time `APPENDS` text appends in batches of 100 (runs in a child process)."""
    batches: list[float] = []
    pieces = ["tok "] * 100
    if kind == "finish":
        buf: list[str] = []
        for _ in range(APPENDS // 100):
            t = time.perf_counter()
            for p in pieces:
                buf.append(p)
            batches.append(time.perf_counter() - t)
        "".join(buf)
    else:
        from chatpersist import ChatStore

        with tempfile.TemporaryDirectory() as tmp:
            store = ChatStore(f"sqlite:///{tmp}/b.db")
            store.migrate()
            sid = store.create_session()
            with store.draft(sid) as d:
                if kind == "parts":
                    d.append_tool_call("c1", "f", "{}")  # type: ignore[attr-defined]
                for _ in range(APPENDS // 100):
                    t = time.perf_counter()
                    for p in pieces:
                        d.append(p)
                    batches.append(time.perf_counter() - t)
            store.close()
    per = sorted(b / 100 * 1e6 for b in batches)
    return {
        "p50_us": statistics.median(per),
        "p99_us": per[int(len(per) * 0.99)],
    }


def _stream(d: Any) -> None:
    """The answer, flushed every 20 chunks as the default throttle does when the
    writer keeps up with a paced stream (here without waiting)."""
    n_chunks = 0

    def chunk() -> None:
        nonlocal n_chunks
        n_chunks += 1
        if n_chunks % 20 == 0:
            d.flush()

    d.append_reasoning("Planning the answer. " * 20, signature="sig")
    chunk()
    text = "x" * 99 + " "
    for n in range(200):
        for _ in range(52):
            d.append(text)
            chunk()
        args = json.dumps({"query": f"item {n}", "filters": {"page": n, "size": 50}})
        step = max(1, len(args) // 10)
        d.append_tool_call(f"call_{n}", "search", args[:step])
        chunk()
        for k in range(step, len(args), step):
            d.append_tool_call(f"call_{n}", arguments=args[k : k + step])
            chunk()
        d.add_tool_result(f"call_{n}", json.dumps({"hits": n, "items": ["a" * 40] * 4}))
        chunk()


def _wal(conn: Any) -> int:
    import sqlalchemy as sa

    return int(conn.execute(sa.text("SELECT pg_current_wal_insert_lsn() - '0/0'")).scalar())


def _bytes_case() -> dict[str, Any]:
    """The 1 MB / 200 tool calls answer on PostgreSQL, both ways (in a child)."""
    import sqlalchemy as sa

    from chatpersist import ChatStore
    from chatpersist._parts import encode, merge

    store = ChatStore(PG)
    store.migrate()
    flushes: list[tuple[str, str | None]] = []
    sent = [0]

    def count(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        rows = params if many else [params]
        for row in rows:
            values = row.values() if isinstance(row, dict) else row
            for v in values:
                if isinstance(v, str):
                    sent[0] += len(v.encode("utf-8"))
        if "jsonb_array_elements" in statement:
            for row in rows:
                for r in json.loads(row["p_rows"]):
                    flushes.append((r[4], r[7]))

    sa.event.listen(store.engine, "before_cursor_execute", count)
    sid = store.create_session()
    with store.engine.connect() as conn:
        wal0 = _wal(conn)
    with store.draft(sid) as d:
        _stream(d)
    with store.engine.connect() as conn:
        wal1 = _wal(conn)
    m = store.get_message(d.message_id)
    ours = {"sent_bytes": sent[0], "wal_bytes": wal1 - wal0, "flushes": len(flushes)}
    sa.event.remove(store.engine, "before_cursor_execute", count)

    # The same flushes, each rewriting the whole parts document.
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS bench_parts_rewrite"))
        conn.execute(
            sa.text(
                "CREATE TABLE bench_parts_rewrite (id int primary key, content text, parts jsonb)"
                " WITH (fillfactor = 70)"
            )
        )
        conn.execute(sa.text("INSERT INTO bench_parts_rewrite VALUES (1, '', NULL)"))
    log: list[dict[str, Any]] = []
    sent_rewrite = 0
    update = sa.text(
        "UPDATE bench_parts_rewrite SET content = content || :d, parts = CAST(:p AS jsonb) WHERE id = 1"
    )
    with store.engine.connect() as conn:
        wal0 = _wal(conn)
        conn.commit()
        for delta, parts in flushes:
            if parts:
                log += json.loads(parts)
            doc = encode([{"i": i, **p} for i, p in merge(log).items()]) if log else None
            with conn.begin():
                conn.execute(update, {"d": delta, "p": doc})
            sent_rewrite += len(delta.encode()) + (len(doc.encode()) if doc else 0)
        wal1 = _wal(conn)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE bench_parts_rewrite"))
    store.close()
    return {
        "text_bytes": len(m.content.encode()),
        "parts": len(m.parts),
        "tool_calls": sum(p.type == "tool_call" for p in m.parts),
        "appended": ours,
        "rewrite": {"sent_bytes": sent_rewrite, "wal_bytes": wal1 - wal0},
    }


def _before_tree() -> Path | None:
    """The package as it was before parts, extracted from git (None without git)."""
    out = Path(tempfile.mkdtemp(prefix="chatpersist-before-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", BEFORE, "chatpersist", "migrations", "alembic.ini"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    tar = out / "tree.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(out, filter="data")
    return out


def _child(args: list[str], pythonpath: Path | None = None) -> Any:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.parts", *args],
        capture_output=True, text=True, env=env, cwd=ROOT if pythonpath is None else pythonpath,
        check=True,
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run() -> dict[str, Any]:
    before = _before_tree()
    appends: dict[str, Any] = {"finish": _child(["--case", "finish"])}
    if before is not None:
        # The old package with this benchmark file beside it.
        (before / "benchmarks").mkdir(exist_ok=True)
        (before / "benchmarks" / "__init__.py").write_text("")
        (before / "benchmarks" / "parts.py").write_text(Path(__file__).read_text())
        appends["before parts"] = _child(["--case", "text"], before)
    appends["text only"] = _child(["--case", "text"])
    appends["after a tool call"] = _child(["--case", "parts"])
    return {"appends": appends, "bytes": _child(["--case", "bytes"])}


def table(results: dict[str, Any]) -> str:
    lines = ["| append, 1 stream (SQLite) | p50 µs | p99 µs |", "|---|---:|---:|"]
    for name, r in results["appends"].items():
        lines.append(f"| {name} | {r['p50_us']:.2f} | {r['p99_us']:.2f} |")
    b = results["bytes"]
    lines += [
        "",
        f"1 MB answer with {b['tool_calls']} tool calls ({b['text_bytes']:,} bytes of text, "
        f"{b['parts']} parts, {b['appended']['flushes']} flushes), PostgreSQL:",
        "",
        "| parts written as | bytes sent | WAL bytes |",
        "|---|---:|---:|",
        f"| new segments appended (chatpersist) | {b['appended']['sent_bytes']:,} | "
        f"{b['appended']['wal_bytes']:,} |",
        f"| whole document rewritten per flush | {b['rewrite']['sent_bytes']:,} | "
        f"{b['rewrite']['wal_bytes']:,} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["finish", "text", "parts", "bytes"])
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args()
    if args.case == "bytes":
        print(json.dumps(_bytes_case()))
        return
    if args.case:
        print(json.dumps(_append_case(args.case)))
        return
    if args.show:
        print((RESULTS / "parts.md").read_text())
        return
    results = run()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "parts.json").write_text(json.dumps(results, indent=2))
    md = table(results)
    (RESULTS / "parts.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
