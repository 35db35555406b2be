"""The journal file: its own format, torn tails from real crashes, disk full, corrupt
records to quarantine, exclusive use. No database needed."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, replace
from pathlib import Path

import pytest

import chatpersist._journal
from chatpersist._errors import JournalLocked, NotAJournal
from chatpersist._journal import Journal, Record

HEADER = b"chatpersist-journal 1\n"
PACKAGE_DIR = str(Path(chatpersist._journal.__file__).parent)

# Child processes import the journal module alone, not the package (whose import pulls
# in SQLAlchemy and takes half a second), so that many crash runs stay quick.
PRELUDE = """
import sys, types
pkg = types.ModuleType("chatpersist")
pkg.__path__ = [sys.argv[1]]
sys.modules["chatpersist"] = pkg
from chatpersist._journal import Journal, Record
from chatpersist._errors import JournalLocked

def rec(seq, size):
    return Record(f"m{seq}", "s", "assistant", f"{seq}:" + "x" * size, seq, "streaming", None,
                  {"model": "m"}, "2024-05-01T12:00:00+00:00")
"""


def rec(seq: int, size: int = 10) -> Record:
    """The same record as the children's `rec`."""
    return Record(
        f"m{seq}",
        "s",
        "assistant",
        f"{seq}:" + "x" * size,
        seq,
        "streaming",
        None,
        {"model": "m"},
        "2024-05-01T12:00:00+00:00",
    )


def child(code: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + code, PACKAGE_DIR, *map(str, args)],
        stdout=subprocess.PIPE,
        text=True,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frame(body: bytes) -> bytes:
    """A well-framed journal line around any bytes."""
    return b"%d %08x %s\n" % (len(body), zlib.crc32(body), body)


def quarantine_entries(journal: Path) -> list[dict[str, object]]:
    q = journal.with_name(journal.name + ".quarantine")
    if not q.exists():
        return []
    lines = q.read_bytes().splitlines()
    assert lines[0] == b"chatpersist-quarantine 1"
    return [json.loads(line) for line in lines[1:]]


def raw(entry: dict[str, object]) -> bytes:
    return base64.b64decode(str(entry["raw_base64"]))


# -- not a journal --

README = b"# My project\n\nSome notes.\nNot JSON at all, and not a journal either.\n"


@pytest.mark.parametrize(
    "content",
    [
        README,
        b"\x00\x01binary\xff",
        b'{"message_id": "m1", "seq": 1}\n',  # one JSON object a line, no header
        b"chatpersist-journal 9\n",  # a version this code does not know
    ],
    ids=["readme", "binary", "jsonl", "other-version"],
)
def test_a_file_that_is_not_a_journal_is_never_touched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "README.md"
    journal = Journal(path)  # no file yet: fine
    path.write_bytes(content)
    before = sha256(path)
    with pytest.raises(NotAJournal, match="README.md"):
        Journal(path)
    for op in (
        journal.latest,
        journal.clear,
        lambda: journal.clear(5),
        lambda: journal.append([rec(1)]),
        journal.lock,
    ):
        with pytest.raises(NotAJournal):
            op()
        assert sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]


def test_an_empty_or_missing_file_is_an_empty_journal(tmp_path: Path) -> None:
    empty = tmp_path / "empty.journal"
    empty.touch()
    missing = tmp_path / "sub" / "missing.journal"
    for path in (empty, missing):
        journal = Journal(path)
        assert journal.latest() == []
        journal.clear(journal.size())
        journal.append([rec(1)])
        assert path.read_bytes().startswith(HEADER)
        assert Journal(path).latest() == [rec(1)]


def test_clear_keeps_the_header_and_what_came_after(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path)
    journal.append([rec(1), rec(2)])
    size = journal.size()
    journal.append([rec(3), replace(rec(4), message_id="m3")])  # appended during a replay
    journal.clear(size)
    assert path.read_bytes().startswith(HEADER)
    assert len(path.read_bytes().splitlines()) == 3
    assert journal.latest() == [replace(rec(4), message_id="m3")]  # the newest of m3
    journal.clear(journal.size())
    assert path.read_bytes() == b""  # nothing left: an empty journal
    journal.append([rec(5)])
    assert path.read_bytes().startswith(HEADER)
    assert Journal(path).latest() == [rec(5)]


# -- torn tails --


