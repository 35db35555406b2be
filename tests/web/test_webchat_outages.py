"""The webchat page in Debian's Chromium when things break (issue items 2 and 3): the
server killed (SIGKILL) and restarted, the connection cut between the browser and the
server (a TCP proxy in between), and the model's server down. The page says honestly
what happened, resumes by itself where it can, keeps the user's question, and offers
Continue or Retry; nothing of it is written into the answer's text."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import free_port
from web.webchat_ui import (
    ANSWER,
    Proxy,
    active_session,
    answers,
    browsing,
    messages,
    send,
    shot,
    source,
    start_server,
    wait_ended,
    wait_source,
)
from web.webserver import Server

from chatpersist import COMPLETE
from chatpersist.providers import CANNED_ANSWER, FakeModelServer

pytestmark = pytest.mark.slow  # real servers, killed and restarted, and a browser


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.stop()


@pytest.fixture
def proxy_to(servers: list[Server]) -> Iterator[Any]:
    proxies: list[Proxy] = []

    def make(server: Server) -> tuple[Proxy, str]:
        proxy = Proxy(("127.0.0.1", server.port))
        proxies.append(proxy)
        return proxy, f"http://127.0.0.1:{proxy.port}"

    yield make
    for p in proxies:
        p.close()


def test_a_killed_server_shows_the_answer_cut_off_within_seconds(
    servers: list[Server], browser: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 2: not "generating…" for 30 s with nothing to press."""
    monkeypatch.setenv("WEBCHAT_SECRET", "the-same-key-after-the-restart")
    db = f"sqlite:///{tmp_path}/killed.db"
    servers.append(server := start_server(db, delay=0.05))  # a slow answer, killed mid-way
    with browsing(browser, "server_killed") as page:
        page.goto(server.url)
        send(page, "Tell me")
        sid = active_session(page)
        wait_source(page, 40)
        server.stop()  # SIGKILL
        killed = time.monotonic()
        page.wait_for_selector(f"{ANSWER} .badge.reconnecting", timeout=5000)
        assert page.inner_text(f"{ANSWER} .badge") == "Connection lost, reconnecting…"
        shot(page, "server_killed_reconnecting")
        servers.append(start_server(db, delay=0.005, port=server.port))
        # Without a reload, once the dead writer's heartbeat is stale (6 s): cut off.
        page.wait_for_selector(f"{ANSWER} .badge.interrupted", timeout=15000)
        assert time.monotonic() - killed < 15
        assert page.is_visible(f"{ANSWER} .continue") and page.is_visible("#send")
        assert "[" not in source(page) and CANNED_ANSWER.startswith(source(page))
        page.reload()  # and a reload shows the same at once, not "generating"
        page.wait_for_selector(f"{ANSWER} .badge.interrupted", timeout=3000)
        assert page.locator(".badge.live").count() == 0
        assert page.inner_text(f"{ANSWER} .badge") == "Answer cut off"
        page.click(f"{ANSWER} .continue")
        wait_ended(page)
        assert source(page) == CANNED_ANSWER
        (m,) = answers(server, sid)
        assert (m.content, m.status) == (CANNED_ANSWER, COMPLETE)
        assert page.errors == []


