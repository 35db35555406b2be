"""A local, append-only, fsynced journal for drafts the database could not take.

When the database stays away longer than a store allows, the writer appends the
whole text of each due draft here instead, so a crash during the outage loses
nothing. The journal is replayed into the database (seq-guarded, so never twice)
when the database is back, at the next start, or by `chatpersist recover`.
One journal file belongs to one running store (`Journal.lock()`).

Format (version 1), made for crashes:

    chatpersist-journal 1\\n                        the header: nothing else is ever touched
    <length> <crc32, 8 hex digits> <json>\\n         one line per record

`<json>` is the record as an ASCII JSON object, `<length>` its size in bytes and
the CRC32 is computed over it. A line whose length, checksum, JSON or fields are
wrong (a torn write, a disk fault) is skipped without affecting the next one, and
copied into `<journal>.quarantine` (header `chatpersist-quarantine 1`, then one JSON
object a line: time, reason, offset, the raw bytes in base64), never deleted. Each
append starts on a fresh line (a newline first after a torn tail), is fsynced, and
is cut back off the file when it fails part-way (disk full), so it leaves nothing torn.
An empty file is an empty journal; the header is written by the first append.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import json
import logging
import os
import tempfile
import threading
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ._errors import JournalLocked, NotAJournal

log = logging.getLogger("chatpersist")

HEADER = b"chatpersist-journal 1\n"
QUARANTINE_HEADER = b"chatpersist-quarantine 1\n"
_HEX = frozenset(b"0123456789abcdef")


@dataclass(frozen=True)
class Record:
    message_id: str
    session_id: str
    role: str
    content: str
    seq: int
    status: str
    finish_reason: str | None
    extras: dict[str, Any]
    written_at: str
    #: The writer token the text was written under (None in journals of older releases).
    writer: str | None = None
    #: The parts segments, whole (None: text only, or a journal of an older release).
    parts: list[Any] | None = None


_FIELDS = frozenset(f.name for f in fields(Record))
_OPTIONAL = frozenset({"writer", "parts"})


class _Corrupt(ValueError):
    """A journal line that is not a valid record (the message says why)."""


def _body(record: Record) -> bytes:
    # ASCII only: a lone surrogate in a streamed text cannot make the encoding fail.
    return json.dumps(asdict(record), ensure_ascii=True, separators=(",", ":")).encode("ascii")


def encode_record(record: Record) -> bytes:
    """The journal line of a record, newline included."""
    body = _body(record)
    return b"%d %08x %s\n" % (len(body), zlib.crc32(body), body)


def decode_record(raw: bytes) -> Record:
    """The record of a journal line (without its newline); `_Corrupt` says why not."""
    parts = raw.split(b" ", 2)
    if len(parts) != 3:
        raise _Corrupt("bad framing: not '<length> <crc32> <json>'")
    length, crc, body = parts
    if not length.isdigit() or len(length) > 20:
        raise _Corrupt("bad framing: the length is not a number")
    if int(length) != len(body):
        raise _Corrupt(f"length mismatch: {int(length)} bytes announced, {len(body)} found")
    if len(crc) != 8 or not _HEX.issuperset(crc):
        raise _Corrupt("bad framing: the checksum is not 8 hex digits")
    if int(crc, 16) != zlib.crc32(body):
        raise _Corrupt("checksum mismatch")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Corrupt(f"not UTF-8: {exc}") from None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _Corrupt(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _Corrupt(f"the JSON is a {type(obj).__name__}, not an object")
    missing, extra = _FIELDS - obj.keys() - _OPTIONAL, obj.keys() - _FIELDS
    if missing or extra:
        raise _Corrupt(f"wrong keys: missing {sorted(missing)}, unexpected {sorted(extra)}")
    for name in ("message_id", "session_id", "role", "content", "status", "written_at"):
        if not isinstance(obj[name], str):
            raise _Corrupt(f"{name} is a {type(obj[name]).__name__}, not a string")
    if not isinstance(obj["seq"], int) or isinstance(obj["seq"], bool):
        raise _Corrupt(f"seq is a {type(obj['seq']).__name__}, not an integer")
    if obj.get("writer") is not None and not isinstance(obj["writer"], str):
        raise _Corrupt("writer is neither null nor a string")
    if obj.get("parts") is not None and not isinstance(obj["parts"], list):
        raise _Corrupt("parts is neither null nor a list")
    if obj["finish_reason"] is not None and not isinstance(obj["finish_reason"], str):
        raise _Corrupt("finish_reason is neither null nor a string")
    if not isinstance(obj["extras"], dict):
        raise _Corrupt(f"extras is a {type(obj['extras']).__name__}, not an object")
    try:
        datetime.fromisoformat(obj["written_at"])
    except ValueError:
        raise _Corrupt(f"written_at is not a timestamp: {obj['written_at']!r}") from None
    return Record(**obj)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory
    finally:
        os.close(fd)


def _append_file(path: Path, header: bytes, data: bytes) -> None:
    """Append `data` to a file that starts with `header` (written first into an empty
    or new file), on a fresh line, fsynced; on failure the file is cut back to its
    old size and the error re-raised. A non-empty file without the header raises
    NotAJournal, untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_APPEND
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
        created = True
    except FileExistsError:
        fd = os.open(path, flags)
        created = False
    try:
        start = os.fstat(fd).st_size
        if start == 0:
            prefix = header
        else:
            _check_head(path, header, os.pread(fd, len(header), 0))
            prefix = b"" if os.pread(fd, 1, start - 1) == b"\n" else b"\n"  # a torn tail
        try:
            _write_all(fd, prefix + data)
            os.fsync(fd)
        except BaseException:
            try:
                os.ftruncate(fd, start)
                os.fsync(fd)
            except OSError as exc:
                log.warning("chatpersist: cannot cut a failed append off %s: %s", path, exc)
            raise
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)


