"""The webchat page in Debian's Chromium: leaving a conversation, and tabs that share
one (issue items 1 and 9).

1. "Keep generating when I leave" is a visible setting, explained in one line and
   remembered by the browser; it picks the policy of the answers the page starts.
   Clicking the conversation that is already open leaves nothing.
9. A second tab follows a live answer with its own Stop, and cannot start a second
   answer in the same conversation; nor can Continue while an answer streams (409
   from the server, disabled on the page)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web.webchat_ui import (
    ANSWER,
    active_session,
    answers,
    browsing,
    send,
    shot,
    source,
    start_server,
    wait_ended,
    wait_source,
    watched,
)
from web.webserver import Server

from chatpersist import COMPLETE
from chatpersist.providers import CANNED_ANSWER

pytestmark = pytest.mark.slow  # a real server and browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = Path(tmp_path_factory.mktemp("webchat")) / "leaving.db"
    s = start_server(f"sqlite:///{db}", delay=0.03)  # the answer takes about 7 s
    yield s
    s.stop()


def test_keep_generating_is_a_setting_the_browser_remembers(server: Server, browser: Any) -> None:
    with browsing(browser, "keep_generating_setting") as page:
        page.goto(server.url)
        keep = page.get_by_label("Keep generating when I leave")
        assert keep.is_visible() and not keep.is_checked()  # the library's default: cancel
        help_text = page.inner_text("#keep-help")
        assert help_text.startswith("Off:") and "stops the answer" in help_text
        keep.check()
        assert page.inner_text("#keep-help").startswith("On:")
        send(page, "Tell me")
        sid = active_session(page)
        wait_source(page, 40)
        page.reload()  # leave mid-answer: it goes on without the page
        assert page.get_by_label("Keep generating when I leave").is_checked()
        page.wait_for_selector(f"{ANSWER} .badge.live")  # followed, still growing
        shot(page, "keep_generating_followed")
        wait_ended(page)
        assert source(page) == CANNED_ANSWER
        assert page.locator(f"{ANSWER} .badge").count() == 0
        (m,) = answers(server, sid)
        assert (m.content, m.status) == (CANNED_ANSWER, COMPLETE)
        # Off again: the next answer is cut when the page leaves (and says so).
        page.get_by_label("Keep generating when I leave").uncheck()
        send(page, "And again")
        wait_source(page, 40)
        page.reload()
        page.wait_for_selector(f"{ANSWER} .badge.interrupted")
        assert answers(server, sid)[-1].finish_reason == "disconnected"
        assert page.inner_text(f"{ANSWER} >> nth=-1 >> .badge") == "Answer cut off"


def test_clicking_the_open_conversation_leaves_nothing(server: Server, browser: Any) -> None:
    with browsing(browser, "click_open_conversation") as page:
        page.goto(server.url)
        send(page, "Tell me")
        sid = active_session(page)
        wait_source(page, 40)
        page.click("#sessions li.active")  # the conversation already open
        page.click("#sessions li.active")
        wait_ended(page)
        assert source(page) == CANNED_ANSWER
        assert page.locator(f"{ANSWER} .badge").count() == 0
        (m,) = answers(server, sid)
        assert (m.content, m.status) == (CANNED_ANSWER, COMPLETE)
        assert page.errors == []


def test_a_second_tab_follows_with_stop_and_one_answer_at_a_time(
    server: Server, browser: Any
) -> None:
    with browsing(browser, "second_tab_first") as first:
        first.goto(server.url)
        send(first, "Tell me")
        sid = active_session(first)
        wait_source(first, 30)
        second = watched(first.context.new_page())  # the same user, another tab
        second.goto(f"{server.url}/?session={sid}")
        second.wait_for_selector(f"{ANSWER} .badge.live")
        assert second.is_visible("#stop") and not second.is_visible("#send")
        # It cannot start a second answer in the conversation: not from the page...
        send(second, "Me too")
        second.wait_for_selector("#notice:not([hidden])")
        assert second.locator(".msg.user").count() == 1
        assert second.input_value("#input") == "Me too"  # kept, to send later
        # ...nor behind its back.
        status = second.evaluate(
            "async (sid) => (await fetch(`/api/sessions/${sid}/messages`, {method: 'POST',"
            " headers: {'content-type': 'application/json'}, body: '{\"text\": \"x\"}'})).status",
            sid,
        )
        assert status == 409
        shot(second, "second_tab_following")
        second.click("#stop")  # the second tab's Stop ends the first tab's answer
        for page in (first, second):
            page.wait_for_selector(f"{ANSWER} .badge.stopped")
            assert page.inner_text(f"{ANSWER} .badge") == "Stopped by you"
        stopped = answers(server, sid)[-1]
        assert stopped.finish_reason == "stopped"
        assert source(first) == source(second) == stopped.content
        # While a new answer streams, Continue on the stopped one waits (page and server).
        send(first, "Something else")
        wait_source(first, 20)
        assert first.locator(f"{ANSWER} >> nth=0 >> .continue").is_disabled()
        status = first.evaluate(
            "async (mid) => (await fetch(`/api/messages/${mid}/continue`, {method: 'POST'})).status",
            str(stopped.id),
        )
        assert status == 409
        second.wait_for_selector(f"{ANSWER} >> nth=1 >> .badge.live")  # the other tab sees it
        assert second.is_visible("#stop")
        first.keyboard.press("Escape")  # Escape stops, in any tab
        for page in (first, second):
            wait_ended(page)
            assert not page.locator(f"{ANSWER} >> nth=0 >> .continue").is_disabled()
        assert first.errors == [] and second.errors == []
