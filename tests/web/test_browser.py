"""End to end in a real browser (Playwright driving Debian's Chromium, headless):
the scenario of the original bug report, and its neighbours. Screenshots of each
final state go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from web.webserver import ARTIFACTS, Server

from chatpersist import COMPLETE, ChatStore
from chatpersist.providers import CANNED_ANSWER

BUBBLE = ".msg.assistant"


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 650})
    pg = context.new_page()
    yield pg
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()


def send(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def bubble_text(page: Any, nth: int = -1) -> str:
    """An answer's text as the page has it (its Markdown source; the page renders it)."""
    return str(page.evaluate(f"(n) => [...document.querySelectorAll('{BUBBLE}')].at(n).source", nth))


def wait_text(page: Any, min_chars: int) -> None:
    page.wait_for_function(
        f"() => {{ const b = document.querySelectorAll('{BUBBLE}'); "
        f"return b.length && (b[b.length - 1].source || '').length >= {min_chars}; }}"
    )


def last_message(server: Server) -> Any:
    with ChatStore(server.db) as store:
        sessions = store.sessions()
        msgs = [m for s in sessions for m in store.history(s.id) if m.role == "assistant"]
    return max(msgs, key=lambda m: m.created_at)


@pytest.mark.slow
def test_switch_conversation_and_come_back(webchat: Callable[..., Server], page: Any) -> None:
    server = webchat(delay=0.03)
    page.goto(server.url)
    send(page, "Why save drafts?")  # a new conversation, made by its first message
    page.wait_for_selector("#sessions li.active")
    first = page.get_attribute("#sessions li.active", "data-id")
    wait_text(page, 60)
    page.click("#new")  # switch to a new chat while it streams
    page.wait_for_selector("#sessions li.active", state="detached")
    page.click(f"#sessions li[data-id='{first}']")  # come back
    page.wait_for_selector(f"{BUBBLE} .badge.interrupted")
    shown = bubble_text(page)
    assert len(shown) >= 60 and CANNED_ANSWER.startswith(shown)
    m = last_message(server)
    assert (m.content, m.finish_reason, m.interrupted) == (shown, "disconnected", True)


def test_stop_keeps_the_partial(webchat: Callable[..., Server], page: Any) -> None:
    server = webchat(delay=0.03)
    page.goto(server.url)
    send(page, "Tell me")
    wait_text(page, 40)
    page.click("#stop")
    page.wait_for_selector(f"{BUBBLE} .badge.interrupted")
    m = last_message(server)
    assert m.finish_reason == "stopped" and m.content == bubble_text(page)
    assert 40 <= len(m.content) < len(CANNED_ANSWER)


def test_reload_mid_answer(webchat: Callable[..., Server], page: Any) -> None:
    server = webchat(delay=0.03)
    page.goto(server.url)
    send(page, "Tell me")
    wait_text(page, 40)
    page.reload()
    page.wait_for_selector(f"{BUBBLE} .badge.interrupted")
    m = last_message(server)
    assert m.interrupted and m.content == bubble_text(page) and len(m.content) >= 40


@pytest.mark.slow
def test_continue_completes_it(webchat: Callable[..., Server], page: Any) -> None:
    server = webchat(delay=0.005)
    page.goto(server.url)
    send(page, "Tell me")
    wait_text(page, 40)
    page.click("#stop")
    page.wait_for_selector(f"{BUBBLE} .continue")
    page.click(f"{BUBBLE} .continue")
    wait_text(page, len(CANNED_ANSWER))
    page.wait_for_timeout(300)
    assert bubble_text(page) == CANNED_ANSWER
    assert page.locator(f"{BUBBLE} .badge").count() == 0
    m = last_message(server)
    assert (m.content, m.status) == (CANNED_ANSWER, COMPLETE)
    page.reload()
    page.wait_for_selector(f"{BUBBLE} .text")
    assert bubble_text(page) == CANNED_ANSWER and page.locator(f"{BUBBLE} .badge").count() == 0


@pytest.mark.slow
def test_policy_finish_returning_user_sees_it_grow(webchat: Callable[..., Server], page: Any) -> None:
    server = webchat(delay=0.03)
    page.goto(server.url + "/?policy=finish")  # "Keep generating when I leave", on
    send(page, "Tell me")
    page.wait_for_selector("#sessions li.active")
    first = page.get_attribute("#sessions li.active", "data-id")
    wait_text(page, 30)
    page.click("#new")
    page.wait_for_selector("#sessions li.active", state="detached")
    page.click(f"#sessions li[data-id='{first}']")
    page.wait_for_selector(f"{BUBBLE} .badge.live")
    before = len(bubble_text(page))
    wait_text(page, before + 41)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "policy_finish_growing.png"))
    page.wait_for_function(f"() => !document.querySelector('{BUBBLE} .badge')", timeout=30000)
    assert bubble_text(page) == CANNED_ANSWER
    m = last_message(server)
    assert (m.content, m.status) == (CANNED_ANSWER, COMPLETE)


def test_js_helper_saves_on_pagehide(webchat: Callable[..., Server], page: Any) -> None:
    server = webchat()
    page.goto(server.url)
    page.add_script_tag(url="/chatpersist.js")  # the helper, for pages that hold the stream
    sid = page.evaluate("async () => (await (await fetch('/api/sessions', {method: 'POST', body: '{}'})).json()).id")
    page.evaluate(
        """(sid) => {
            window.saver = ChatPersist.partialSaver({url: '/api/messages/js-1/partial',
                                                     sessionId: sid, everyChunks: 3, everyMs: 60000});
            for (const w of ['the ', 'page ', 'holds ', 'this ', 'stream']) window.saver.append(w);
        }""",
        sid,
    )
    page.wait_for_timeout(300)
    with ChatStore(server.db) as store:
        assert store.get_message("js-1").content == "the page holds "  # saved after 3 chunks
    page.goto("about:blank")  # pagehide: the last save goes out with keepalive
    page.wait_for_timeout(500)
    with ChatStore(server.db) as store:
        m = store.get_message("js-1")
    assert (m.content, m.finish_reason, m.interrupted) == ("the page holds this stream", "disconnected", True)
