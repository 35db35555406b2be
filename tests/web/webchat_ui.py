"""Helpers for the browser tests of the webchat example's page (tests/web/test_webchat_*):
driving it as a user would, reading what it shows, and what the server stored."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import REQUIRED
from tcp_proxy import TcpProxy
from web.webserver import ARTIFACTS, Server, start_example

from chatpersist import ChatStore, Message

ANSWER = ".msg.assistant"
#: The example's lease (examples/webchat/app.py), for reading what the server sees.
LEASE = 6.0
AXE_DIR = Path(__file__).resolve().parent / "axe"
DESKTOP = {"width": 1100, "height": 700}
#: A phone in portrait, as the issue measured it.
PHONE = {"width": 390, "height": 844}


#: A TCP proxy between the browser and the server that the tests can cut.
Proxy = TcpProxy


@contextlib.contextmanager
def browsing(browser: Any, name: str, **options: Any) -> Iterator[Any]:
    """A new browser context (a new user: its own identity and storage) and a page in
    it; a screenshot of the page's last state goes to the test artifacts. Errors the
    page did not catch are collected in `page.errors`."""
    options.setdefault("viewport", DESKTOP)
    context = browser.new_context(**options)
    page = watched(context.new_page())
    try:
        yield page
    finally:
        with contextlib.suppress(Exception):
            shot(page, name)
        context.close()


def watched(page: Any) -> Any:
    """The page, collecting in `page.errors` the errors it did not catch."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    return page


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"webchat_{name}.png"))


def start_server(db: str, *args: str, delay: float = 0.02, port: int | None = None) -> Server:
    return start_example("webchat", db, "--fake-delay", str(delay), *args, port=port)


def send(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def source(page: Any, nth: int = -1) -> str:
    """The text of an answer as the page has it (its Markdown source)."""
    return str(
        page.evaluate(
            f"(n) => {{ const a = [...document.querySelectorAll('{ANSWER}')];"
            " const el = a[n < 0 ? a.length + n : n];"
            " return el ? el.source ?? el.querySelector('.text').textContent : null; }",
            nth,
        )
    )


def wait_source(page: Any, min_chars: int, timeout: float = 15000) -> str:
    page.wait_for_function(
        f"(n) => {{ const a = document.querySelectorAll('{ANSWER}');"
        " const el = a[a.length - 1];"
        " return el && (el.source ?? el.querySelector('.text').textContent).length >= n; }",
        arg=min_chars,
        timeout=timeout,
    )
    return source(page)


def wait_ended(page: Any, count: int = 1, timeout: float = 30000) -> None:
    """Until the open conversation shows `count` answers (at least), none of them
    being written or followed."""
    page.wait_for_function(
        f"(n) => document.querySelectorAll('{ANSWER}').length >= n"
        " && !document.querySelector('.badge.live, .badge.reconnecting, .typing')"
        " && document.querySelector('#stop').hidden",
        arg=count,
        timeout=timeout,
    )


def active_session(page: Any) -> str:
    page.wait_for_selector("#sessions li.active", state="attached")
    return str(page.get_attribute("#sessions li.active", "data-id"))


def answers(server: Server, session_id: str | None = None) -> list[Message]:
    """The assistant messages stored (of one session, or all), oldest first."""
    with ChatStore(server.db, lease_seconds=LEASE) as store:
        ids = [session_id] if session_id else [s.id for s in store.sessions()]
        found = [m for sid in ids for m in store.history(sid) if m.role == "assistant"]
    return sorted(found, key=lambda m: m.created_at)


def messages(server: Server, session_id: str) -> list[Message]:
    with ChatStore(server.db, lease_seconds=LEASE) as store:
        return store.history(session_id)


def axe_script() -> Path:
    """axe-core's browser build, installed by `npm ci` in tests/web/axe when missing
    (skipped without npm, except in CI, where that fails)."""
    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if script.exists():
        return script
    npm = shutil.which("npm")
    why = None
    if npm is None:
        why = "npm not found: the accessibility test needs axe-core (npm ci in tests/web/axe)"
    else:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=AXE_DIR, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            why = f"`npm ci` in {AXE_DIR} failed:\n{(done.stderr or done.stdout)[-2000:]}"
    if why is not None or not script.exists():
        why = why or f"no {script} after npm ci"
        if REQUIRED:
            pytest.fail(why)
        pytest.skip(why)
    return script


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """What axe-core finds on the page as it is (the script injected first)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(axe_script()))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document)).violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5)}))"""
    )
    return found
