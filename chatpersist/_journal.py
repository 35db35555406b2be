"""A local, append-only, fsynced journal for drafts the database could not take.

When the database stays away longer than a store allows, the writer appends the
whole text of each due draft here instead, so a crash during the outage loses
nothing. The journal is replayed into the database (seq-guarded, so never twice)
when the database is back, at the next start, or by `chatpersist recover`.
One journal file belongs to one running store.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


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


class Journal:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, records: list[Record]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in records)
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def latest(self) -> list[Record]:
        """The newest record of each message (a torn last line from a crash is skipped)."""
        if not self.path.exists():
            return []
        newest: dict[str, Record] = {}
        with self._lock, open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = Record(**json.loads(line))
                except (ValueError, TypeError):
                    continue
                old = newest.get(rec.message_id)
                if old is None or rec.seq >= old.seq:
                    newest[rec.message_id] = rec
        return list(newest.values())

    def clear(self, upto_size: int | None = None) -> None:
        """Forget what was replayed. Only the first `upto_size` bytes are dropped, so
        records appended meanwhile survive."""
        with self._lock:
            if not self.path.exists():
                return
            with open(self.path, "rb") as f:
                f.seek(upto_size or 0)
                rest = f.read() if upto_size is not None else b""
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            with open(tmp, "wb") as f:
                f.write(rest)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0
