"""The AI SDK's own React client (`useChat` with `resume: true`, from @ai-sdk/react) on
chatpersist.aisdk, in a real browser: examples/aisdk_chat's page, built with npm,
driven by Playwright in Debian's Chromium, against the example server in a process
of its own. The scenario of the original bug report (switch conversation
mid-answer, come back), a reload, Stop + Continue, and the server killed mid-answer.
Screenshots of each final state go to test-artifacts/."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from support import REQUIRED, wait_until
from web.webserver import ARTIFACTS, ROOT, Server, start_example

from chatpersist import COMPLETE, ChatStore
from chatpersist.providers import CANNED_ANSWER

pytestmark = pytest.mark.slow

PAGE_DIR = ROOT / "examples" / "aisdk_chat" / "page"
#: What `npm run build` reads: when one is newer than dist/index.html, rebuild.
PAGE_SOURCES = [
    "src",
    "index.html",
    "build.mjs",
    "tsconfig.json",
    "package.json",
    "package-lock.json",
]
DELAY = 0.03  # seconds between the fake model's 4-character chunks: ~6.5 s an answer
FULL = len(CANNED_ANSWER)

CHAT = "[data-testid=chat]"
ANSWERS = "[data-testid=message][data-role=assistant] [data-testid=message-text]"
INTERRUPTED = "[data-testid=message][data-role=assistant] [data-testid=interrupted]"
CONTINUE = "[data-testid=message][data-role=assistant] [data-testid=continue]"


def unavailable(why: str) -> NoReturn:
    if REQUIRED:
        pytest.fail(f"{why}; the browser tests are required in CI")
    pytest.skip(why)


def newest(paths: list[Path]) -> float:
    files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    return max(f.stat().st_mtime for f in files)


def npm(npm_bin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [npm_bin, *args], cwd=PAGE_DIR, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def built_page() -> Path:
    """examples/aisdk_chat/page/dist, (re)built when missing or older than its sources:
    `npm ci` (when node_modules is missing or older than package-lock.json), then
    `npm run build`."""
    npm_bin = shutil.which("npm")
    if npm_bin is None:
        unavailable("npm is not installed (Node.js 20+), needed to build the page")
    lock = PAGE_DIR / "package-lock.json"
    installed = PAGE_DIR / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = npm(npm_bin, "ci", "--no-audit", "--no-fund")
        if done.returncode:
            unavailable(f"npm ci failed in {PAGE_DIR}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    dist = PAGE_DIR / "dist" / "index.html"
    if not dist.exists() or dist.stat().st_mtime < newest([PAGE_DIR / p for p in PAGE_SOURCES]):
        done = npm(npm_bin, "run", "build")
        assert done.returncode == 0, (
            f"npm run build failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    assert (PAGE_DIR / "dist" / "assets" / "app.js").is_file()
    return dist.parent


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 650})
    pg = context.new_page()
    pg.set_default_timeout(20000)
    crashes: list[str] = []
    pg.on("pageerror", lambda exc: crashes.append(str(exc)))
    pg.on("console", lambda m: print(f"console.{m.type}: {m.text}"))  # shown on failure
    yield pg
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()
    assert crashes == [], "uncaught errors in the page"


@pytest.fixture
def aisdk_chat(built_page: Path, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts `python -m examples.aisdk_chat` (by default on a new port and database)."""
    servers: list[Server] = []

    def start(*args: str, port: int | None = None, db: str | None = None) -> Server:
        db = db or f"sqlite:///{tmp_path}/aisdk-{len(servers)}.db"
        server = start_example("aisdk_chat", db, "--fake-delay", str(DELAY), *args, port=port)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


# -- the page --


def open_chat(page: Any, server: Server) -> str:
    page.goto(server.url + "/")
    page.wait_for_selector(f"{CHAT}[data-status=ready]")
    return str(page.get_attribute(CHAT, "data-chat-id"))


def send(page: Any, text: str) -> None:
    page.fill("[data-testid=input]", text)
    page.click("[data-testid=send]")


def answers(page: Any) -> list[str]:
    """The assistant messages' texts, as the page shows them."""
    texts: list[str] = page.eval_on_selector_all(ANSWERS, "els => els.map(e => e.textContent)")
    return texts


def wait_answer(page: Any, min_chars: int) -> str:
    """Waits until the last answer shows at least `min_chars` characters; returns it."""
    page.wait_for_function(
        "([sel, n]) => { const a = document.querySelectorAll(sel);"
        " return a.length > 0 && a[a.length - 1].textContent.length >= n; }",
        arg=[ANSWERS, min_chars],
    )
    return answers(page)[-1]


def wait_finished(page: Any) -> None:
    """Waits until the chat is idle with an answer at least as long as the full one."""
    page.wait_for_function(
        "([chat, sel, n]) => { const c = document.querySelector(chat);"
        " const a = document.querySelectorAll(sel);"
        " return c && c.dataset.status === 'ready' && a.length > 0"
        " && a[a.length - 1].textContent.length >= n; }",
        arg=[CHAT, ANSWERS, FULL],
        timeout=30000,
    )
    page.wait_for_timeout(300)  # anything duplicated would arrive now


def stored_answer(server: Server, chat_id: str, lease_seconds: float = 30.0) -> Any:
    with ChatStore(server.db, lease_seconds=lease_seconds) as store:
        found = [m for m in store.history(chat_id) if m.role == "assistant"]
    assert len(found) == 1, found
    return found[0]


