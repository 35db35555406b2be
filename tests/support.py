"""Helpers shared by the tests."""

from __future__ import annotations

import difflib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from chatpersist import SystemClock

#: The repository's root (README.md, examples/, migrations/ ...).
ROOT = Path(__file__).resolve().parents[1]

#: The writer process of the crash tests (streams numbered chunks until killed).
CRASH_WRITER = Path(__file__).resolve().parent / "reliability" / "crash_writer.py"
#: The flush window (in chunks) `kill_writer_after` runs its writers with.
EVERY_CHUNKS = 10


def chunk(i: int) -> str:
    """The i-th chunk `crash_writer.py` appends."""
    return f"w{i} "


def subprocess_env() -> dict[str, str]:
    """This environment, with this process's sys.path (chatpersist, the test helpers)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def kill_writer_after(url: str, sid: str, mid: str, chunks: int) -> int:
    """Start a writer, SIGKILL it once it reports `chunks` appended; return the count seen."""
    proc = subprocess.Popen(
        [sys.executable, str(CRASH_WRITER), url, sid, mid, str(EVERY_CHUNKS), "2.0", "0.005"],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:
        if line.strip().isdigit():
            seen = int(line)
            if seen >= chunks:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return seen


def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[Any], what: str) -> httpx.Response:
    """The first successful GET of `url` from a server process that is starting."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(url, timeout=1).raise_for_status()
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.1)


def changed_lines(before: Path, after: Path) -> list[str]:
    """The non-blank lines an example's retrofit adds (+) or removes (-), leaving out
    its docstring's run command (the one line that names the migration)."""
    diff = difflib.unified_diff(
        before.read_text().splitlines(), after.read_text().splitlines(), lineterm="", n=0
    )
    return [
        line
        for line in diff
        if line[:1] in "+-"
        and not line.startswith(("+++", "---"))
        and line[1:].strip()
        and "migrat" not in line
    ]


class OffsetClock(SystemClock):
    """Real time, seen from `offset` seconds in the future (for lease checks)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.offset)


PG_URL = os.environ.get(
    "CHATPERSIST_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get(
    "CHATPERSIST_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
)
REQUIRED = os.environ.get("CI", "").lower() in ("1", "true") or bool(
    os.environ.get("CHATPERSIST_REQUIRE_DBS")
)

_reachable: dict[str, str | None] = {}


def _unreachable(name: str, url: str) -> str | None:
    """None when the server answers, else why not."""
    if name not in _reachable:
        try:
            engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            engine.dispose()
            _reachable[name] = None
        except Exception as exc:  # noqa: BLE001
            _reachable[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return _reachable[name]


def _require(name: str, url: str) -> None:
    why = _unreachable(name, url)
    if why is None:
        return
    msg = f"{name} not reachable at {sa.make_url(url).render_as_string()} ({why})"
    if REQUIRED:
        pytest.fail(f"{msg}; database tests are required in CI")
    pytest.skip(f"{msg}; start it or set CHATPERSIST_TEST_{name.upper()}")


def fresh_database(backend: str, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """Yield the URL of an empty database (or schema) that is dropped afterwards."""
    name = f"cp_{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        yield f"sqlite:///{os.fspath(tmp_path)}/{name}.db"
        return
    if backend == "postgresql":
        _require("postgres", PG_URL)
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        url = sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={name}"})
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
            admin.dispose()
        return
    if backend == "mysql":
        _require("mysql", MYSQL_URL)
        admin = sa.create_engine(MYSQL_URL)
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        url = sa.make_url(MYSQL_URL).set(database=name)
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE `{name}`"))
            admin.dispose()
        return
    raise ValueError(backend)
