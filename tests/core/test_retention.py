"""Retention: `clean()` / `chatpersist sweep --delete-empty --older-than AGE` deletes
abandoned drafts that hold nothing once old enough, counts first with a dry run, and
never touches an answer with text, a live draft or one waiting for its recovery."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from chatpersist import ChatStore, UnknownMessage
from chatpersist.testing import ManualClock

CLI = [sys.executable, "-c", "from chatpersist.cli import main; main()"]


def _cut(store: ChatStore, text: str = "", **options: object) -> str:
    sid = store.create_session()
    with store.draft(sid, **options) as d:  # type: ignore[arg-type]
        if text:
            d.append(text)
        d.stop("disconnected")
    return d.message_id


def test_clean_deletes_only_old_empty_abandoned_drafts(
    make_store: Callable[..., ChatStore],
) -> None:
    clock = ManualClock()
    store = make_store(clock=clock)
    old_empty = _cut(store)
    old_text = _cut(store, "a partial answer")
    sid = store.create_session()
    with store.draft(sid) as tool_only:  # no text, but a part: kept
        tool_only.append_tool_call("c1", "f", '{"a"')
        tool_only.stop("disconnected")
    clock.advance(40 * 86400)
    new_empty = _cut(store)
    live = store.draft(store.create_session())
    live.__enter__()
    recovering = store.draft(store.create_session(), recover_with="x")
    recovering.__enter__()
    store.close()  # ends both: live as cancelled (interrupted), recovering as recoverable

    store = make_store(clock=clock)
    dry = store.clean(timedelta(days=30), dry_run=True)
    assert (dry.deleted, dry.dry_run) == (1, True)
    assert store.get_message(old_empty).interrupted  # nothing changed
    done = store.clean(timedelta(days=30))
    assert done.deleted == 1 and not done.dry_run
    with pytest.raises(UnknownMessage):
        store.get_message(old_empty)
    for kept in (old_text, tool_only.message_id, new_empty, recovering.message_id):
        store.get_message(kept)
    assert store.get_message(recovering.message_id).recovering
    # Without an age, every empty abandoned draft goes (the one cut 'cancelled' too).
    assert store.clean().deleted == 2
    with pytest.raises(ValueError):
        store.clean(timedelta(days=-1))


def test_sweep_command_dry_run_and_delete(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    with ChatStore(url) as store:
        store.migrate()
        empty = _cut(store)
        kept = _cut(store, "text")

    def sweep(*args: str) -> dict[str, object]:
        run = subprocess.run(
            [*CLI, "sweep", "--db", url, "--json", *args], capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        return dict(json.loads(run.stdout))

    assert sweep("--delete-empty", "--dry-run") == {
        "abandoned": 0, "deleted": 1, "dry_run": True,
    }  # fmt: skip
    assert sweep("--delete-empty", "--older-than", "30d") == {
        "abandoned": 0, "deleted": 0, "dry_run": False,
    }  # fmt: skip
    assert sweep("--delete-empty") == {"abandoned": 0, "deleted": 1, "dry_run": False}
    with ChatStore(url) as store:
        store.get_message(kept)
        with pytest.raises(UnknownMessage):
            store.get_message(empty)
    bad = subprocess.run([*CLI, "sweep", "--db", url, "--older-than", "30d"],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "--delete-empty" in bad.stderr