def assert_complete(page: Any, server: Server, chat_id: str) -> None:
    assert answers(page) == [CANNED_ANSWER]
    assert page.locator(INTERRUPTED).count() == 0
    assert page.locator("[data-testid=error]").count() == 0
    m = stored_answer(server, chat_id)
    assert (m.content, m.status, m.interrupted) == (CANNED_ANSWER, COMPLETE, False)


# -- the scenarios --


def test_switch_conversation_and_come_back(aisdk_chat: Callable[..., Server], page: Any) -> None:
    """The report's steps: a long answer, another conversation mid-answer, back: the
    answer is there, still growing, and completes."""
    server = aisdk_chat()
    first = open_chat(page, server)
    send(page, "Write a 500-word essay on saving drafts")
    seen = len(wait_answer(page, 60))
    page.click("[data-testid=new-chat]")  # switch while it streams: useChat unmounts
    page.wait_for_selector(f"{CHAT}[data-status=ready]:not([data-chat-id='{first}'])")
    assert answers(page) == []  # the new conversation is empty
    # Meanwhile the answer goes on, into the database.
    wait_until(
        lambda: len(stored_answer(server, first).content) >= seen + 100,
        timeout=15, what="the answer to grow in the database while away",
    )  # fmt: skip
    page.click(f"[data-testid=chat-link][data-chat-id='{first}']")  # come back
    page.wait_for_selector(f"{CHAT}[data-chat-id='{first}']")
    back = wait_answer(page, seen + 100)
    assert CANNED_ANSWER.startswith(back)
    grown = wait_answer(page, len(back) + 40)  # resume: true follows it live
    assert CANNED_ANSWER.startswith(grown)
    assert page.get_attribute(CHAT, "data-status") == "streaming"
    wait_finished(page)
    assert_complete(page, server, first)


def test_reload_mid_answer_resumes_without_duplicates(
    aisdk_chat: Callable[..., Server], page: Any
) -> None:
    server = aisdk_chat()
    chat_id = open_chat(page, server)
    send(page, "Tell me")
    seen = wait_answer(page, 60)
    page.reload()
    page.wait_for_selector(f"{CHAT}[data-chat-id='{chat_id}']")  # the same chat, from localStorage
    back = wait_answer(page, len(seen))
    assert CANNED_ANSWER.startswith(back)
    wait_answer(page, len(back) + 40)  # resumed by itself, growing
    wait_finished(page)
    assert_complete(page, server, chat_id)
    page.reload()
    page.wait_for_selector(f"{CHAT}[data-status=ready]")
    wait_answer(page, FULL)
    assert_complete(page, server, chat_id)


def test_stop_keeps_the_partial_and_continue_completes_it(
    aisdk_chat: Callable[..., Server], page: Any
) -> None:
    server = aisdk_chat()
    chat_id = open_chat(page, server)
    send(page, "Tell me")
    wait_answer(page, 60)
    page.click("[data-testid=stop]")
    page.wait_for_selector(INTERRUPTED)
    assert page.inner_text(INTERRUPTED) == "(response interrupted)"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "aisdk_stopped.png"))
    partial = answers(page)[-1]
    assert 60 <= len(partial) < FULL and CANNED_ANSWER.startswith(partial)
    m = stored_answer(server, chat_id)
    assert (m.content, m.finish_reason, m.interrupted) == (partial, "stopped", True)
    page.wait_for_timeout(500)
    assert answers(page) == [partial]  # stopped for real: nothing more comes
    assert len(stored_answer(server, chat_id).content) == len(partial)

    page.click(CONTINUE)
    wait_answer(page, len(partial) + 40)
    assert page.locator(INTERRUPTED).count() == 0
    wait_finished(page)
    assert_complete(page, server, chat_id)
    page.reload()
    page.wait_for_selector(f"{CHAT}[data-status=ready]")
    wait_answer(page, FULL)
    assert_complete(page, server, chat_id)


def test_server_killed_mid_answer(
    aisdk_chat: Callable[..., Server], page: Any, tmp_path: Path
) -> None:
    """SIGKILL mid-answer, the server restarted on the same port and database: once
    the dead writer's lease is over the page shows the partial answer as interrupted,
    and Continue completes it."""
    server = aisdk_chat()
    chat_id = open_chat(page, server)
    send(page, "Tell me")
    wait_answer(page, 200)  # past a draft flush (every 20 chunks of 4 characters)
    os.kill(server.proc.pid, signal.SIGKILL)
    assert server.proc.wait() == -signal.SIGKILL
    saved = stored_answer(server, chat_id)
    assert saved.status != COMPLETE and len(saved.content) >= 80
    assert CANNED_ANSWER.startswith(saved.content)

    server = aisdk_chat("--lease-seconds", "2", port=server.port, db=server.db)
    page.reload()
    page.wait_for_selector(f"{CHAT}[data-chat-id='{chat_id}']")
    page.wait_for_selector(INTERRUPTED, timeout=15000)  # after the 2 s lease, at most
    assert page.get_attribute(CHAT, "data-status") == "ready"
    assert answers(page) == [saved.content]
    m = stored_answer(server, chat_id, lease_seconds=2)  # the server's view
    assert (m.content, m.interrupted) == (saved.content, True)

    page.click(CONTINUE)
    wait_answer(page, len(saved.content) + 40)
    wait_finished(page)
    assert_complete(page, server, chat_id)
