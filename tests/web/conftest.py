"""The web tests' fixtures: the webchat example on a real uvicorn, per test, and the
browser."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import REQUIRED
from web.webserver import CHROMIUM, CHROMIUM_ARGS, Server, start_example


@pytest.fixture
def webchat(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts the webchat example (by default on a new port and SQLite database)."""
    servers: list[Server] = []

    def start(*args: str, db: str | None = None, delay: float = 0.02) -> Server:
        db = db or f"sqlite:///{tmp_path}/web-{len(servers)}.db"
        server = start_example("webchat", db, "--fake-delay", str(delay), *args)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright (skipped without them, failed in CI)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "playwright is not installed"
    else:
        found = shutil.which(CHROMIUM) or Path(CHROMIUM).exists()
        why = "" if found else f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if why:
        if REQUIRED:
            pytest.fail(f"{why}; the browser tests are required in CI")
        pytest.skip(why)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
