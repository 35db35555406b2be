"""Progress of long CLI jobs (audit export, migrate, recover): on stderr when it is a
terminal, and nothing extra anywhere else (pipes and captured output are unchanged)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import subprocess_env

from chatpersist import STREAMING, ChatStore
from chatpersist._journal import Journal, Record
from chatpersist.cli import cli as command

CLI = [sys.executable, "-c", "from chatpersist.cli import main; main()"]
CLI_NO_RICH = [
    sys.executable, "-c",
    "import sys; sys.modules['rich'] = None\nfrom chatpersist.cli import main; main()",
]  # fmt: skip
ANSWERS = 250


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A database with ANSWERS interrupted answers."""
    u = f"sqlite:///{tmp_path}/big.db"
    with ChatStore(u) as store:
        store.migrate()
        sid = store.create_session()
        for i in range(ANSWERS):
            with store.draft(sid) as d:
                d.append(f"answer {i}")
                d.stop("disconnected")
    return u


def journal_of(url: str, path: Path) -> Path:
    """A journal left behind, with a record for each answer."""
    with ChatStore(url) as store:
        found = store.interrupted()
    Journal(path).append([
        Record(str(m.id), str(m.session_id), "assistant", m.content + " and more", m.seq + 1, STREAMING,
               "cancelled", {}, "2026-01-01T00:00:00")
        for m in found
    ])  # fmt: skip
    return path


def piped(*args: str) -> Ran:
    """The command in-process, its output captured (not a terminal)."""
    r = CliRunner().invoke(command, list(args))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return Ran(r.exit_code, r.stdout, r.stderr)


def stderr_on_a_terminal(*args: str, cli: list[str] = CLI, stdout_too: bool = False) -> Ran:
    """Run with stderr on a terminal (and stdout too with `stdout_too`, else a pipe)."""
    master, slave = pty.openpty()
    env = {**subprocess_env(), "COLUMNS": "120", "TERM": "xterm-256color"}
    try:
        proc = subprocess.Popen(
            [*cli, *args], stdout=slave if stdout_too else subprocess.PIPE, stderr=slave, env=env
        )
    finally:
        os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout is not None else ""
    if proc.stdout is not None:
        proc.stdout.close()
    return Ran(proc.wait(timeout=120), out, shown.decode(errors="replace"))


def test_pipes_get_what_they_always_got(url: str, tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    run = piped("audit", "export", "--db", url, str(export))
    assert run.returncode == 0
    assert run.stderr == f"{ANSWERS} interrupted answers written to {export}\n"
    assert run.stdout == ""
    assert len(export.read_text().splitlines()) == ANSWERS
    run = piped("audit", "export", "--db", url, "-", "--format", "csv")
    assert (run.returncode, run.stderr) == (0, "")
    assert len(run.stdout.splitlines()) == ANSWERS + 1
    run = piped("migrate", "--db", url)
    assert (run.returncode, run.stdout, run.stderr) == (0, "database is up to date\n", "")
    journal = journal_of(url, tmp_path / "left.journal")
    run = piped("recover", "--db", url, "--journal", str(journal))
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == f"{ANSWERS} messages recovered from {journal}\n"


@pytest.mark.slow
def test_progress_on_a_terminal(url: str, tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    run = stderr_on_a_terminal("audit", "export", "--db", url, "--format", "csv", str(export))
    assert run.returncode == 0, run.stderr
    assert "reading interrupted answers" in run.stderr
    assert f"writing {export}" in run.stderr and f"{ANSWERS}/{ANSWERS}" in run.stderr
    assert "✓" in run.stderr  # rich's finished mark
    assert f"{ANSWERS} interrupted answers written" in run.stderr
    assert len(export.read_text().splitlines()) == ANSWERS + 1  # the file as without a terminal

    run = stderr_on_a_terminal("migrate", "--db", url)
    assert run.returncode == 0 and run.stdout == "database is up to date\n"
    assert "migrating" in run.stderr and "✓" in run.stderr

    journal = journal_of(url, tmp_path / "left.journal")
    run = stderr_on_a_terminal("recover", "--db", url, "--journal", str(journal))
    assert run.returncode == 0 and run.stdout == f"{ANSWERS} messages recovered from {journal}\n"
    assert "replaying the journal" in run.stderr and "✓" in run.stderr


@pytest.mark.slow
def test_progress_on_a_terminal_without_rich(url: str, tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    run = stderr_on_a_terminal("audit", "export", "--db", url, str(export), cli=CLI_NO_RICH)
    assert run.returncode == 0, run.stderr
    assert f"writing {export}  {ANSWERS}/{ANSWERS}" in run.stderr and "done" in run.stderr
    run = stderr_on_a_terminal("migrate", "--db", url, cli=CLI_NO_RICH)
    assert run.returncode == 0 and "migrating" in run.stderr and "done" in run.stderr
    assert "\x1b" not in run.stderr  # one plain line, rewritten with a carriage return


@pytest.mark.slow
def test_no_progress_over_an_export_to_the_same_terminal(url: str) -> None:
    run = stderr_on_a_terminal("audit", "export", "--db", url, "-", stdout_too=True)
    assert run.returncode == 0
    assert "reading interrupted answers" not in run.stderr and "writing" not in run.stderr
    assert run.stderr.count('"reason": "disconnected"') == ANSWERS
