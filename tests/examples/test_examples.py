"""The retrofit example: the "before" app loses the answer, the "after" app keeps it,
and the change between them stays small."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import ROOT, changed_lines

EXAMPLE = ROOT / "examples" / "retrofit"


def run(script: str, db: Path) -> str:
    env = {**os.environ, "CHAT_DB_URL": f"sqlite:///{db}"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLE / script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_before_loses_the_answer_after_keeps_it(tmp_path: Path) -> None:
    before = run("before.py", tmp_path / "before.db")
    assert "assistant:" not in before
    after = run("after.py", tmp_path / "after.db")
    assert "assistant: Here is a long answer" in after
    assert "(response interrupted)" in after


def test_the_change_is_at_most_ten_lines_besides_the_migration() -> None:
    changed = changed_lines(EXAMPLE / "before.py", EXAMPLE / "after.py")
    added = [x for x in changed if x.startswith("+")]
    removed = [x for x in changed if x.startswith("-")]
    assert len(added) <= 10 and len(removed) <= 10, changed
    readme = (EXAMPLE / "README.md").read_text()
    assert all(line[1:] in readme for line in added)  # the README shows the current diff
