"""The `chatpersist` command run in-process (click's CliRunner), in a host app's world:
its own messages table, odd inputs, hostile text."""

from __future__ import annotations

import csv
import io
import json
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from chatpersist import COMPLETE, ChatStore, MessagesTable
from chatpersist.cli import cli

HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b31m\rfake\x00\x7f"  # OSC title, clear screen, CSI, CR
HOSTILE_SHOWN = "\\x1b]0;owned\\x07\\x1b[2J\\u009b31m\\x0dfake\\x00\\x7f"


def run(*args: str, env: dict[str, str] | None = None, color: bool = False) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, color=color)


def assert_clean_error(result: Result, code: int, *needles: str) -> None:
    """A handled error: the exit code, one line on stderr, no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The current directory is tmp_path; sys.path and sys.modules are restored, and no
    default database in the real data directory is touched."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("CHATPERSIST_DB", raising=False)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


@pytest.fixture
def sqlite_url(isolated: Path) -> str:
    url = f"sqlite:///{isolated}/cli.db"
    assert run("migrate", "--db", url).exit_code == 0
    return url


# -- 1. --table on every command ---------------------------------------------------

APP_MODULE = """
from chatpersist.retrofit import MessagesTable

#: The app's one definition of its table: used by the app, its migration and the CLI.
MESSAGES = MessagesTable(
    "chat_messages", columns={"session_id": "conversation_id", "created_at": "sent_at"}
)
NOT_A_TABLE = "chat_messages"
"""

APP_TABLE = MessagesTable(
    "chat_messages", columns={"session_id": "conversation_id", "created_at": "sent_at"}
)


def app_table(md: sa.MetaData, name: str, session_col: str, created_col: str,
              schema: str | None = None) -> sa.Table:  # fmt: skip
    return sa.Table(
        name,
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(session_col, sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column(created_col, sa.DateTime(), nullable=False),
        schema=schema,
    )


def write_app(root: Path) -> str:
    """A package `<pkg>/db.py` defining MESSAGES; returns the package name."""
    pkg = f"myapp_{uuid.uuid4().hex[:8]}"
    (root / pkg).mkdir()
    (root / pkg / "__init__.py").write_text("")
    (root / pkg / "db.py").write_text(APP_MODULE)
    return pkg


@pytest.mark.slow
def test_every_command_sees_the_apps_own_table(db_url: str, isolated: Path) -> None:
    engine = sa.create_engine(db_url)
    md = sa.MetaData()
    table = app_table(md, "chat_messages", "conversation_id", "sent_at")
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(table).values(
            id="u1", conversation_id="conv1", role="user", content="why?",
            sent_at=datetime(2024, 1, 1),
        ))  # fmt: skip
    engine.dispose()
    ref = f"{write_app(isolated)}.db:MESSAGES"

    result = run("migrate", "--db", db_url, "--table", ref)
    assert result.exit_code == 0, result.output
    assert "'chat_messages' has its draft columns" in result.stdout
    with ChatStore(db_url, table=APP_TABLE) as store:
        with store.draft("conv1") as d:
            d.set_model("m-a")
            d.append("cut short")
            d.stop("disconnected")
    mid = d.message_id
    where = ("--db", db_url, "--table", ref)

    sessions = json.loads(run("sessions", *where, "--json").stdout)
    assert [(s["id"], s["messages"], s["interrupted"]) for s in sessions] == [("conv1", 2, 1)]
    history = json.loads(run("history", "conv1", *where, "--json").stdout)
    assert [(m["id"], m["content"]) for m in history] == [("u1", "why?"), (mid, "cut short")]
    assert "(response interrupted)" in run("history", "conv1", *where).stdout
    audit = json.loads(run("audit", *where, "--json").stdout)
    assert [(r["id"], r["reason"]) for r in audit] == [(mid, "disconnected")]
    stats = json.loads(run("audit", "stats", *where, "--json").stdout)
    assert [(s["model"], s["interrupted"]) for s in stats] == [("m-a", 1)]
    # the group's options reach its subcommands
    assert json.loads(run("audit", *where, "--json", "stats").stdout) == stats
    export = run("audit", "export", "-", *where)
    assert [json.loads(x)["id"] for x in export.stdout.splitlines()] == [mid]
    assert json.loads(run("sweep", *where, "--json").stdout) == {"abandoned": 0}
    journal = isolated / "drafts.journal"
    journal.write_bytes(b"")
    result = run("recover", *where, "--journal", str(journal))
    assert result.exit_code == 0 and "0 messages recovered" in result.stdout, result.output

    result = run("continue", mid, *where, "--provider", "fake")
    assert result.exit_code == 0, result.output
    result = run("regenerate", mid, *where, "--provider", "fake")
    assert result.exit_code == 0, result.output
    with ChatStore(db_url, table=APP_TABLE) as store:
        assert store.get_message(mid).status == COMPLETE
        assert [m.id for m in store.history("conv1")] == ["u1", mid]  # no second row
    # chatpersist's own tables are not where the app's messages are
    assert run("history", "conv1", "--db", db_url).exit_code == 3


def test_table_by_name_and_schema(db_url: str, backend: str, isolated: Path) -> None:
    schema = None
    if backend == "postgresql":  # the test database is a schema on the search path
        options = str(sa.make_url(db_url).query["options"])
        schema = options.split("search_path=")[1]
    engine = sa.create_engine(db_url)
    md = sa.MetaData()
    table = app_table(md, "messages", "session_id", "created_at", schema=schema)
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(table).values(
            id="u1", session_id="s1", role="user", content="hello", created_at=datetime(2024, 1, 1),
        ))  # fmt: skip
    engine.dispose()
    where = ["--db", db_url, "--table", "messages", *(["--schema", schema] if schema else [])]
    result = run("migrate", *where)
    assert result.exit_code == 0, result.output
    history = json.loads(run("history", "s1", *where, "--json").stdout)
    assert [(m["id"], m["content"], m["status"]) for m in history] == [("u1", "hello", COMPLETE)]


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ("nosuchmodule_xyz:MESSAGES", "no module named 'nosuchmodule_xyz'"),
        ("{pkg}.nope:MESSAGES", "no module named '{pkg}.nope'"),
        ("{pkg}.db:MISSING", "has no attribute 'MISSING'"),
        ("{pkg}.db:NOT_A_TABLE", "is a str, not a chatpersist.retrofit.MessagesTable"),
        ("{pkg}.broken:MESSAGES", "RuntimeError: the app's config is missing"),
        ("{pkg}.db:", "module:attribute"),
        (":MESSAGES", "module:attribute"),
        ("messages; DROP TABLE x", "plain SQL identifier"),
        ("myapp.db", "module:attribute"),
        ("x" * 64, "plain SQL identifier"),
    ],
)
def test_a_bad_table_is_a_one_line_usage_error(
    isolated: Path, sqlite_url: str, table: str, needle: str
) -> None:
    pkg = write_app(isolated)
    (isolated / pkg / "broken.py").write_text('raise RuntimeError("the app\'s config is missing")')
    for command in (["migrate"], ["history", "s1"], ["audit"], ["audit", "stats"], ["sweep"]):
        result = run(*command, "--db", sqlite_url, "--table", table.format(pkg=pkg))
        assert_clean_error(result, 2, needle.format(pkg=pkg))


def test_schema_goes_with_a_table_name(isolated: Path, sqlite_url: str) -> None:
    pkg = write_app(isolated)
    result = run("sessions", "--db", sqlite_url, "--schema", "app")
    assert_clean_error(result, 2, "--schema needs --table")
    result = run("sessions", "--db", sqlite_url, "--table", f"{pkg}.db:MESSAGES", "--schema", "a")
    assert_clean_error(result, 2, "your MessagesTable names its schema")
    result = run("chat", "--db", sqlite_url, "--table", "messages", "--provider", "fake")
    assert_clean_error(result, 2, "--session is required with --table")


# -- 2. odd inputs: one line and the documented exit code, never a traceback ---------


@pytest.mark.parametrize(
    ("db", "needle"),
    [
        ("nonsense", "not a database URL: 'nonsense'"),
        ("", "not a database URL: ''"),
        ("postgresql://", "cannot use the database 'postgresql://'"),
        ("postgresql://me:secret@/x", "'postgresql://me:***@/x'"),
        ("sqlite:///nonexistent-dir/x.db", "unable to open database file"),
        ("mysql+nodriver://x", "unknown database or driver"),
        ("sqlite://", "in-memory SQLite"),
    ],
)
@pytest.mark.parametrize("command", [["history", "s1"], ["sessions"], ["audit"], ["migrate"]])
def test_odd_database_urls(isolated: Path, db: str, needle: str, command: list[str]) -> None:
    # libpq is pointed at a closed port, whatever the machine's default server
    result = run(*command, "--db", db, env={"PGHOST": "127.0.0.1", "PGPORT": "1"})
    assert_clean_error(result, 1, needle)
    assert "secret" not in result.output
    assert not (isolated / "nonexistent-dir").exists()


def test_a_database_file_that_is_not_one(isolated: Path) -> None:
    (isolated / "notes.txt").write_text("not a database, " * 1000)
    result = run("sessions", "--db", f"sqlite:///{isolated}/notes.txt")
    assert_clean_error(result, 1, "file is not a database")
    result = run("demo", "--db", "nonsense")
    assert_clean_error(result, 1, "not a database URL")


@pytest.mark.parametrize(
    "args",
    [
        ["audit", "--since", "999999999999d"],
        ["audit", "--since", "1000000w"],
        ["audit", "--since", "9" * 5000 + "s"],
        ["audit", "stats", "--since", "999999999999d"],
        ["audit", "export", "-", "--since", "999999999999d"],
        ["audit", "--since", "yesterday"],
    ],
)
def test_odd_since(sqlite_url: str, args: list[str]) -> None:
    assert_clean_error(run(*args, "--db", sqlite_url), 2, "--since")


def test_other_odd_inputs(sqlite_url: str, isolated: Path) -> None:
    result = run("migrate", "--db", sqlite_url, "--table", "no_such_table")
    assert_clean_error(result, 1, "no table 'no_such_table'")
    result = run("audit", "export", str(isolated / "no-dir" / "x.csv"), "--db", sqlite_url)
    assert_clean_error(result, 1, "cannot write", "No such file or directory")
    result = run("recover", "--db", sqlite_url, "--journal", str(isolated / "no-dir" / "j"))
    assert result.exit_code == 2 and "does not exist" in result.output
    assert not (isolated / "no-dir").exists()  # nothing created on the way
    result = run("sessions", "--db", sqlite_url, "--limit", "-1")
    assert result.exit_code == 2 and "--limit" in result.output
    result = run("fake-server", "--port", "99999")
    assert result.exit_code == 2 and "--port" in result.output
    for url in ("http://[::1", "http://host:99999", "nonsense", "ftp://host"):
        result = run("regenerate", "m1", "--db", sqlite_url, "--provider", "anthropic",
                     "--base-url", url)  # fmt: skip
        assert_clean_error(result, 2, "--base-url")
    result = run("audit", "--db", sqlite_url, "--reason", "x", "stats")
    assert_clean_error(result, 2, "--reason does not apply to `audit stats`")


def test_library_errors_keep_their_exit_codes_in_process(sqlite_url: str) -> None:
    assert_clean_error(run("history", "nope", "--db", sqlite_url), 4, "unknown session")
    result = run("continue", "nope", "--db", sqlite_url, "--provider", "fake")
    assert_clean_error(result, 4, "unknown message")
    with ChatStore(sqlite_url) as store:
        store.create_session(session_id="s1")
    result = run("history", "x" * 100, "--db", sqlite_url, "--json")
    assert result.exit_code == 4, result.output


# -- 3. control characters from the database are not sent to a terminal raw ------------


@pytest.fixture
def hostile(sqlite_url: str) -> tuple[str, str, str]:
    with ChatStore(sqlite_url) as store:
        sid = store.create_session(f"title {HOSTILE}")
        store.add_message(sid, "user", f"question {HOSTILE}")
        with store.draft(sid) as d:
            d.set_model(f"model-{HOSTILE}"[:64])
            d.append(f"answer {HOSTILE}")
            d.stop("disconnected")
    return sqlite_url, sid, d.message_id


def _no_raw_controls(text: str) -> None:
    for raw in ("\x1b]0;", "\x1b[2J", "\x9b", "\x07", "\r", "\x00", "\x7f"):
        assert raw not in text, (raw, text)


@pytest.mark.slow
@pytest.mark.parametrize("color", [False, True])  # True: as click writes to a terminal
def test_plain_output_escapes_control_characters(
    hostile: tuple[str, str, str], color: bool
) -> None:
    url, sid, mid = hostile
    for args in (["sessions"], ["history", sid], ["audit"], ["audit", "stats"]):
        result = run(*args, "--db", url, color=color)
        assert result.exit_code == 0, result.output
        _no_raw_controls(result.stdout)
    assert f"title {HOSTILE_SHOWN}" in run("sessions", "--db", url).stdout
    text = run("history", sid, "--db", url).stdout
    assert f"question {HOSTILE_SHOWN}" in text and f"answer {HOSTILE_SHOWN}" in text
    # continue prints the partial answer, then streams the rest
    result = run("continue", mid, "--db", url, "--provider", "fake", color=color)
    assert result.exit_code == 0, result.output
    _no_raw_controls(result.stdout)
    assert f"answer {HOSTILE_SHOWN}" in result.stdout


def test_json_output_stays_exact(hostile: tuple[str, str, str]) -> None:
    url, sid, mid = hostile
    for args in (["sessions", "--json"], ["history", sid, "--json"], ["audit", "--json"]):
        text = run(*args, "--db", url).stdout
        _no_raw_controls(text)
        assert "\\u009b" in text
    sessions = json.loads(run("sessions", "--json", "--db", url).stdout)
    assert sessions[0]["title"] == f"title {HOSTILE}"
    history = json.loads(run("history", sid, "--json", "--db", url).stdout)
    assert [m["content"] for m in history] == [f"question {HOSTILE}", f"answer {HOSTILE}"]
    lines = run("audit", "export", "-", "--db", url).stdout.splitlines()
    _no_raw_controls("\n".join(lines))
    assert json.loads(lines[0])["content"] == f"answer {HOSTILE}"


def test_csv_to_a_file_or_pipe_keeps_the_text(hostile: tuple[str, str, str]) -> None:
    url, _, _ = hostile
    rows = list(csv.DictReader(io.StringIO(run("sessions", "--csv", "--db", url).stdout)))
    assert rows[0]["title"] == f"title {HOSTILE}"


# -- 4. CSV cells a spreadsheet would run as formulas ----------------------------------

FORMULAS = {
    '=HYPERLINK("http://evil.example","click")': '\'=HYPERLINK("http://evil.example","click")',
    "+1+cmd|' /C calc'!A0": "'+1+cmd|' /C calc'!A0",
    "-2+3": "'-2+3",
    "@SUM(1+1)": "'@SUM(1+1)",
    "\t=1": "'\t=1",
    "\r=1": "'\r=1",
    "safe = text": "safe = text",
}


def test_csv_cells_are_not_formulas(sqlite_url: str, isolated: Path) -> None:
    ids: dict[str, str] = {}
    with ChatStore(sqlite_url) as store:
        for text in FORMULAS:
            sid = store.create_session(text)
            with store.draft(sid) as d:
                d.set_model(text)
                d.set_error(text)
                d.append(text)
                d.stop("disconnected")
            ids[d.message_id] = text
    out = isolated / "export.csv"
    result = run("audit", "export", str(out), "--db", sqlite_url, "--format", "csv")
    assert result.exit_code == 0, result.output
    for source in (out.read_bytes().decode("utf-8"),
                   run("audit", "export", "-", "--db", sqlite_url, "--format", "csv").stdout,
                   run("audit", "--csv", "--db", sqlite_url).stdout):  # fmt: skip
        records = list(csv.DictReader(io.StringIO(source, newline="")))
        assert len(records) == len(FORMULAS)
        for r in records:
            text = ids[r["id"]]
            assert r["model"] == FORMULAS[text]
            if "content" in r:
                assert (r["content"], r["error"]) == (FORMULAS[text], FORMULAS[text])
            assert r["created_at"][:4].isdigit() and r["length"].isdigit()
    titles = list(csv.DictReader(io.StringIO(run("sessions", "--csv", "--db", sqlite_url).stdout)))
    assert sorted(t["title"] for t in titles) == sorted(FORMULAS.values())
    # JSON keeps the text as it is
    lines = run("audit", "export", "-", "--db", sqlite_url).stdout.splitlines()
    assert sorted(json.loads(x)["content"] for x in lines) == sorted(FORMULAS)


def test_chat_escapes_control_characters_of_a_streamed_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from chatpersist.cli._chat import answer
    from chatpersist.providers import FakeModelServer, OpenAICompatible

    store = ChatStore(f"sqlite:///{tmp_path}/chat.db")
    try:
        store.migrate()
        sid = store.create_session()
        store.add_message(sid, "user", "colours?")
        with FakeModelServer("red \x1b[31m text \x9b2J", chunk_chars=3, delay=0) as fake:
            answer(store, OpenAICompatible(fake.base_url, "m"), sid)
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\x9b" not in out
        assert "\\x1b[31m" in out and "\\u009b2J" in out
        m = store.history(sid)[-1]
        assert m.content == "red \x1b[31m text \x9b2J"  # stored exactly
    finally:
        store.close()
