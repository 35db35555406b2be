"""The `chatpersist` entry point, run as a user would: in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

from chatpersist import ChatStore


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from chatpersist.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_shows_the_interrupted_answer() -> None:
    run = cli("demo", "--fast")
    assert run.returncode == 0, run.stderr
    assert "client disconnected" in run.stdout
    assert "(response interrupted)" in run.stdout
    assert "finish_reason=disconnected" in run.stdout


def test_migrate_then_history_json(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    assert cli("migrate", "--db", url).returncode == 0
    with ChatStore(url) as store:
        sid = store.create_session()
        store.add_message(sid, "user", "hello")
        with store.draft(sid) as d:
            d.append("half an ans")
            d.stop("disconnected")
    run = cli("history", sid, "--db", url, "--json")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert [(m["role"], m["content"], m["interrupted"]) for m in data] == [
        ("user", "hello", False),
        ("assistant", "half an ans", True),
    ]
    text = cli("history", sid, "--db", url)
    assert "assistant: half an ans\n\n(response interrupted)" in text.stdout


def test_clear_errors_and_exit_codes(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    run = cli("history", "abc", "--db", url)
    assert run.returncode == 3 and "chatpersist migrate" in run.stderr
    assert cli("migrate", "--db", url).returncode == 0
    run = cli("history", "abc", "--db", url)
    assert run.returncode == 4 and "unknown session" in run.stderr
    run = cli("history", "abc", "--db", "nonsense")
    assert run.returncode == 1 and "not a database URL" in run.stderr
