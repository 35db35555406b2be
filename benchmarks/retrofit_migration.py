"""How long the additive retrofit migration takes on a large existing messages table.

    python -m benchmarks.retrofit_migration [--rows 1000000] [--db sqlite|postgresql|mysql|all]

Fills an app-style `messages` table with N rows, then times `ChatStore(...,
table="messages").migrate()` (adding status, finish_reason, seq, heartbeat, model,
usage and error columns). Adding a column with a constant default is a metadata-only
change on SQLite, PostgreSQL 11+ and MariaDB 10.3+/MySQL 8, so the time should not grow
with N. Prints a table and writes benchmarks/results/retrofit_migration.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from chatpersist import ChatStore, MessagesTable, _migrate

PG = os.environ.get(
    "CHATPERSIST_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MYSQL = os.environ.get(
    "CHATPERSIST_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
)
RESULTS = Path(__file__).resolve().parent / "results"


def make_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "bench_messages",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def fill(engine: sa.Engine, table: sa.Table, rows: int) -> float:
    start = time.perf_counter()
    t0 = datetime(2024, 1, 1)
    batch = 20_000
    with engine.begin() as conn:
        for lo in range(0, rows, batch):
            conn.execute(
                sa.insert(table),
                [
                    {
                        "id": f"m{i:08d}",
                        "session_id": f"s{i // 20}",
                        "role": "user" if i % 2 else "assistant",
                        "content": f"message number {i}, of ordinary length for a chat",
                        "created_at": t0 + timedelta(seconds=i),
                    }
                    for i in range(lo, min(rows, lo + batch))
                ],
            )
    return time.perf_counter() - start


def bench(name: str, url: str, rows: int) -> dict[str, object]:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    table = make_table(md)
    md.drop_all(engine)
    md.create_all(engine)
    target = MessagesTable("bench_messages")
    try:
        filled = fill(engine, table, rows)
        with ChatStore(engine, table=target) as store:
            start = time.perf_counter()
            store.migrate()
            migrate_s = time.perf_counter() - start
            with engine.connect() as conn:
                count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            start = time.perf_counter()
            _migrate.downgrade(engine, "base", target)
            downgrade_s = time.perf_counter() - start
        return {
            "db": name,
            "rows": count,
            "fill_s": round(filled, 1),
            "migrate_s": round(migrate_s, 3),
            "downgrade_s": round(downgrade_s, 3),
        }
    finally:
        md.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {target.version_table}"))
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--db", default="all", choices=["sqlite", "postgresql", "mysql", "all"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = {
            "sqlite": f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:6]}.db",
            "postgresql": PG,
            "mysql": MYSQL,
        }
        names = list(urls) if args.db == "all" else [args.db]
        results = [bench(n, urls[n], args.rows) for n in names]
    print(f"{'database':<12}{'rows':>10}{'fill s':>9}{'migrate s':>11}{'downgrade s':>13}")
    for r in results:
        print(
            f"{r['db']:<12}{r['rows']:>10}{r['fill_s']:>9}{r['migrate_s']:>11}{r['downgrade_s']:>13}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retrofit_migration.json").write_text(
        json.dumps({"cores": os.cpu_count(), "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
