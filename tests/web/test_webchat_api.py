"""The webchat example's API behind its page, in process (no browser, no server):
one answer at a time per conversation (409), questions never stored twice, rename and
delete, the sidebar's "generating" flag, titles, and what the page is served with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from support import ROOT

from chatpersist import ChatStore
from chatpersist.providers import CANNED_ANSWER


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/chat.db"


@pytest.fixture
def http(db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The example app with a browser's identity (it loaded the page)."""
    monkeypatch.syspath_prepend(str(ROOT))
    from examples.webchat.app import create_app

    with TestClient(create_app(db, fake_delay=0.0005), raise_server_exceptions=False) as client:
        assert client.get("/").status_code == 200
        yield client


def events(body: str) -> list[tuple[str, dict[str, Any]]]:
    import json

    out = []
    for frame in body.split("\n\n"):
        lines = frame.splitlines()
        kind = next((ln[7:] for ln in lines if ln.startswith("event: ")), None)
        data = next((ln[6:] for ln in lines if ln.startswith("data: ")), None)
        if kind and data:
            out.append((kind, json.loads(data)))
    return out


def new_session(http: TestClient, **body: Any) -> str:
    return str(http.post("/api/sessions", json=body).json()["id"])


def test_the_page_and_its_files(http: TestClient) -> None:
    page = http.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline
    icon = http.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    for path in ("/static/app.js", "/static/app.css", "/static/vendor/marked.umd.js",
                 "/static/vendor/purify.min.js", "/static/favicon.svg"):  # fmt: skip
        assert http.get(path).status_code == 200, path
    assert http.get("/static/../app.py").status_code == 404


def test_one_answer_at_a_time_per_conversation(http: TestClient, db: str) -> None:
    sid = new_session(http)
    first = events(http.post(f"/api/sessions/{sid}/messages", json={"text": "hi"}).text)
    mid = first[0][1]["message_id"]
    with ChatStore(db) as store:
        with store.draft(sid) as stopped:  # an answer cut short, to continue later
            stopped.append("partial")
            stopped.stop("stopped")
        with store.draft(sid) as live:  # and one being written, by another worker
            live.append("being written")
            live.flush()
            r = http.post(f"/api/sessions/{sid}/messages", json={"text": "again"})
            assert r.status_code == 409, r.text
            r = http.post(f"/api/messages/{stopped.message_id}/continue")
            assert r.status_code == 409, r.text
            listed = {s["id"]: s for s in http.get("/api/sessions").json()}
            assert listed[sid]["generating"] is True
            other = new_session(http)  # other conversations are free
            assert http.post(f"/api/sessions/{other}/messages", json={"text": "yo"}).status_code == 200
        assert store.history(sid)[-1].role == "assistant"  # "again" was never stored
    listed = {s["id"]: s for s in http.get("/api/sessions").json()}
    assert listed[sid]["generating"] is False
    # Once nothing is written there: Continue works (same message), and so does sending.
    body = http.post(f"/api/messages/{stopped.message_id}/continue?policy=cancel").text
    assert events(body)[-1][1]["status"] == "complete"
    assert http.post(f"/api/sessions/{sid}/messages", json={"text": "again"}).status_code == 200
    assert [e for e in first if e[0] == "end"][0][1]["message_id"] == mid


def test_a_question_sent_twice_is_stored_once(http: TestClient, db: str) -> None:
    sid = new_session(http)
    with ChatStore(db) as store:  # the first try got the question stored, then broke
        store.add_message(sid, "user", "kept?", message_id=f"{sid}.q.abcdef123456")
    r = http.post(f"/api/sessions/{sid}/messages", json={"text": "kept?", "id": "abcdef123456"})
    assert events(r.text)[-1][1]["status"] == "complete"
    with ChatStore(db) as store:
        roles = [(m.role, m.content) for m in store.history(sid)]
    assert roles == [("user", "kept?"), ("assistant", CANNED_ANSWER)]
    # Sent again after it was answered: refused, nothing stored.
    r = http.post(f"/api/sessions/{sid}/messages", json={"text": "kept?", "id": "abcdef123456"})
    assert r.status_code == 409
    for bad in ("short", "no spaces allowed", 12345678, "x" * 65):
        r = http.post(f"/api/sessions/{sid}/messages", json={"text": "q", "id": bad})
        assert r.status_code == 400, bad
    assert len(http.get(f"/api/sessions/{sid}/messages").json()) == 2


def test_rename_and_delete(http: TestClient, db: str) -> None:
    sid = new_session(http, title="  Why   save\ndrafts? ")
    keep = new_session(http)
    titles = {s["id"]: s["title"] for s in http.get("/api/sessions").json()}
    assert titles == {sid: "Why save drafts?", keep: "New chat"}
    r = http.patch(f"/api/sessions/{sid}", json={"title": " Drafts,  explained "})
    assert r.json() == {"id": sid, "title": "Drafts, explained"}
    assert http.patch(f"/api/sessions/{sid}", json={"title": "  "}).status_code == 400
    long = http.patch(f"/api/sessions/{sid}", json={"title": "x" * 500}).json()["title"]
    assert len(long) == 200
    events(http.post(f"/api/sessions/{sid}/messages", json={"text": "hi"}).text)
    other = TestClient(http.app, raise_server_exceptions=False)
    other.get("/")  # another user
    assert other.patch(f"/api/sessions/{sid}", json={"title": "mine"}).status_code == 403
    assert other.delete(f"/api/sessions/{sid}").status_code == 403
    assert http.delete(f"/api/sessions/{sid}").json() == {"deleted": 2}
    assert [s["id"] for s in http.get("/api/sessions").json()] == [keep]
    assert http.delete(f"/api/sessions/{sid}").status_code == 404
    assert http.get(f"/api/sessions/{sid}/messages").status_code == 404
    assert http.patch(f"/api/sessions/{sid}", json={"title": "back?"}).status_code == 404
    with ChatStore(db) as store:
        assert [s.id for s in store.sessions()] == [keep]
