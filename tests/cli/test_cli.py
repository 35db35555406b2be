"""The `chatpersist` command as a user runs it: in-process through click's runner
(exit codes, output, files), and as a real process where the process is the point
(a terminal and Ctrl-C, the installed script's sys.path)."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from providers.sse_server import ScriptedServer, error

from chatpersist import ABANDONED, COMPLETE, ChatStore
from chatpersist.cli import cli as command
from chatpersist.providers import CANNED_ANSWER, FakeModelServer

CLI = [sys.executable, "-c", "from chatpersist.cli import main; main()"]


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, env: dict[str, str] | None = None) -> Ran:
    """The command in-process: its exit code and what it printed (an unexpected
    exception is raised here, as it would print a traceback)."""
    r = CliRunner().invoke(command, list(args), env=env)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return Ran(r.exit_code, r.stdout, r.stderr)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    u = f"sqlite:///{tmp_path}/cli.db"
    assert cli("migrate", "--db", u).returncode == 0
    yield u


@pytest.mark.slow
def test_demo_end_to_end() -> None:
    start = time.monotonic()
    run = cli("demo")
    took = time.monotonic() - start
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "[1/5]" in out and "[5/5]" in out
    assert "(response interrupted)" in out and "finish_reason=disconnected" in out
    assert "status=complete" in out and "one row" in out
    assert out.count(CANNED_ANSWER[-60:]) >= 2  # continued to the end, shown again complete
    assert took < 20


def test_demo_keeps_its_database(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/kept.db"
    assert cli("demo", "--fast", "--db", db).returncode == 0
    sessions = json.loads(cli("sessions", "--db", db, "--json").stdout)
    hist = json.loads(cli("history", sessions[0]["id"], "--db", db, "--json").stdout)
    assert [(m["role"], m["status"]) for m in hist] == [("user", COMPLETE), ("assistant", COMPLETE)]
    assert hist[1]["content"] == CANNED_ANSWER


def read_until(fd: int, pattern: str, timeout: float = 20) -> str:
    buf = ""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, buf):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} in {buf!r}")
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                buf += os.read(fd, 4096).decode(errors="replace")
            except OSError:
                break
    return buf


def _signal_state(pid: int) -> str:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return "unknown"
    return " ".join(x for x in status.read_text().splitlines() if x.startswith("Sig"))


@pytest.mark.slow
def test_chat_in_a_terminal_with_ctrl_c_mid_answer(url: str) -> None:
    with FakeModelServer(delay=0.05) as fake:
        pid, fd = pty.fork()
        if pid == 0:  # the child: the real entry point on a terminal
            # As a shell does for a foreground program: a run started in the background
            # (CI) ignores SIGINT, and the ignore would pass through exec to the chat.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execv(sys.executable, [*CLI, "chat", "--db", url, "--provider", "openai",
                                      "--base-url", fake.base_url, "--model", "fake"])  # fmt: skip
        out = read_until(fd, r"you> ")
        sid = re.search(r"\[session (\w+)\]", out)
        assert sid
        os.write(fd, b"tell me\n")
        read_until(fd, r"Saving an answer only when")
        signals = _signal_state(pid)
        os.kill(pid, signal.SIGINT)  # Ctrl-C mid-answer
        try:
            read_until(fd, r"stopped: the partial answer is kept[\s\S]*you> ")
        except AssertionError as exc:  # say how the child handled SIGINT
            raise AssertionError(f"{exc}\nthe chat process before Ctrl-C: {signals}") from None
        os.write(fd, b"\x04")  # Ctrl-D at the prompt exits
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    hist = json.loads(cli("history", sid[1], "--db", url, "--json").stdout)
    assert [m["role"] for m in hist] == ["user", "assistant"]
    answer = hist[1]
    assert answer["interrupted"] and answer["finish_reason"] == "stopped"
    assert CANNED_ANSWER.startswith(answer["content"]) and len(answer["content"]) >= 25
    text = cli("history", sid[1], "--db", url).stdout
    assert "(response interrupted)" in text


def populate(url: str) -> tuple[ChatStore, dict[str, str], object]:
    store = ChatStore(url)
    sid = store.create_session("audit me")
    store.add_message(sid, "user", "q")
    ids = {"session": sid}
    with store.draft(sid) as d:
        d.set_model("m-a")
        d.append("a complete answer")
    ids["complete"] = d.message_id
    with store.draft(sid) as d:
        d.set_model("m-a")
        d.append("cut, the user left")
        d.stop("disconnected")
    ids["cut"] = d.message_id
    live = store.draft(sid)
    live.__enter__()
    live.append("being written right now")
    live.flush(timeout=10)
    ids["live"] = live.message_id
    return store, ids, live


def test_audit_listings_and_exports(url: str, tmp_path: Path) -> None:
    store, ids, live = populate(url)
    try:
        rows = json.loads(cli("audit", "--db", url, "--json").stdout)
        assert [(r["id"], r["reason"], r["length"], r["model"]) for r in rows] == [
            (ids["cut"], "disconnected", len("cut, the user left"), "m-a")
        ]
        table = cli("audit", "--db", url).stdout
        assert ids["cut"] in table and ids["live"] not in table and "\x1b[" not in table
        parsed = list(csv.DictReader(io.StringIO(cli("audit", "--db", url, "--csv").stdout)))
        assert [r["id"] for r in parsed] == [ids["cut"]]
        assert json.loads(cli("audit", "--db", url, "--json", "--reason", "stopped").stdout) == []
        assert cli("audit", "--db", url, "--since", "yesterday").returncode == 2
        for fmt in ("jsonl", "csv"):
            f = tmp_path / f"export.{fmt}"
            assert cli("audit", "export", "--db", url, "--format", fmt, str(f)).returncode == 0
            text = f.read_text()
            records = (
                [json.loads(x) for x in text.splitlines()]
                if fmt == "jsonl"
                else list(csv.DictReader(io.StringIO(text)))
            )
            assert [(r["id"], r["content"]) for r in records] == [(ids["cut"], "cut, the user left")]
        stats = json.loads(cli("audit", "stats", "--db", url, "--json").stdout)
        assert {(s["model"], s["reason"], s["answers"], s["interrupted"]) for s in stats} == {
            ("m-a", "disconnected", 2, 1)
        }
        sessions = json.loads(cli("sessions", "--db", url, "--json").stdout)
        assert (sessions[0]["id"], sessions[0]["messages"], sessions[0]["interrupted"]) == (
            ids["session"], 4, 1,
        )
        history = cli("history", ids["session"], "--db", url).stdout
        assert "still generating" in history and "(response interrupted)" in history
        # sweep while a draft is live leaves it live
        assert json.loads(cli("sweep", "--db", url, "--json").stdout) == {"abandoned": 0}
        assert store.get_message(ids["live"]).live
    finally:
        live.__exit__(None, None, None)  # type: ignore[attr-defined]
        store.close()
    assert ABANDONED == "abandoned"


def test_continue_against_a_local_server(url: str) -> None:
    with ChatStore(url) as store:
        sid = store.create_session()
        store.add_message(sid, "user", "why?")
        with store.draft(sid) as d:
            d.append(CANNED_ANSWER[:200])
            d.stop("disconnected")
    with FakeModelServer(delay=0.001) as fake:
        run = cli("continue", d.message_id, "--db", url, "--base-url", fake.base_url, "--model", "f")
    assert run.returncode == 0, run.stderr
    hist = json.loads(cli("history", sid, "--db", url, "--json").stdout)
    assert len(hist) == 2
    assert (hist[1]["id"], hist[1]["content"], hist[1]["status"]) == (d.message_id, CANNED_ANSWER, COMPLETE)


def test_clear_errors_and_exit_codes(tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path}/empty.db"
    run = cli("history", "abc", "--db", empty)
    assert run.returncode == 3 and "chatpersist migrate" in run.stderr
    assert cli("migrate", "--db", empty).returncode == 0
    run = cli("history", "abc", "--db", empty)
    assert run.returncode == 4 and "unknown session" in run.stderr
    run = cli("continue", "nope", "--db", empty, "--provider", "fake")
    assert run.returncode == 4 and "unknown message" in run.stderr
    run = cli("history", "abc", "--db", "nonsense")
    assert run.returncode == 1 and "not a database URL" in run.stderr
    run = cli("continue", "x", "--db", empty)
    assert run.returncode == 2 and "--base-url" in run.stderr
    run = cli("migrate", "--db", empty, "--table", "messages; DROP TABLE x")
    assert run.returncode == 2 and "plain SQL identifier" in run.stderr


def test_a_provider_that_refuses(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    with ChatStore(url) as store:
        store.migrate()
        sid = store.create_session()
        store.add_message(sid, "user", "q")
        with store.draft(sid) as d:
            d.append("partial")
            d.stop()
    server = ScriptedServer().then(error(401, "Incorrect API key provided"))
    try:
        run = cli("continue", d.message_id, "--db", url, "--base-url", server.url, "--model", "m")
    finally:
        server.close()
    assert run.returncode == 5
    assert "401" in run.stderr and "Incorrect API key provided" in run.stderr


APP_DB = """
from chatpersist.retrofit import MessagesTable

