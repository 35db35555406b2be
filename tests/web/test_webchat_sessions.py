"""Conversations on the webchat page in Debian's Chromium (issue item 8): titled by
their first message, renamed and deleted from the sidebar, marked while an answer is
being written in them, and answers labelled in plain words (no internal reasons)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support import wait_until
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
)
from web.webserver import Server

from chatpersist import COMPLETE, CUT_REASONS, ChatStore
from chatpersist.providers import CANNED_ANSWER

pytestmark = pytest.mark.slow  # a real server and browser

QUESTION = "Why do streamed answers get lost when the tab closes?"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = Path(tmp_path_factory.mktemp("webchat")) / "sessions.db"
    s = start_server(f"sqlite:///{db}", delay=0.02)
    yield s
    s.stop()


def titles(server: Server) -> dict[str, str | None]:
    with ChatStore(server.db) as store:
        return {s.id: s.title for s in store.sessions()}


def item(sid: str) -> str:
    return f"#sessions li[data-id='{sid}']"


def check_tooltips(page: Any) -> None:
    for tip in page.locator(f"{ANSWER} [title]").evaluate_all("(all) => all.map((e) => e.title)"):
        assert tip not in CUT_REASONS and " " in tip and "_" not in tip, tip


def test_titles_labels_and_the_generating_marker(server: Server, browser: Any) -> None:
    with browsing(browser, "sessions_labels") as page:
        page.goto(server.url)
        send(page, QUESTION)
        first = active_session(page)
        title = page.inner_text(f"{item(first)} .label")
        assert title == "Why do streamed answers get lost when…"
        assert page.inner_text("#title") == title and titles(server)[first] == title
        wait_source(page, 40)
        page.click("#stop")  # a user's own Stop
        page.wait_for_selector(f"{ANSWER} .badge.stopped")
        assert page.inner_text(f"{ANSWER} .badge") == "Stopped by you"
        check_tooltips(page)
        # A second conversation, left mid-answer with "Keep generating" off: cut off.
        page.click("#new")
        send(page, "Second")
        second = active_session(page)
        assert second != first
        wait_source(page, 40)
        page.click(f"{item(first)} .open")
        page.wait_for_selector(f"{ANSWER} .badge.stopped")
        page.click(f"{item(second)} .open")
        page.wait_for_selector(f"{ANSWER} .badge.interrupted.cut")
        assert page.inner_text(f"{ANSWER} .badge") == "Answer cut off"
        check_tooltips(page)
        assert "cut" not in page.inner_text("#sessions").lower()  # no "1 cut"
        # "Keep generating" on: Continue, leave, and the sidebar shows it goes on.
        page.get_by_label("Keep generating when I leave").check()
        page.click(f"{ANSWER} .continue")
        page.wait_for_selector(f"{item(second)} .marker")
        page.click(f"{item(first)} .open")
        page.wait_for_selector(f"{ANSWER} .badge.stopped")
        assert page.locator(f"{item(second)} .marker").is_visible()
        assert page.locator(f"{item(first)} .marker").count() == 0
        shot(page, "sessions_generating_marker")
        page.wait_for_selector(f"{item(second)} .marker", state="detached", timeout=20000)
        assert answers(server, second)[-1].status == COMPLETE
        page.click(f"{item(second)} .open")
        wait_ended(page)
        assert source(page) == CANNED_ANSWER and page.locator(f"{ANSWER} .badge").count() == 0
        assert page.errors == []


def test_rename_and_delete(server: Server, browser: Any) -> None:
    with browsing(browser, "sessions_rename_delete") as page:
        page.goto(server.url)
        send(page, "Keep this one")
        kept = active_session(page)
        wait_ended(page)
        page.click("#new")
        page.get_by_label("Keep generating when I leave").check()
        send(page, "Delete this one")
        doomed = active_session(page)
        # Rename the first (its buttons show when it is pointed at).
        page.hover(item(kept))
        page.click(f"{item(kept)} .rename")
        page.fill(f"{item(kept)} .rename-input", "  Drafts, explained  ")
        page.press(f"{item(kept)} .rename-input", "Enter")
        page.wait_for_function(
            f"() => document.querySelector(\"{item(kept)} .label\").textContent === 'Drafts, explained'"
        )
        wait_until(lambda: titles(server)[kept] == "Drafts, explained", what="the new title stored")
        page.hover(item(kept))
        page.click(f"{item(kept)} .rename")  # Escape leaves it as it was
        page.fill(f"{item(kept)} .rename-input", "Not this")
        page.press(f"{item(kept)} .rename-input", "Escape")
        assert page.inner_text(f"{item(kept)} .label") == "Drafts, explained"
        # Delete the second while its answer is still being written.
        wait_source(page, 40)
        page.click(f"{item(doomed)} .delete")
        assert "Delete “Delete this one”?" in page.inner_text(f"{item(doomed)} .confirm")
        shot(page, "sessions_delete_confirm")
        page.click(f"{item(doomed)} .confirm .really")
        page.wait_for_selector(item(doomed), state="detached")
        assert page.inner_text("#title") == "New chat"
        assert kept in titles(server) and doomed not in titles(server)
        page.wait_for_timeout(4500)  # as long as the answer would have taken: no row comes back
        with ChatStore(server.db) as store:
            assert doomed not in [s.id for s in store.sessions()]
            assert store.interrupted(session_id=doomed) == []
            L = store.layout
            with store.engine.connect() as conn:
                rows = conn.execute(sa.select(sa.func.count()).where(L.session_id == doomed)).scalar()
        assert rows == 0
        page.reload()
        page.wait_for_selector("#sessions li")
        assert page.locator("#sessions li").count() == 1
        assert page.errors == []
