"""Helpers for the web tests: the example servers, run for real, and the browser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHATPERSIST_CHROMIUM", "/usr/bin/chromium")
#: Screenshots of the browser tests.
ARTIFACTS = ROOT / "test-artifacts"
#: Debian's Chromium as root, headless, without the network calls a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, db: str) -> None:
        self.proc = proc
        self.port = port
        self.db = db
        self.url = f"http://127.0.0.1:{port}"
        self.cookies: dict[str, str] = {}  # the identity the page gives (set on start)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def start_example(example: str, db: str, *args: str, port: int | None = None) -> Server:
    """`python -m examples.<example> --db DB --port PORT ARGS` from the repository's
    root, once its page answers (the cookies that page sets are kept)."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"examples.{example}", "--db", db, "--port", str(port), *args],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    server = Server(proc, port, db)
    try:
        page = wait_http(server.url + "/", proc, f"the {example} example")
    except BaseException:
        server.stop()
        raise
    server.cookies = dict(page.cookies)
    return server