def test_a_torn_tail_is_quarantined_and_the_next_append_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path)
    journal.append([rec(1)])
    one = journal.size()
    journal.append([rec(2, size=1000)])
    with open(path, "r+b") as f:
        f.truncate((one + journal.size()) // 2)  # a crash in the middle of rec 2
    torn = path.read_bytes()[one:]

    journal = Journal(path)
    journal.append([rec(3)])
    assert sorted(journal.latest(), key=lambda r: r.seq) == [rec(1), rec(3)]
    [entry] = quarantine_entries(path)
    assert raw(entry) == torn
    assert "torn" in str(entry["reason"])
    assert journal.quarantined == 1


APPENDER = """
path, size = sys.argv[2], int(sys.argv[3])
journal = Journal(path)
seq = 0
while True:
    journal.append([rec(seq, size)])
    print(seq, flush=True)
    seq += 1
"""


@pytest.mark.slow
def test_sigkill_during_appends_loses_no_finished_append(tmp_path: Path) -> None:
    rng = random.Random()
    size = 2_000_000  # large records: a kill often lands in the middle of one
    torn = 0
    for run in range(20):
        path = tmp_path / f"j{run}"
        proc = child(APPENDER, path, size)
        assert proc.stdout is not None
        done = [int(proc.stdout.readline())]
        if run % 2:
            time.sleep(rng.uniform(0, 0.05))  # a random moment
        else:
            # the moment the file is seen in the middle of an append
            fd = os.open(path, os.O_RDONLY)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                end = os.fstat(fd).st_size
                if os.pread(fd, 1, end - 1) != b"\n":
                    break
            os.close(fd)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done += [int(s) for s in proc.stdout.read().split()]
        proc.stdout.close()
        torn_now = not path.read_bytes().endswith(b"\n")
        torn += torn_now

        journal = Journal(path)
        after = [rec(10_000 + i) for i in range(3)]
        journal.append(after[:1])
        journal.append(after[1:])
        got = {r.message_id: r for r in journal.latest()}
        for seq in done:  # every append that returned before the kill
            assert got.pop(f"m{seq}") == rec(seq, size)
        for r in after:  # every append after the crash
            assert got.pop(r.message_id) == r
        # at most the append the kill interrupted, and only if it was written whole
        assert [r.seq for r in got.values()] in ([], [max(done) + 1])
        assert got == {r.message_id: rec(r.seq, size) for r in got.values()}
        assert path.read_bytes().startswith(HEADER)
        assert journal.quarantined == len(quarantine_entries(path)) == torn_now
        path.unlink()
    assert torn > 0, "no kill landed in the middle of an append"


# -- disk full --

FILLER = """
import errno, os, resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
path, limit = sys.argv[2], int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
journal = Journal(path)
for attempt in range(2):  # the writer retries
    try:
        journal.append([rec(100 + attempt, 10_000), rec(200 + attempt, 10)])
    except OSError as exc:
        print(errno.errorcode[exc.errno], os.path.getsize(path), flush=True)
    else:
        print("appended", flush=True)
"""


def test_a_disk_full_append_leaves_nothing_torn(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path)
    journal.append([rec(1), rec(2)])
    size = path.stat().st_size
    # room for part of the next append only
    proc = child(FILLER, path, size + 5_000)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out.split("\n") == [f"EFBIG {size}", f"EFBIG {size}", ""]
    assert path.stat().st_size == size

    journal.append([rec(3)])  # the limit is gone
    assert sorted(journal.latest(), key=lambda r: r.seq) == [rec(1), rec(2), rec(3)]
    assert path.read_bytes().endswith(b"\n")
    assert quarantine_entries(path) == []


def test_a_failed_append_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "j"
    journal = Journal(path)
    journal.append([rec(1)])
    before = path.read_bytes()
    real_write = os.write
    calls = []

    def half_then_enospc(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) % 2:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_enospc)
    with pytest.raises(OSError, match="No space"):
        journal.append([rec(2, size=5000)])
    with pytest.raises(OSError, match="No space"):
        journal.append([rec(2, size=5000)])  # the retry
    monkeypatch.undo()
    assert path.read_bytes() == before
    journal.append([rec(2, size=5000)])
    assert sorted(journal.latest(), key=lambda r: r.seq) == [rec(1), rec(2, size=5000)]


# -- corrupt records --


