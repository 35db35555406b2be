"""Helpers for the web tests: the running example server."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, db: str) -> None:
        self.proc = proc
        self.port = port
        self.db = db
        self.url = f"http://127.0.0.1:{port}"
        self.cookies: dict[str, str] = {}  # the identity the page gives (set on start)
