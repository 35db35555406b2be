"""Migrations that survive a kill.

On MariaDB/MySQL every DDL statement commits by itself, so a migration killed halfway
leaves some of its steps done and the version table behind. `chatpersist migrate` (and
`store.migrate()`) must finish such a half-done migration and end with exactly the
schema of a clean migrate, and say what it found half done.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from support import MYSQL_URL, fresh_database

from chatpersist import MessagesTable, _migrate
from chatpersist.cli import cli

OURS = ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009"]
RETROFIT = ["r0001", "r0002", "r0003", "r0004", "r0005"]
KINDS = ["ours", "retrofit"]
DDL = re.compile(r"^\s*(CREATE|ALTER|DROP)\b", re.IGNORECASE)
VERSION_TABLES = re.compile(r"chatpersist_(alembic_)?version", re.IGNORECASE)

KILL_RUNS = int(os.environ.get("CHATPERSIST_MIGRATE_KILL_RUNS", "25"))
KILL_SEED = int(os.environ.get("CHATPERSIST_MIGRATE_KILL_SEED", "20261130"))


def app_table(md: sa.MetaData) -> sa.Table:
    """An app's own messages table, before the retrofit."""
    return sa.Table(
        "messages",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(64), nullable=False, index=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def prepare(engine: sa.Engine, kind: str) -> MessagesTable | None:
    """The migration target: None for our own tables, else a fresh app table."""
    if kind == "ours":
        return None
    md = sa.MetaData()
    app_table(md)
    md.create_all(engine)
    return MessagesTable("messages")


def revisions(kind: str) -> list[str]:
    return OURS if kind == "ours" else RETROFIT


def snapshot(engine: sa.Engine, table: MessagesTable | None) -> dict[str, Any]:
    """The reflected schema (every table but the version table) and the recorded version."""
    version_table = _migrate.VERSION_TABLE if table is None else table.version_table
    i = sa.inspect(engine)
    tables: dict[str, Any] = {}
    for name in sorted(i.get_table_names()):
        if name == version_table:
            continue
        tables[name] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in i.get_columns(name)
            ],
            "pk": i.get_pk_constraint(name)["constrained_columns"],
            "fks": sorted(
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    str(sorted(fk.get("options", {}).items())),
                )
                for fk in i.get_foreign_keys(name)
            ),
            "indexes": sorted(
                (str(x["name"]), tuple(str(c) for c in x["column_names"]), bool(x["unique"]))
                for x in i.get_indexes(name)
            ),
            "checks": sorted(str(c["sqltext"]) for c in i.get_check_constraints(name)),
            "options": sorted((k, str(v)) for k, v in i.get_table_options(name).items()),
        }
    return {"tables": tables, "version": _migrate.current(engine, table)}


@contextmanager
def captured_ddl(engine: sa.Engine) -> Iterator[list[str]]:
    """The DDL statements (not those of the version table) run on `engine` meanwhile."""
    statements: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if DDL.match(statement) and not VERSION_TABLES.search(statement):
            assert not params, (statement, params)
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


def run_by_hand(engine: sa.Engine, statements: list[str]) -> None:
    """What a migration killed after these statements leaves on MariaDB."""
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def half_done_note(notes: object, rev: str) -> bool:
    return isinstance(notes, list) and any(
        f"migration {rev}" in n and "half done" in n for n in notes
    )


