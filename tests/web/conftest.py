"""A real uvicorn process serving the webchat example, per test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import free_port, wait_http
from web.webserver import ROOT, Server


@pytest.fixture
def webchat(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(*args: str, db: str | None = None, delay: float = 0.02) -> Server:
        port = free_port()
        db = db or f"sqlite:///{tmp_path}/web-{port}.db"
        proc = subprocess.Popen(
            [sys.executable, "-m", "examples.webchat", "--db", db, "--port", str(port),
             "--fake-delay", str(delay), *args],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        server = Server(proc, port, db)
        servers.append(server)
        page = wait_http(server.url + "/", proc, "the webchat server")
        server.cookies = dict(page.cookies)  # the API needs an identity
        return server

    yield start
    for s in servers:
        if s.proc.poll() is None:
            s.proc.kill()
        s.proc.wait()
