"""The webchat page with the keyboard alone, and for screen readers, in Debian's
Chromium (issue item 7): the input has the focus on load, after sending and after
Continue; Enter sends and Shift+Enter starts a new line; Escape stops; the
conversations are buttons the arrow keys move between; an aria-live region says the
answer; and axe-core finds nothing to fix, on a computer and on a phone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web.webchat_ui import (
    ANSWER,
    PHONE,
    axe_script,
    axe_violations,
    browsing,
    send,
    source,
    start_server,
    wait_ended,
    wait_source,
)
from web.webserver import Server

from chatpersist.providers import CANNED_ANSWER

pytestmark = pytest.mark.slow  # a real server and browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = Path(tmp_path_factory.mktemp("webchat")) / "a11y.db"
    s = start_server(f"sqlite:///{db}", delay=0.01)
    yield s
    s.stop()


def focused(page: Any) -> str:
    """The focused element, as `tag#id.class`."""
    return str(
        page.evaluate(
            "() => { const e = document.activeElement; return e.tagName.toLowerCase()"
            " + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : ''); }"
        )
    )


def test_the_keyboard_alone(server: Server, browser: Any) -> None:
    with browsing(browser, "keyboard") as page:
        page.goto(server.url)
        assert focused(page) == "textarea#input"  # on load
        page.keyboard.type("first line")
        page.keyboard.press("Shift+Enter")  # a new line, not a send
        page.keyboard.type("second line")
        assert page.input_value("#input") == "first line\nsecond line"
        assert page.locator(".msg").count() == 0
        page.keyboard.press("Enter")
        page.wait_for_selector(".msg.user")
        assert page.inner_text(".msg.user") == "first line\nsecond line"
        assert focused(page) == "textarea#input" and page.input_value("#input") == ""
        wait_source(page, 40)
        page.keyboard.press("Escape")  # stops the answer
        page.wait_for_selector(f"{ANSWER} .badge.stopped")
        assert focused(page) == "textarea#input"
        # Continue, from the keyboard: Shift+Tab from the input reaches it.
        for _ in range(10):
            page.keyboard.press("Shift+Tab")
            if "continue" in focused(page):
                break
        page.keyboard.press("Enter")
        assert focused(page) == "textarea#input"  # not the page's body
        wait_ended(page)
        assert source(page) == CANNED_ANSWER
        # The answer is said by the live region.
        page.wait_for_function(
            "() => document.querySelector('#announce').textContent.includes('Saving an answer')"
        )
        live = page.locator("[aria-live]")
        assert live.count() == 1 and live.get_attribute("aria-live") == "polite"
        # A second conversation, from the keyboard: Tab to "New chat" and back.
        page.focus("#new")
        page.keyboard.press("Enter")
        assert focused(page) == "textarea#input"
        page.keyboard.type("another one")
        page.keyboard.press("Enter")
        wait_ended(page)
        # The conversations are buttons; the arrow keys move between them.
        items = page.locator("#sessions li .open")
        assert items.count() == 2
        assert items.evaluate_all("(all) => all.every((e) => e.tagName === 'BUTTON')")
        items.nth(0).focus()
        assert page.get_attribute("#sessions li.active .open", "aria-current") == "page"
        page.keyboard.press("ArrowDown")
        assert page.evaluate("() => document.activeElement === document.querySelectorAll('#sessions .open')[1]")
        page.keyboard.press("Enter")  # opens it
        page.wait_for_function("() => document.querySelectorAll('#sessions li')[1].classList.contains('active')")
        page.wait_for_selector(".msg.user:has-text('first line')")  # the first conversation
        page.keyboard.press("ArrowUp")
        assert page.evaluate("() => document.activeElement === document.querySelectorAll('#sessions .open')[0]")
        assert page.errors == []


def test_axe_finds_nothing_to_fix(server: Server, browser: Any) -> None:
    axe_script()  # installed (or skipped) before any browsing
    # The page's Content-Security-Policy refuses scripts it does not serve: bypassed
    # so that axe-core can be injected.
    with browsing(browser, "axe", bypass_csp=True) as page:
        page.goto(server.url)
        assert axe_violations(page) == []  # a new chat
        send(page, "Tell me")
        wait_source(page, 40)
        assert axe_violations(page) == []  # an answer being written
        page.click("#stop")
        page.wait_for_selector(f"{ANSWER} .continue")
        send(page, "And the rest?")
        wait_ended(page, count=2)
        assert axe_violations(page) == []  # a stopped answer, a complete one
    with browsing(browser, "axe_phone", bypass_csp=True, viewport=PHONE, is_mobile=True) as phone:
        phone.goto(server.url)
        send(phone, "Tell me")
        wait_ended(phone)
        assert axe_violations(phone) == []
        phone.click("#menu")
        phone.wait_for_selector("#sidebar.open")
        phone.wait_for_timeout(300)
        assert axe_violations(phone) == []  # the drawer open