# -- deterministic: the first k DDL statements of a revision done, its version not -----


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_upgrade_finishes_a_half_done_revision(db_url: str, kind: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        table = prepare(engine, kind)
        revs = revisions(kind)
        steps: dict[str, list[str]] = {}
        for rev in revs:
            with captured_ddl(engine) as statements:
                _migrate.upgrade(engine, rev, table)
            steps[rev] = statements
        clean = snapshot(engine, table)
        assert clean["version"] == revs[-1]
        cases = 0
        for prev, rev in zip(["base", *revs[:-1]], revs, strict=True):
            if not steps[rev]:
                assert rev == "0005" and engine.dialect.name != "mysql", f"{rev} ran no DDL"
                continue  # 0005 is for MariaDB / MySQL only
            for k in range(1, len(steps[rev]) + 1):
                _migrate.downgrade(engine, prev, table)
                run_by_hand(engine, steps[rev][:k])
                notes = _migrate.upgrade(engine, "head", table)
                assert snapshot(engine, table) == clean, (rev, k, steps[rev][:k])
                assert half_done_note(notes, rev), (rev, k, notes)
                cases += 1
        assert cases >= len(revs)
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", KINDS)
def test_downgrade_finishes_a_half_done_revision(db_url: str, backend: str, kind: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite's DDL is transactional (and batch mode copies the table)")
    engine = sa.create_engine(db_url)
    try:
        table = prepare(engine, kind)
        revs = revisions(kind)
        pairs = list(zip(["base", *revs[:-1]], revs, strict=True))
        _migrate.upgrade(engine, "head", table)
        expected = {revs[-1]: snapshot(engine, table)}
        steps: dict[str, list[str]] = {}
        for prev, rev in reversed(pairs):
            with captured_ddl(engine) as statements:
                _migrate.downgrade(engine, prev, table)
            steps[rev] = statements
            expected[prev] = snapshot(engine, table)
        for prev, rev in pairs:
            for k in range(1, len(steps[rev]) + 1):
                _migrate.upgrade(engine, rev, table)
                run_by_hand(engine, steps[rev][:k])
                _migrate.downgrade(engine, prev, table)
                assert snapshot(engine, table) == expected[prev], (rev, k, steps[rev][:k])
    finally:
        engine.dispose()


def test_upgrade_refuses_a_foreign_column_of_the_same_name(db_url: str) -> None:
    """A column the app already has under a draft column's name is not silently adopted."""
    from chatpersist import ChatPersistError

    engine = sa.create_engine(db_url)
    try:
        md = sa.MetaData()
        t = app_table(md)
        t.append_column(sa.Column("draft_seq", sa.String(40), nullable=True))
        md.create_all(engine)
        with pytest.raises(ChatPersistError, match="draft_seq"):
            _migrate.upgrade(engine, "head", MessagesTable("messages"))
    finally:
        engine.dispose()


# -- the real thing: `chatpersist migrate` killed with SIGKILL on MariaDB -----------------

# A process that has imported the CLI forks one child per run; the child runs the CLI's
# own `main()` (`chatpersist migrate ...`, output to a file) and is sent SIGKILL after
# the run's delay unless it has already ended. Forking a warm process, rather than
# starting Python (about 1.2 s here, against about 0.3 s of migrating), keeps 25 runs
# short and spreads the delays over the migration rather than over imports. The parent
# only kills a child it has not reaped yet: never another process.
ZYGOTE = """
import json, os, signal, sys, time, traceback
import alembic.command, alembic.config, pymysql, sqlalchemy.dialects.mysql.pymysql
from chatpersist.cli import main
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        # The child must never go back to this loop (it shares stdin): _exit, always.
        code = 1
        try:
            fd = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.argv = ["chatpersist", *job["args"]]
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    reaped, status = 0, 0
    if job["kill_after"] is not None:
        time.sleep(max(0.0, t0 + job["kill_after"] - time.monotonic()))
        reaped, status = os.waitpid(pid, os.WNOHANG)  # reaps it if it has ended
        if reaped == 0:
            os.kill(pid, signal.SIGKILL)
    if reaped == 0:
        status = os.waitpid(pid, 0)[1]
    print("exit", os.waitstatus_to_exitcode(status), flush=True)
"""


class Launcher:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line

    def run(self, args: list[str], kill_after: float | None) -> tuple[int, float | None, str]:
        """Run `chatpersist *args`, SIGKILLed after `kill_after` s if still running.

        Returns its exit code (-9: killed), when it said something (seconds after the
        start, None if it did not) and what it said."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.out.unlink(missing_ok=True)
        job = {"args": args, "out": str(self.out), "kill_after": kill_after}
        t0 = time.monotonic()
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        said = None
        if kill_after is None:  # measuring: until its first line of output
            while said is None and self.proc.poll() is None:
                if self.out.exists() and self.out.read_text().endswith("\n"):
                    said = time.monotonic() - t0
                time.sleep(0.001)
        line = self.proc.stdout.readline()
        assert line.startswith("exit "), line
        return int(line.split()[1]), said, self.out.read_text() if self.out.exists() else ""

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()  # its loop ends
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()


def wait_disconnected(admin: sa.Engine, database: str) -> None:
    """Until the server has noticed the killed client (and rolled back its transaction)."""
    deadline = time.monotonic() + 20
    with admin.connect() as conn:
        while True:
            left = conn.execute(
                sa.text(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                    "WHERE DB = :db AND ID <> CONNECTION_ID()"
                ),
                {"db": database},
            ).scalar()
            conn.rollback()
            if not left:
                return
            assert time.monotonic() < deadline, f"{left} connections to {database} linger"
            time.sleep(0.01)


@dataclass
class Figures:
    runs: int = 0
    killed: int = 0  # SIGKILL landed while the process ran
    nothing_done: int = 0  # killed before its first DDL statement
    between: int = 0  # killed between two revisions (each done and recorded)
    half_done: int = 0  # killed with a revision half done (steps done, version not)
    done: int = 0  # the migration was complete and recorded when the kill came
    completed: int = 0  # the next `chatpersist migrate` ended with the clean schema
    notes: list[str] = field(default_factory=list)

    @property
    def mid_migration(self) -> int:
        return self.between + self.half_done


@contextmanager
def mysql_database(tmp_path: Path) -> Iterator[str]:
    yield from fresh_database("mysql", tmp_path)


def kill_loop(tmp_path: Path, kind: str, round_: int = 0) -> Figures:
    rng = random.Random(f"{KILL_SEED}-{kind}-{round_}" if round_ else f"{KILL_SEED}-{kind}")
    table_args = ["--table", "messages"] if kind == "retrofit" else []

    def setup(url: str) -> MessagesTable | None:
        engine = sa.create_engine(url)
        try:
            return prepare(engine, kind)
        finally:
            engine.dispose()

    def look(url: str, table: MessagesTable | None) -> dict[str, Any]:
        engine = sa.create_engine(url)
        try:
            return snapshot(engine, table)
        finally:
            engine.dispose()

    # The schema after each revision, from a clean migrate.
    expected: dict[str | None, dict[str, Any]] = {}
    with mysql_database(tmp_path) as url:
        table = setup(url)
        engine = sa.create_engine(url)
        expected[None] = snapshot(engine, table)
        for rev in revisions(kind):
            _migrate.upgrade(engine, rev, table)
            expected[rev] = snapshot(engine, table)
        engine.dispose()
    clean = expected[revisions(kind)[-1]]

    launcher = Launcher(tmp_path / "migrate.out")
    admin = sa.create_engine(MYSQL_URL)
    figures = Figures()
    try:
        # How long a full `chatpersist migrate` takes: until it says it is done (the
        # interpreter's exit after that migrates nothing).
        took = []
        for _ in range(3):
            with mysql_database(tmp_path) as url:
                table = setup(url)
                code, said, out = launcher.run(["migrate", "--db", url, *table_args], None)
                assert code == 0 and said is not None, out
                assert look(url, table) == clean
                took.append(said)
        full = sorted(took)[1]

        # Random delays between 0 and that time, one in each of KILL_RUNS equal slices
        # of it (so that 25 runs cover the whole migration), in random order.
        delays = [full * (i + rng.random()) / KILL_RUNS for i in range(KILL_RUNS)]
        rng.shuffle(delays)
        for delay in delays:
            with mysql_database(tmp_path) as url:
                database = sa.make_url(url).database
                assert database is not None
                table = setup(url)
                code, _, out = launcher.run(["migrate", "--db", url, *table_args], delay)
                assert code in (0, -signal.SIGKILL), out
                wait_disconnected(admin, database)
                figures.runs += 1
                figures.killed += code == -signal.SIGKILL

                after = look(url, table)
                if after == clean:
                    state = "done"
                elif after["tables"] == expected[None]["tables"]:
                    state = "nothing_done"
                elif after == expected.get(after["version"]):
                    state = "between"
                else:
                    state = "half_done"
                setattr(figures, state, getattr(figures, state) + 1)

                result = CliRunner().invoke(cli, ["migrate", "--db", url, *table_args])
                assert result.exit_code == 0, (state, delay, result.output, result.exception)
                assert look(url, table) == clean, (state, delay)
                if state == "half_done":
                    assert "was half done" in result.stderr, (delay, result.output)
                    figures.notes.extend(
                        line for line in result.stderr.splitlines() if "half done" in line
                    )
                figures.completed += 1
    finally:
        launcher.close()
        admin.dispose()
    print(
        f"\n{kind}: full migrate {full:.3f} s; {figures.runs} runs, {figures.killed} killed, "
        f"{figures.mid_migration} mid-migration ({figures.half_done} with a revision half "
        f"done), {figures.nothing_done} before any DDL, {figures.done} after the commit; "
        f"{figures.completed} completed by the next migrate"
    )
    return figures


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_during_chatpersist_migrate_on_mariadb(tmp_path: Path, kind: str) -> None:
    figures = kill_loop(tmp_path, kind)
    assert figures.completed == figures.runs == KILL_RUNS
    # The loop is only worth something if kills land mid-migration. They land at
    # random moments of a run whose DDL is a small part: when too few did, a second
    # round of as many kills (other moments) adds its own; every run must complete.
    wanted = max(1, KILL_RUNS // 12)
    if figures.half_done < wanted:
        (tmp_path / "again").mkdir()
        again = kill_loop(tmp_path / "again", kind, round_=1)
        assert again.completed == again.runs == KILL_RUNS
        figures.half_done += again.half_done
        figures.notes += again.notes
    assert figures.half_done >= wanted, figures