MESSAGES = MessagesTable("chat_messages", columns={"session_id": "conversation_id"})
"""


def test_table_import_path_from_the_current_directory(tmp_path: Path) -> None:
    """As the installed `chatpersist` script runs (the current directory is not on
    sys.path by itself: `python -P`), `--table myapp.db:MESSAGES` finds the app's
    module in the current directory, as uvicorn finds an app."""
    import sqlalchemy as sa

    import chatpersist

    url = f"sqlite:///{tmp_path}/app.db"
    engine = sa.create_engine(url)
    sa.Table(
        "chat_messages", sa.MetaData(),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("conversation_id", sa.String(64)), sa.Column("role", sa.String(16)),
        sa.Column("content", sa.Text()), sa.Column("created_at", sa.DateTime()),
    ).create(engine)  # fmt: skip
    engine.dispose()
    (tmp_path / "myapp_cli").mkdir()
    (tmp_path / "myapp_cli" / "__init__.py").write_text("")
    (tmp_path / "myapp_cli" / "db.py").write_text(APP_DB)
    source_root = str(Path(chatpersist.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": source_root}
    entry = [sys.executable, "-P", "-c", "from chatpersist.cli import main; main()"]
    for args in (["migrate"], ["sessions", "--json"]):
        run = subprocess.run(
            [*entry, *args, "--db", url, "--table", "myapp_cli.db:MESSAGES"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
    run = subprocess.run(
        [*entry, "migrate", "--db", url, "--table", "myapp_cli.db:MESSAGES"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert run.returncode == 2 and "no module named 'myapp_cli'" in run.stderr
    assert "Traceback" not in run.stderr


def on_a_terminal(*args: str) -> str:
    """The CLI's stdout when it is a terminal."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([*CLI, *args], stdout=slave, stderr=subprocess.DEVNULL)
    finally:
        os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0
    return out.decode()


@pytest.mark.slow
def test_csv_on_a_terminal_escapes_control_characters(url: str) -> None:
    title = "t\x1b]0;owned\x07\x1b[2J\x9b1m"
    with ChatStore(url) as store:
        sid = store.create_session(title)
        with store.draft(sid) as d:
            d.append(f"=cmd {title}")
            d.stop("disconnected")
    for args in (["sessions", "--csv"], ["audit", "export", "-", "--format", "csv"]):
        shown = on_a_terminal(*args, "--db", url)
        assert "t\\x1b]0;owned\\x07\\x1b[2J\\u009b1m" in shown
        assert not any(c in shown for c in "\x1b\x07\x9b"), repr(shown)
    # piped, the text stays as it is (but for the quote that keeps it from being a formula)
    rows = list(csv.DictReader(io.StringIO(cli("sessions", "--csv", "--db", url).stdout)))
    assert rows[0]["title"] == title
    rows = list(csv.DictReader(io.StringIO(cli("audit", "export", "-", "--db", url,
                                               "--format", "csv").stdout)))  # fmt: skip
    assert rows[0]["content"] == f"'=cmd {title}"