def test_corrupt_records_are_quarantined_and_the_others_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j"
    journal = Journal(path)
    journal.append([rec(1)])
    good = asdict(rec(5))
    scratch = Journal(tmp_path / "scratch")
    scratch.append([rec(6)])
    valid_line = scratch.path.read_bytes().splitlines(keepends=True)[-1]
    bad = {
        "not utf-8": frame(b'{"content": "\xff\xfe"}'),
        "not json": frame(b"{not json"),
        "array": frame(b"[1, 2, 3]"),
        "string": frame(b'"a string"'),
        "seq is a string": frame(json.dumps({**good, "seq": "5"}).encode()),
        "seq is a bool": frame(json.dumps({**good, "seq": True}).encode()),
        "bad written_at": frame(json.dumps({**good, "written_at": "yesterday"}).encode()),
        "written_at a number": frame(json.dumps({**good, "written_at": 12}).encode()),
        "extras not an object": frame(json.dumps({**good, "extras": []}).encode()),
        "missing key": frame(json.dumps({k: v for k, v in good.items() if k != "role"}).encode()),
        "checksum": valid_line.replace(b"6:xxx", b"7:xxx"),
        "length": b"9" + valid_line,
        "no framing": json.dumps(good).encode() + b"\n",
        "binary garbage": b"\x00\x00\x00\x00\xde\xad\n",
    }
    with open(path, "ab") as f:
        f.write(b"".join(bad.values()))
    journal.append([rec(2)])
    with open(path, "ab") as f:
        f.write(b"123 abc")  # and a torn tail

    with caplog.at_level(logging.WARNING, logger="chatpersist"):
        records = Journal(path).latest()
    assert sorted(records, key=lambda r: r.seq) == [rec(1), rec(2)]
    entries = quarantine_entries(path)
    assert sorted(raw(e) for e in entries) == sorted([*(v[:-1] for v in bad.values()), b"123 abc"])
    assert all(e["reason"] and e["journal"] == str(path) for e in entries)
    assert f"{len(bad) + 1} torn or corrupt" in caplog.text

    journal = Journal(path)  # as after a restart
    journal.latest()
    journal.latest()
    size = journal.size()
    journal.append([rec(3)])
    journal.clear(size)
    assert journal.latest() == [rec(3)]
    assert len(quarantine_entries(path)) == len(bad) + 1  # quarantined once
    assert journal.quarantined == 0


def test_the_quarantine_is_kept_when_clear_drops_records_no_one_read(tmp_path: Path) -> None:
    path = tmp_path / "j"
    Journal(path).append([rec(1)])
    with open(path, "ab") as f:
        f.write(frame(b"[]"))
    journal = Journal(path)
    journal.clear()  # without a latest() first
    assert [raw(e) for e in quarantine_entries(path)] == [frame(b"[]")[:-1]]
    assert path.read_bytes() == b""


def test_quarantine_of_a_refused_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "j"
    journal = Journal(path)
    with caplog.at_level(logging.WARNING, logger="chatpersist"):
        journal.quarantine(rec(7), "the message was deleted")
        journal.quarantine(rec(8), "the session was deleted")
    assert journal.quarantined == 2
    first, second = quarantine_entries(path)
    assert first["reason"] == "the message was deleted"
    assert first["record"] == asdict(rec(7))
    assert json.loads(raw(first)) == asdict(rec(7))
    assert second["record"] == asdict(rec(8))
    assert "m7" in caplog.text and "the message was deleted" in caplog.text
    assert not path.exists()  # the journal itself is not touched


# -- exclusive use --

LOCKER = """
import time
journal = Journal(sys.argv[2])
try:
    journal.lock()
except JournalLocked:
    print("JournalLocked", flush=True)
else:
    print("locked", flush=True)
    time.sleep(120)
"""


def test_two_journal_objects_cannot_both_lock(tmp_path: Path) -> None:
    one, two = Journal(tmp_path / "j"), Journal(tmp_path / "j")
    one.lock()
    one.lock()  # idempotent
    assert one.locked
    with pytest.raises(JournalLocked, match="in use"):
        two.lock()
    assert not two.locked
    proc = child(LOCKER, tmp_path / "j")
    out, _ = proc.communicate(timeout=60)
    assert out.strip() == "JournalLocked"
    one.unlock()
    two.lock()
    two.unlock()
    one.lock()
    one.unlock()


def test_a_lock_held_by_another_process_is_freed_by_its_death(tmp_path: Path) -> None:
    path = tmp_path / "j"
    proc = child(LOCKER, path)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        journal = Journal(path)
        with pytest.raises(JournalLocked):
            journal.lock()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    journal.lock()  # the owner died: its lock went with it
    journal.append([rec(1)])
    assert journal.latest() == [rec(1)]
    journal.unlock()
