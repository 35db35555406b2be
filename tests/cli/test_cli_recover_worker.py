"""`chatpersist recover-worker`: completes, as a process of its own, the answers whose
worker died (opted in with `recover_with`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from chatpersist import ChatStore
from chatpersist.providers import CANNED_ANSWER

CLI = [sys.executable, "-c", "from chatpersist.cli import main; main()"]


def test_recover_worker_once_completes_a_dead_workers_answer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    with ChatStore(url) as store:
        store.migrate()
        sid = store.create_session()
        d = store.draft(sid, recover_with="fake-model")
        d.__enter__()
        d.append(CANNED_ANSWER[:30])
        d.flush()
        plain = store.draft(sid)
        plain.__enter__()
        plain.append("not opted in")
    # The store closed with both open (a worker shutting down): ended 'cancelled'.
    run = subprocess.run(
        [*CLI, "recover-worker", "--db", url, "--provider", "fake", "--once", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report == {"claimed": [d.message_id], "completed": 1, "failed": 0}
    with ChatStore(url) as store:
        m = store.get_message(d.message_id)
        assert m.complete and m.content == CANNED_ANSWER and m.recoveries == 1
        assert store.get_message(plain.message_id).interrupted
    # Nothing is left to do: a second run claims nothing.
    again = subprocess.run(
        [*CLI, "recover-worker", "--db", url, "--provider", "fake", "--once"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0 and again.stdout == ""