def _check_head(path: Path, header: bytes, head: bytes) -> None:
    """Raise NotAJournal unless `head` (the file's first bytes) is `header` or empty."""
    if head == header or not head:
        return
    if head.startswith(header.split(b" ")[0] + b" "):
        raise NotAJournal(path, f"unsupported version or damaged header {head!r}")
    raise NotAJournal(path, f"it does not start with {header.decode().strip()!r}")


# (device, inode, offset, crc32 of the bytes): a bad line already copied to quarantine
_Seen = tuple[int, int, int, int]
# (offset, raw bytes without the newline, reason)
_Bad = tuple[int, bytes, str]


class Journal:
    """An append-only journal file; see the module docstring for the format.

    `quarantined` counts the records this object moved to the quarantine file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.quarantine_path = self.path.with_name(self.path.name + ".quarantine")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.quarantined = 0
        self._mutex = threading.RLock()
        self._lock_fd: int | None = None
        self._seen: set[_Seen] = set()
        self._seen_loaded = False
        self._check()

    # -- writing --

    def append(self, records: list[Record]) -> None:
        """Append records (fsynced). On OSError (disk full, read-only) nothing of them
        stays in the file and the error is re-raised."""
        if not records:
            return
        data = b"".join(encode_record(r) for r in records)
        with self._mutex:
            _append_file(self.path, HEADER, data)

    def quarantine(self, record: Record, reason: str) -> None:
        """Set a record aside in the quarantine file (e.g. one the database refused)."""
        body = _body(record)
        entry = self._entry(reason, None, body, record=asdict(record))
        with self._mutex:
            _append_file(self.quarantine_path, QUARANTINE_HEADER, entry)
            self.quarantined += 1
        log.warning(
            "chatpersist: journal record of message %r moved to %s: %s",
            record.message_id,
            self.quarantine_path,
            reason,
        )

    # -- reading --

    def latest(self) -> list[Record]:
        """The newest record of each message. Torn and corrupt records are skipped and
        copied to the quarantine file (a failure to do so is logged: `clear` retries)."""
        newest: dict[str, Record] = {}
        with self._mutex:
            try:
                f = open(self.path, "rb")
            except FileNotFoundError:
                return []
            with f:
                st = os.fstat(f.fileno())
                _check_head(self.path, HEADER, f.read(len(HEADER)))
                records, bad = self._scan(f, None)
            try:
                self._set_aside(st, bad)
            except OSError:
                log.exception("chatpersist: cannot write the quarantine %s", self.quarantine_path)
        for rec in records:
            old = newest.get(rec.message_id)
            if old is None or rec.seq >= old.seq:
                newest[rec.message_id] = rec
        return list(newest.values())

    def size(self) -> int:
        with self._mutex:
            try:
                return self.path.stat().st_size
            except FileNotFoundError:
                return 0

    # -- forgetting --

    def clear(self, upto_size: int | None = None) -> None:
        """Forget what was replayed. Only the first `upto_size` bytes are dropped (the
        header stays), so records appended meanwhile survive; bad records among the
        dropped ones go to the quarantine first (if that fails, nothing is dropped).
        When nothing is left the file is emptied (an empty file is an empty journal)."""
        with self._mutex:
            try:
                f = open(self.path, "rb")
            except FileNotFoundError:
                return
            with f:
                st = os.fstat(f.fileno())
                if st.st_size == 0:
                    return
                _check_head(self.path, HEADER, f.read(len(HEADER)))
                end = st.st_size
                upto = end if upto_size is None else min(max(upto_size, len(HEADER)), end)
                _, bad = self._scan(f, upto)
                self._set_aside(st, bad)  # raises: keep everything
                f.seek(upto)
                rest = f.read()
            old = (st.st_dev, st.st_ino)
            kept = {s for s in self._seen if s[:2] != old}
            if not rest.strip(b"\n"):
                with open(self.path, "r+b") as g:
                    g.truncate(0)
                    g.flush()
                    os.fsync(g.fileno())
                self._seen = kept
                return
            fd, tmp = tempfile.mkstemp(
                dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp"
            )
            try:
                with os.fdopen(fd, "wb") as g:
                    g.write(HEADER + rest)
                    g.flush()
                    os.fchmod(g.fileno(), st.st_mode & 0o7777)
                    os.fsync(g.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(self.path.parent)
            new = self.path.stat()
            shift = len(HEADER) - upto
            for s in self._seen:
                if s[:2] == old and s[2] >= upto:
                    kept.add((new.st_dev, new.st_ino, s[2] + shift, s[3]))
            self._seen = kept

    # -- exclusive use --

    def lock(self) -> None:
        """Take the journal for this object (an OS lock on `<path>.lock`, released
        by `unlock()` or when the process ends, however). Raises JournalLocked when
        another process or Journal object holds it; a second call does nothing."""
        with self._mutex:
            if self._lock_fd is not None:
                return
            self._check()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise JournalLocked(self.path) from None
            except BaseException:
                os.close(fd)
                raise
            self._lock_fd = fd

    def unlock(self) -> None:
        with self._mutex:
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)

    @property
    def locked(self) -> bool:
        """Whether this object holds the journal's lock."""
        return self._lock_fd is not None

    # -- internals --

    def _check(self) -> None:
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(HEADER))
        except FileNotFoundError:
            return
        if head.startswith(b'{"message_id": ') and self._upgrade_v0():
            return
        _check_head(self.path, HEADER, head)

    def _upgrade_v0(self) -> bool:
        """Rewrite a journal of chatpersist 0.1 (one JSON object a line, no header) in
        this format, keeping the original beside it (`<path>.v0`). False when the file
        is not such a journal after all (then it is left as it is)."""
        with self._mutex, open(self.path, "rb") as f:
            lines = f.read().split(b"\n")
        records: list[Record] = []
        bad: list[bytes] = []
        for line in lines:
            if not line:
                continue
            try:
                # Checked as a current record is (field types, timestamp).
                records.append(decode_record(encode_record(Record(**json.loads(line)))[:-1]))
            except (ValueError, TypeError, RecursionError):
                bad.append(line)
        if not records:
            return False  # a file that merely looks like one: not ours to touch
        backup = self.path.with_name(self.path.name + ".v0")
        with open(backup, "wb") as g:
            g.write(b"\n".join(lines))
            g.flush()
            os.fsync(g.fileno())
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as g:
            g.write(HEADER + b"".join(encode_record(r) for r in records))
            g.flush()
            os.fsync(g.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        for raw in bad:  # a torn last line of the old format, most likely
            _append_file(
                self.quarantine_path, QUARANTINE_HEADER, self._entry("torn 0.1 record", None, raw)
            )
            self.quarantined += 1
        log.warning(
            "chatpersist: %s was a chatpersist 0.1 journal: rewritten in the current format "
            "(%d records; the original kept as %s)",
            self.path,
            len(records),
            backup,
        )
        return True

    def _scan(self, f: IO[bytes], upto: int | None) -> tuple[list[Record], list[_Bad]]:
        """The records and bad lines after the header (those that start before `upto`)."""
        records: list[Record] = []
        bad: list[_Bad] = []
        offset = len(HEADER)
        f.seek(offset)
        for line in f:
            here = offset
            offset += len(line)
            if upto is not None and here >= upto:
                break
            raw = line[:-1] if line.endswith(b"\n") else line
            if upto is not None:
                raw = raw[: upto - here]
            if not raw:
                continue
            if not line.endswith(b"\n"):
                bad.append((here, raw, "torn tail: the last line has no end (append cut short)"))
                continue
            try:
                records.append(decode_record(raw))
            except _Corrupt as exc:
                bad.append((here, raw, f"torn or corrupt record: {exc}"))
        return records, bad

    def _set_aside(self, st: os.stat_result, bad: Iterable[_Bad]) -> None:
        """Copy the bad lines not copied yet into the quarantine file, in one append."""
        bad = list(bad)
        if bad and not self._seen_loaded:
            self._load_seen()
        new: list[tuple[_Seen, bytes]] = []
        for offset, raw, reason in bad:
            key = (st.st_dev, st.st_ino, offset, zlib.crc32(raw))
            if key not in self._seen:
                new.append((key, self._entry(reason, offset, raw, key=key)))
        if not new:
            return
        _append_file(self.quarantine_path, QUARANTINE_HEADER, b"".join(e for _, e in new))
        self._seen.update(k for k, _ in new)
        self.quarantined += len(new)
        log.warning(
            "chatpersist: %d torn or corrupt records of the journal %s skipped, moved to %s",
            len(new),
            self.path,
            self.quarantine_path,
        )

    def _load_seen(self) -> None:
        """The bad lines already in the quarantine file (by an earlier run, say)."""
        self._seen_loaded = True
        try:
            with open(self.quarantine_path, "rb") as f:
                if f.read(len(QUARANTINE_HEADER)) != QUARANTINE_HEADER:
                    return
                for line in f:
                    try:
                        key = json.loads(line).get("key")
                    except (ValueError, AttributeError, RecursionError):
                        continue
                    if isinstance(key, list) and len(key) == 4 and all(type(k) is int for k in key):
                        self._seen.add((key[0], key[1], key[2], key[3]))
        except FileNotFoundError:
            return

    def _entry(
        self,
        reason: str,
        offset: int | None,
        raw: bytes,
        record: dict[str, Any] | None = None,
        key: _Seen | None = None,
    ) -> bytes:
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(),
            "journal": str(self.path),
            "reason": reason,
            "offset": offset,
            "raw_base64": base64.b64encode(raw).decode("ascii"),
        }
        if record is not None:
            entry["record"] = record
        if key is not None:
            entry["key"] = list(key)  # device, inode, offset, CRC32: not quarantined twice
        return json.dumps(entry, ensure_ascii=True, default=repr).encode("ascii") + b"\n"
