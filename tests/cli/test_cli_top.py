"""`chatpersist top` as a user runs it: a real process, on a pipe (plain lines, no
escape codes), as JSON, and on a terminal (rich, or plain redraws without rich)."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import subprocess_env

from chatpersist import ChatStore, Draft
from chatpersist.cli import cli as command

CLI = [sys.executable, "-c", "from chatpersist.cli import main; main()"]
#: The same, as if rich were not installed.
CLI_NO_RICH = [
    sys.executable, "-c",
    "import sys; sys.modules['rich'] = None\nfrom chatpersist.cli import main; main()",
]  # fmt: skip


@dataclass
class Writing:
    url: str
    store: ChatStore
    session: str
    live: Draft
    cut: str


@pytest.fixture
def writing(tmp_path: Path) -> Iterator[Writing]:
    """A database with an answer being written (held open here), one complete and one
    the user stopped."""
    url = f"sqlite:///{tmp_path}/top.db"
    store = ChatStore(url)
    store.migrate()
    sid = store.create_session("ops")
    with store.draft(sid) as d:
        d.append("a complete answer")
    with store.draft(sid) as d:
        d.set_model("m\x1b[31m-1")  # a control character from the database: shown escaped
        d.append("cut short")
        d.stop("disconnected")
    live = store.draft(sid)
    live.__enter__()
    live.append("being written")
    live.flush(timeout=10)
    try:
        yield Writing(url, store, sid, live, d.message_id)
    finally:
        live.__exit__(None, None, None)
        store.close()


def top(*args: str, cli: list[str] = CLI) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli, "top", *args], capture_output=True, text=True, timeout=120, env=subprocess_env()
    )


def test_json_prints_one_snapshot(writing: Writing) -> None:
    run = top("--db", writing.url, "--json")
    assert run.returncode == 0, run.stderr
    snap = json.loads(run.stdout)
    assert snap["totals"] == {
        "live": 1, "stalled": 0, "recovering": 0, "interrupted_last_hour": 1, "complete_last_hour": 1,
    }  # fmt: skip
    (answer,) = snap["answers"]
    assert (answer["message_id"], answer["state"], answer["length"]) == (
        writing.live.message_id, "live", len("being written"),
    )  # fmt: skip
    (cut,) = snap["interrupted"]
    assert (cut["message_id"], cut["reason"], cut["model"]) == (
        writing.cut, "disconnected", "m\x1b[31m-1",
    )  # fmt: skip
    assert (snap["lease_seconds"], snap["stalled_after"]) == (30.0, 4.0)
    assert "\x1b" not in run.stdout  # JSON escapes it
    limited = json.loads(top("--db", writing.url, "--json", "--limit", "0").stdout)
    assert (limited["answers"], limited["interrupted"]) == ([], [])


def test_once_prints_plain_lines(writing: Writing) -> None:
    run = top("--db", writing.url, "--once")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "\x1b" not in out, repr(out)
    assert "live 1   stalled 0   interrupted (1 h) 1   complete (1 h) 1" in out
    assert "writing now (1;" in out and "last interrupted" in out
    lines = out.splitlines()
    assert any(writing.live.message_id in x and x.endswith("live") for x in lines)
    cut = next(x for x in lines if writing.cut in x)
    assert "disconnected" in cut and "m\\x1b[31m-1" in cut


def test_on_a_pipe_it_prints_plain_snapshots(writing: Writing) -> None:
    for cli in (CLI, CLI_NO_RICH):
        run = top("--db", writing.url, "--count", "2", "--interval", "0.1", cli=cli)
        assert run.returncode == 0, run.stderr
        assert "\x1b" not in run.stdout and "\x1b" not in run.stderr
        assert run.stdout.count("writing now") == 2
        assert run.stdout.count(writing.live.message_id) == 2


def test_usage_errors() -> None:
    for option in ("--interval", "--stalled-after", "--count"):
        run = CliRunner().invoke(command, ["top", option, "0"])
        assert run.exit_code == 2 and option in run.stderr


def on_a_terminal(cli: list[str], *args: str, interrupt_after: str | None = None) -> str:
    """What `top` writes to a terminal; with `interrupt_after`, Ctrl-C once that shows."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real entry point on a terminal
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.environ.update(subprocess_env(), COLUMNS="200", LINES="50", TERM="xterm-256color")
        os.execv(sys.executable, [*cli, "top", *args])
    out = b""
    interrupted = False
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
        if interrupt_after and not interrupted and interrupt_after.encode() in out:
            os.kill(pid, signal.SIGINT)
            interrupted = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


@pytest.mark.slow
def test_on_a_terminal_rich_redraws_in_place(writing: Writing) -> None:
    shown = on_a_terminal(CLI, "--db", writing.url, "--count", "2", "--interval", "0.2")
    assert "\x1b[" in shown  # styles and cursor moves
    assert shown.count("Ctrl-C to quit") >= 2
    assert writing.live.message_id in shown and "disconnected" in shown
    assert "m\\x1b[31m-1" in shown  # the database's ESC never reaches the terminal raw


@pytest.mark.slow
def test_on_a_terminal_without_rich(writing: Writing) -> None:
    shown = on_a_terminal(CLI_NO_RICH, "--db", writing.url, "--count", "2", "--interval", "0.2")
    assert shown.count("Ctrl-C to quit") == 2
    assert "\x1b[2J" in shown  # click clears the screen between snapshots
    assert writing.live.message_id in shown


@pytest.mark.slow
def test_ctrl_c_ends_top(writing: Writing) -> None:
    shown = on_a_terminal(CLI, "--db", writing.url, interrupt_after="Ctrl-C to quit")
    assert "Traceback" not in shown and "aborted" not in shown
