"""The journal as a store uses it: files that are not journals, one owner at a time,
replays that never kill the writer, and a journal on a full disk."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from support import wait_until
from tcp_proxy import TcpProxy

from chatpersist import (
    COMPLETE,
    STREAMING,
    ChatStore,
    JournalLocked,
    NotAJournal,
)
from chatpersist._journal import Journal, Record
from chatpersist.cli import cli

README_LIKE = b"# My project\n\nSome notes that are not a journal.\n" * 400


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_that_is_not_a_journal_is_refused_and_untouched(
    store: ChatStore, db_url: str, tmp_path: Path
) -> None:
    readme = tmp_path / "README.md"
    readme.write_bytes(README_LIKE)
    before = _digest(readme)
    with pytest.raises(NotAJournal, match="untouched"):
        store.recover_from(readme)
    with pytest.raises(NotAJournal):
        ChatStore(db_url, journal=readme)
    assert _digest(readme) == before
    # The command line: exit code 6, the file byte for byte as it was.
    ran = CliRunner().invoke(cli, ["recover", "--db", db_url, "--journal", str(readme)])
    assert ran.exit_code == 6, ran.stderr
    assert "not a chatpersist journal" in ran.stderr
    assert _digest(readme) == before


def test_one_store_owns_a_journal(db_url: str, store: ChatStore, tmp_path: Path) -> None:
    journal = tmp_path / "drafts.journal"
    owner = ChatStore(db_url, journal=journal)
    try:
        with pytest.raises(JournalLocked):
            ChatStore(db_url, journal=journal)
        with pytest.raises(JournalLocked):
            store.recover_from(journal)
        assert owner.recover_from(journal) == 0  # its own journal: fine
    finally:
        owner.close()
    ChatStore(db_url, journal=journal).close()  # free again once closed


@pytest.mark.slow
def test_recover_a_journal_whose_owner_was_killed(
    store: ChatStore, db_url: str, tmp_path: Path
) -> None:
    journal = tmp_path / "drafts.journal"
    sid = store.create_session()
    with store.draft(sid, message_id="orphan") as d:
        d.append("in the database ")
        d.stop()
    Journal(journal).append(
        [
            Record("orphan", sid, "assistant", "in the database and the journal", 5,
                   STREAMING, "cancelled", {}, "2026-01-01T00:00:00", None)
        ]
    )  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from chatpersist import ChatStore
            ChatStore({db_url!r}.replace("x", "x"), journal={str(journal)!r}, spill_after=1)
            print("ready", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(JournalLocked):
            store.recover_from(journal)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    store.recover_from(journal)  # the owner is dead: its lock went with it


def test_a_replay_that_cannot_apply_a_record_goes_on(
    store: ChatStore, db_url: str, tmp_path: Path, backend: str
) -> None:
    # One record's conversation was deleted through another server, another's status
    # breaks a constraint: both are quarantined, the rest applied, the writer goes on.
    journal = tmp_path / "drafts.journal"
    sid = store.create_session()
    gone = store.create_session()
    ids = {}
    for name, session in (("ok", sid), ("gone", gone), ("bad", sid)):
        with store.draft(session) as d:
            d.append("first ")
            d.stop()
        ids[name] = d.message_id
    store.engine.dispose()
    L = store.layout
    with store.engine.begin() as conn:
        assert L.sessions is not None
        conn.execute(sa.delete(L.sessions).where(L.sessions.c.id == gone))
        tokens: dict[str, str | None] = dict(conn.execute(sa.select(L.id, L.writer)).all())

    def rec(name: str, text: str, status: str = STREAMING) -> Record:
        session = gone if name == "gone" else sid
        return Record(ids[name], session, "assistant", text, 9, status, "cancelled", {},
                      "2026-01-01T00:00:00", tokens.get(ids[name]))  # fmt: skip

    Journal(journal).append(
        [rec("gone", "first lost"), rec("bad", "first bad", "bogus"), rec("ok", "first kept")]
    )
    with ChatStore(db_url, journal=journal) as again:
        assert again.get_message(ids["ok"]).content == "first kept"
        assert again.get_message(ids["bad"]).content == "first "
        with again.draft(sid) as d:  # the writer thread is alive
            d.append("still writing")
        assert again.get_message(d.message_id).status == COMPLETE
    quarantine = Path(str(journal) + ".quarantine").read_text()
    assert ids["gone"] in quarantine and ids["bad"] in quarantine
    assert ids["ok"] not in quarantine
    assert journal.stat().st_size == 0


SPILLER = textwrap.dedent("""
    import resource, signal, sys, threading, time
    from chatpersist import ChatStore
    url, sid, journal = sys.argv[1:4]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit raises EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (300, resource.RLIM_INFINITY))
    lifted = threading.Event()
    def lift(*_):
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        lifted.set()
    signal.signal(signal.SIGUSR1, lift)
    store = ChatStore(url, journal=journal, every_chunks=1, spill_after=0.5)
    with store.draft(sid, message_id="full") as d:
        d.append("before the cut ")
        d.flush(timeout=10)
        print("flushed", flush=True)
        sys.stdin.readline()  # the parent cuts the database off
        for i in range(20):
            d.append(f"w{i} ")
            time.sleep(0.05)
        time.sleep(2)
        print("errors", store.stats.journal_errors, "spilled", store.stats.spilled, flush=True)
        lifted.wait(30)
        time.sleep(1.5)
        print("errors", store.stats.journal_errors, "spilled", store.stats.spilled, flush=True)
        sys.stdin.readline()  # the parent gives the database back
    store.close()
    print("closed", flush=True)