def test_a_lost_connection_is_resumed_or_offers_continue(
    servers: list[Server], proxy_to: Any, browser: Any, tmp_path: Any
) -> None:
    """Item 3: no "[network error]" in the answer; the page reconnects by itself."""
    servers.append(server := start_server(f"sqlite:///{tmp_path}/cut.db", delay=0.02))
    proxy, url = proxy_to(server)
    with browsing(browser, "connection_cut") as page:
        page.goto(url)
        # "Keep generating" off: the server stops the answer when the page's
        # connection goes; the page reconnects and offers Continue, without a reload.
        send(page, "Tell me")
        sid = active_session(page)
        wait_source(page, 40)
        proxy.cut()
        page.wait_for_selector(f"{ANSWER} .badge.reconnecting", timeout=5000)
        shot(page, "connection_cut_reconnecting")
        time.sleep(1)
        proxy.restore()
        page.wait_for_selector(f"{ANSWER} .badge.interrupted", timeout=10000)
        cut = answers(server, sid)[-1]
        assert cut.finish_reason == "disconnected" and source(page) == cut.content
        page.click(f"{ANSWER} .continue")
        wait_ended(page)
        assert source(page) == CANNED_ANSWER
        # "Keep generating" on: the answer goes on, and the page picks it up exactly
        # where its connection broke (a follow from its last event id).
        page.get_by_label("Keep generating when I leave").check()
        send(page, "Tell me again")
        wait_source(page, 40)
        proxy.cut()
        page.wait_for_selector(f"{ANSWER} >> nth=-1 >> .badge.reconnecting", timeout=5000)
        time.sleep(1)
        proxy.restore()
        wait_ended(page, count=2)
        assert source(page) == CANNED_ANSWER  # no gap, nothing twice
        assert page.locator(".badge").count() == 0
        assert [m.status for m in answers(server, sid)] == [COMPLETE, COMPLETE]
        assert "network error" not in page.inner_text("#thread").lower()
        assert page.errors == []


def test_a_question_sent_while_offline_is_kept(
    servers: list[Server], proxy_to: Any, browser: Any, tmp_path: Any
) -> None:
    """Item 3: the input is not cleared, nothing is lost, Retry sends it once."""
    servers.append(server := start_server(f"sqlite:///{tmp_path}/offline.db", delay=0.005))
    proxy, url = proxy_to(server)
    question = "Is my question kept when the network is down?"
    with browsing(browser, "sent_while_offline") as page:
        page.goto(url)
        proxy.cut()
        send(page, question)
        page.wait_for_selector("#notice:not([hidden])")
        assert "wasn't sent" in page.inner_text("#notice")
        assert page.input_value("#input") == question
        assert page.locator(".msg").count() == 0
        assert "Failed to fetch" not in page.inner_text("body")
        shot(page, "sent_while_offline_notice")
        proxy.restore()
        page.click("#notice-action")  # Retry
        wait_ended(page)
        sid = active_session(page)
        assert page.input_value("#input") == ""
        stored = [(m.role, m.content) for m in messages(server, sid)]
        assert stored == [("user", question), ("assistant", CANNED_ANSWER)]
        assert page.errors == []


def test_a_model_that_is_down_gets_retry_not_an_empty_answer(
    servers: list[Server], browser: Any, tmp_path: Any
) -> None:
    """Item 3: a waiting indicator, then a notice with Retry (not Continue), kept
    across a reload; Retry answers once the model is back."""
    port = free_port()
    servers.append(
        server := start_server(
            f"sqlite:///{tmp_path}/model-down.db", "--provider", "openai",
            "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "fake-model",
        )  # fmt: skip
    )
    with browsing(browser, "model_down") as page:
        page.goto(server.url)
        send(page, "Hello?")
        page.wait_for_selector(f"{ANSWER} .typing", timeout=1000)  # not a blank bar
        page.wait_for_selector(f"{ANSWER} .answer-error", timeout=20000)
        sid = active_session(page)
        for _ in range(2):
            shown = page.inner_text(ANSWER)
            assert "didn't answer" in shown and "ConnectError" not in shown
            assert source(page) == ""
            assert page.is_visible(f"{ANSWER} .retry")
            assert page.locator(f"{ANSWER} .continue, {ANSWER} .badge").count() == 0
            page.reload()  # the same after a reload: no empty bubble
            page.wait_for_selector(f"{ANSWER} .answer-error")
        (m,) = answers(server, sid)
        assert m.finish_reason == "provider_error" and m.error
        with FakeModelServer(port=port, delay=0.002):  # the model is back
            page.click(f"{ANSWER} .retry")
            wait_ended(page)
            assert source(page) == CANNED_ANSWER
        assert page.locator(f"{ANSWER} .answer-error").count() == 0
        (m,) = answers(server, sid)
        assert (m.content, m.status) == (CANNED_ANSWER, COMPLETE)
        assert page.errors == []
