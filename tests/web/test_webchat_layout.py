"""The webchat page's layout in Debian's Chromium (issue items 4, 5 and 10).

4. On a phone (390 px wide) the page is as wide as the screen, Send and Stop are on
   it, and the conversations are a drawer.
5. New text scrolls into view only while the reader is at the bottom.
10. No request of the page fails (/favicon.ico included), and the badge under an
    answer sits right under its text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web.webchat_ui import (
    ANSWER,
    PHONE,
    active_session,
    browsing,
    send,
    shot,
    start_server,
    wait_ended,
    wait_source,
)
from web.webserver import Server

pytestmark = pytest.mark.slow  # a real server and browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = Path(tmp_path_factory.mktemp("webchat")) / "layout.db"
    s = start_server(f"sqlite:///{db}", delay=0.02)
    yield s
    s.stop()


def inside(page: Any, selector: str, width: int) -> bool:
    box = page.locator(selector).bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


def page_width(page: Any) -> int:
    return int(page.evaluate("() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"))


def test_a_phone_gets_the_whole_page_and_a_drawer(server: Server, browser: Any) -> None:
    width = PHONE["width"]
    with browsing(browser, "phone", viewport=PHONE, is_mobile=True, has_touch=True) as page:
        page.goto(server.url)
        assert page_width(page) == width
        assert inside(page, "#send", width) and inside(page, "#input", width)
        assert not page.is_visible("#sidebar")  # a drawer, closed
        # A long word and a long answer do not widen the page either.
        send(page, "Does https://example.com/" + "a" * 150 + " fit? " + "Tell me more " * 10)
        wait_source(page, 60)
        assert page.is_visible("#stop") and inside(page, "#stop", width)
        assert page_width(page) == width
        shot(page, "phone_answering")
        page.keyboard.press("Escape")  # stops the answer
        page.wait_for_selector(f"{ANSWER} .badge.stopped")
        assert inside(page, f"{ANSWER} .continue", width) and inside(page, "#send", width)
        sid = active_session(page)
        page.click("#menu")
        page.wait_for_selector("#sidebar.open")
        page.wait_for_timeout(300)  # its slide
        assert inside(page, "#sidebar", width) and page.is_visible("#keep")
        assert page.get_attribute("#menu", "aria-expanded") == "true"
        shot(page, "phone_drawer")
        page.click("#new")  # a new chat: the drawer closes, the input has the focus
        page.wait_for_selector("#sidebar:not(.open)")
        assert page.evaluate("() => document.activeElement.id") == "input"
        page.click("#menu")
        page.click(f"#sessions li[data-id='{sid}'] .open")  # back to the first
        page.wait_for_selector(f"{ANSWER} .badge.stopped")
        page.wait_for_selector("#sidebar", state="hidden")  # closed, once it slid away
        assert page_width(page) == width
        assert page.errors == []


def test_reading_earlier_text_is_not_interrupted(server: Server, browser: Any) -> None:
    with browsing(browser, "scroll", viewport={"width": 900, "height": 480}) as page:
        page.goto(server.url)
        send(page, "First question")
        wait_ended(page)
        send(page, "Second question")
        wait_source(page, 30)
        box = page.locator("#messages").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, -3000)  # the reader goes back up to read
        page.wait_for_function("() => document.querySelector('#messages').scrollTop === 0")
        grown = len(wait_source(page, 200))
        wait_source(page, grown + 100)  # more text came meanwhile...
        assert page.evaluate("() => document.querySelector('#messages').scrollTop") == 0  # ...and left them there
        assert page.is_visible("#jump")
        shot(page, "scroll_reading_up")
        page.click("#jump")  # back to the bottom: new text is followed again
        wait_source(page, len(page.evaluate("() => [...document.querySelectorAll('.msg.assistant')].at(-1).source")) + 100)
        at_bottom = "() => { const m = document.querySelector('#messages'); return m.scrollHeight - m.scrollTop - m.clientHeight < 4; }"
        assert page.evaluate(at_bottom)
        wait_ended(page, count=2)
        page.wait_for_timeout(100)
        assert page.evaluate(at_bottom) and not page.is_visible("#jump")


def test_no_missing_files_and_the_badge_right_under_the_text(server: Server, browser: Any) -> None:
    with browsing(browser, "badge") as page:
        failed: list[str] = []

        def check(response: Any) -> None:
            if response.status >= 400:
                failed.append(f"{response.status} {response.url}")

        page.on("response", check)
        page.goto(server.url)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("async () => (await fetch('/favicon.ico')).status") == 200
        assert page.evaluate(
            "() => new Promise((ok) => { const i = new Image(); i.onload = () => ok(i.width > 0);"
            " i.onerror = () => ok(false); i.src = document.querySelector('link[rel=icon]').href; })"
        )
        send(page, "Tell me")
        wait_source(page, 100)
        page.click("#stop")
        page.wait_for_selector(f"{ANSWER} .badge.stopped")
        page.wait_for_timeout(100)
        gap = page.evaluate(
            f"() => {{ const m = document.querySelector('{ANSWER}');"
            " const text = m.querySelector('.text').getBoundingClientRect();"
            " return m.querySelector('.badge').getBoundingClientRect().top - text.bottom; }"
        )
        assert 0 <= gap <= 12, gap  # no blank line between them
        assert page.locator(f"{ANSWER} br").count() == 0
        assert failed == []