""")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_full_disk_keeps_the_draft_in_memory(
    store: ChatStore, db_url: str, tmp_path: Path
) -> None:
    real = sa.make_url(db_url)
    proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
    url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    journal = tmp_path / "drafts.journal"
    sid = store.create_session()
    child = subprocess.Popen(
        [sys.executable, "-c", SPILLER, url, sid, str(journal)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "flushed"
        proxy.cut()
        child.stdin.write("\n")
        child.stdin.flush()
        errors, spilled = child.stdout.readline().split()[1::2]
        assert int(errors) > 0 and int(spilled) == 0  # the disk is "full": kept in memory
        child.send_signal(signal.SIGUSR1)  # space again
        errors2, spilled2 = child.stdout.readline().split()[1::2]
        assert int(spilled2) > 0
        proxy.restore()
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "closed"
        child.wait(30)
    finally:
        child.kill()
        proxy.close()
    stderr = child.stderr.read() if child.stderr else ""
    assert stderr.count("cannot write the journal") == 1, stderr  # logged once
    m = store.get_message("full")
    expected = "before the cut " + "".join(f"w{i} " for i in range(20))
    assert (m.content, m.status) == (expected, COMPLETE)
    wait_until(lambda: journal.stat().st_size == 0, what="journal replayed")


def test_a_journal_of_the_previous_release_is_still_replayed(
    store: ChatStore, db_url: str, tmp_path: Path
) -> None:
    # 0.1 wrote one JSON object a line, without header; a crash during an outage may
    # have left one behind an upgrade.
    import json

    sid = store.create_session()
    with store.draft(sid, message_id="old") as d:
        d.append("in the database ")
        d.stop()
    L = store.layout
    with store.engine.begin() as conn:  # as 0.1 left its rows: no writer token
        conn.execute(sa.update(L.messages).values({L.writer: None}))
    old = {"message_id": "old", "session_id": sid, "role": "assistant",
           "content": "in the database and the journal", "seq": 7, "status": "streaming",
           "finish_reason": "cancelled", "extras": {}, "written_at": "2026-01-01T00:00:00"}  # fmt: skip
    journal = tmp_path / "drafts.jsonl"
    original = (json.dumps(old) + "\n" + '{"message_id": "torn", "sess').encode()
    journal.write_bytes(original)
    assert store.recover_from(journal) == 1
    assert store.get_message("old").content == "in the database and the journal"
    assert Path(str(journal) + ".v0").read_bytes() == original
    assert "torn" in Path(str(journal) + ".quarantine").read_text()
