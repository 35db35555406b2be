"""Web security of chatpersist.asgi and of the example app: CSRF on the save-partial
endpoint, authorization of `follow`, identity in the example, input validation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient
from web.webserver import ROOT

from chatpersist import COMPLETE, ChatStore
from chatpersist.asgi import ChatStreams

ALICE = {"x-user": "alice"}


def alice_only(request: Request, session_id: str) -> bool:
    return request.headers.get("x-user") == "alice"


async def alice_only_async(request: Request, session_id: str) -> bool:
    return request.headers.get("x-user") == "alice"


def client_for(streams: ChatStreams, **endpoint: Any) -> TestClient:
    """Starlette app on http://app: save-partial and follow, app errors as 500s."""

    async def follow(request: Request) -> Response:
        return streams.follow(request.path_params["message_id"])

    routes = [
        Route("/m/{message_id}/partial", streams.save_partial_endpoint(**endpoint), methods=["PUT", "POST"]),
        Route("/m/{message_id}/follow", follow),
    ]  # fmt: skip
    return TestClient(Starlette(routes=routes), base_url="http://app", raise_server_exceptions=False)


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out, event = [], ""
    for line in text.splitlines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            out.append((event, json.loads(line[6:])))
    return out


# -- 1. CSRF: JSON only, and the Origin checked --


def test_save_partial_refuses_bodies_a_form_can_send(store: ChatStore) -> None:
    sid = store.create_session()
    http = client_for(ChatStreams(store, authorize=alice_only))
    body = json.dumps({"session_id": sid, "seq": 1, "content": "forged"})
    for ctype in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                  "multipart/form-data; boundary=x", None):  # fmt: skip
        headers = {**ALICE, **({"content-type": ctype} if ctype else {})}
        r = http.post("/m/c1/partial", content=body, headers=headers)
        assert r.status_code == 415, ctype
        assert "application/json" in r.json()["error"]
    r = http.post("/m/c1/partial", content=body, headers={**ALICE, "content-type": "text/plain", "origin": "https://evil.example"})
    assert r.status_code in (403, 415)
    with pytest.raises(LookupError):
        store.get_message("c1")  # nothing was written
    r = http.put("/m/c1/partial", content=body, headers={**ALICE, "content-type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 200 and r.json()["applied"] is True


def test_save_partial_checks_the_origin(store: ChatStore) -> None:
    sid = store.create_session()
    http = client_for(ChatStreams(store, authorize=alice_only, allowed_origins=["https://chat.example.com"]))

    def put(seq: int, origin: str | None, host: str | None = None) -> int:
        headers = {**ALICE, **({"origin": origin} if origin is not None else {})}
        if host:
            headers["host"] = host
        body = {"session_id": sid, "seq": seq, "content": f"v{seq}"}
        return http.put("/m/c1/partial", json=body, headers=headers).status_code

    assert put(1, None) == 200  # not a browser's cross-origin request
    assert put(2, "http://app") == 200  # same origin
    assert put(3, "http://APP:80") == 200  # the same origin, spelled differently
    assert put(4, "https://chat.example.com") == 200  # listed
    assert put(5, "https://chat.example.com:443") == 200
    for origin in ("https://evil.example", "http://app.evil.example", "https://app", "http://app:8080",
                   "null", "", "http://chat.example.com", "garbage", "http://[bad"):  # fmt: skip
        assert put(9, origin) == 403, origin
    assert put(6, "http://other:8000", host="other:8000") == 200  # its own Host
    assert store.get_message("c1").content == "v6"


def test_allowed_origins_of_the_endpoint(store: ChatStore) -> None:
    sid = store.create_session()
    streams = ChatStreams(store, allowed_origins=["https://a.example"])
    http = client_for(streams, authorize=alice_only, allowed_origins=["https://b.example"])
    body = {"session_id": sid, "seq": 1, "content": "x"}
    r = http.put("/m/c1/partial", json=body, headers={**ALICE, "origin": "https://a.example"})
    assert r.status_code == 403  # the endpoint's list replaces the ChatStreams one
    r = http.put("/m/c1/partial", json=body, headers={**ALICE, "origin": "https://b.example"})
    assert r.status_code == 200
    with pytest.raises(ValueError):
        ChatStreams(store, allowed_origins=["chat.example.com"])  # not scheme://host


# -- 2. authorization of follow, one hook for all endpoints --


@pytest.mark.parametrize("hook", [alice_only, alice_only_async])
def test_follow_is_authorized_before_the_stream(store: ChatStore, hook: Any) -> None:
    sid = store.create_session()
    m = store.add_message(sid, "assistant", "secret answer")
    http = client_for(ChatStreams(store, authorize=hook))
    r = http.get(f"/m/{m.id}/follow", headers={"x-user": "mallory"})
    assert r.status_code == 403 and r.headers["content-type"] == "application/json"
    assert "secret" not in r.text
    r = http.get(f"/m/{m.id}/follow")  # anonymous
    assert r.status_code == 403
    r = http.get("/m/no-such-message/follow", headers=ALICE)
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert "no-such-message" in r.json()["error"]
    r = http.get(f"/m/{m.id}/follow", headers=ALICE)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = events(r.text)
    assert got[0] == ("snapshot", {"text": "secret answer", "status": COMPLETE, "live": False})
    assert got[-1][0] == "end"


def test_one_hook_for_all_endpoints(store: ChatStore) -> None:
    sid = store.create_session()
    m = store.add_message(sid, "assistant", "hi")
    asked: list[tuple[str, str]] = []

    def hook(request: Request, session_id: str) -> bool:
        asked.append((request.url.path, session_id))
        return request.headers.get("x-user") == "alice"

    http = client_for(ChatStreams(store, authorize=hook))  # save_partial_endpoint()
    r = http.put("/m/c1/partial", json={"session_id": sid, "seq": 1, "content": "x"}, headers={"x-user": "bob"})
    assert r.status_code == 403
    assert http.get(f"/m/{m.id}/follow", headers={"x-user": "bob"}).status_code == 403
    assert asked == [("/m/c1/partial", sid), (f"/m/{m.id}/follow", sid)]
    # The hook given to save_partial_endpoint (the old way) wins over the ChatStreams one.
    http = client_for(ChatStreams(store, authorize=hook), authorize=lambda r, s: True)
    r = http.put("/m/c1/partial", json={"session_id": sid, "seq": 1, "content": "x"}, headers={"x-user": "bob"})
    assert r.status_code == 200
    # Per call, follow takes one too.
    streams = ChatStreams(store, authorize=hook)
    app = Starlette(routes=[Route("/f/{mid}", lambda rq: streams.follow(rq.path_params["mid"], authorize=lambda r, s: False))])
    assert TestClient(app).get(f"/f/{m.id}", headers=ALICE).status_code == 403


def test_no_hook_no_access(store: ChatStore) -> None:
    streams = ChatStreams(store)
    with pytest.raises(TypeError, match="authorize"):
        streams.save_partial_endpoint()
    with pytest.raises(TypeError, match="authorize"):
        streams.follow("any")


# -- 4. input validation of save-partial --


def test_save_partial_validates_its_input(store: ChatStore) -> None:
    sid = store.create_session()
    http = client_for(ChatStreams(store, authorize=alice_only))
    good = {"session_id": sid, "seq": 1, "content": "x"}
    bad: list[tuple[Any, str]] = [
        ({**good, "seq": 2**31}, "seq"),
        ({**good, "seq": 2**63}, "seq"),
        ({**good, "seq": -1}, "seq"),
        ({**good, "seq": 0}, "seq"),
        ({**good, "seq": 1.5}, "seq"),
        ({**good, "seq": "1"}, "seq"),
        ({**good, "seq": True}, "seq"),
        ({**good, "seq": None}, "seq"),
        ({**good, "finish_reason": "x" * 65, "done": True}, "finish_reason"),
        ({**good, "finish_reason": 3, "done": True}, "finish_reason"),
        ({**good, "done": "false"}, "done"),
        ({**good, "done": 1}, "done"),
        ({**good, "done": None}, "done"),
        ({**good, "content": None}, "content"),
        ({**good, "content": 42}, "content"),
        ({**good, "content": ["a"]}, "content"),
        ({**good, "content": {"text": "a"}}, "content"),
        ({**good, "session_id": 7}, "session_id"),
        ({"seq": 1, "content": "x"}, "session_id"),
        ([good], "object"),
        ("just a string", "object"),
    ]
    for body, field in bad:
        r = http.put("/m/c1/partial", json=body, headers=ALICE)
        assert r.status_code == 400, body
        assert field in r.json()["error"], (body, r.json())
    deep = json.dumps({**good, "extra": 0}).replace("0}", "[" * 100_000 + "]" * 100_000 + "}")
    for raw in (deep, "[" * 100_000, '{"seq": ' + "9" * 5000 + "}", b"\xff\xfe{", "{not json", ""):
        r = http.put("/m/c1/partial", content=raw, headers={**ALICE, "content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"], raw[:20]
    r = http.put("/m/" + "m" * 300 + "/partial", json=good, headers=ALICE)
    assert r.status_code == 400
    r = http.put("/m/c1/partial", json={**good, "session_id": "s" * 300}, headers=ALICE)
    assert r.status_code == 404  # no such session
    with pytest.raises(LookupError):
        store.get_message("c1")  # none of it was written
    # The limits themselves are accepted.
    r = http.put("/m/c1/partial", json={**good, "seq": 2**31 - 1, "done": False}, headers=ALICE)
    assert r.status_code == 200 and r.json()["seq"] == 2**31 - 1
    r = http.put("/m/c2/partial", json={**good, "done": True, "finish_reason": "s" * 64}, headers=ALICE)
    assert r.status_code == 200 and store.get_message("c2").finish_reason == "s" * 64
    body = json.dumps({**good, "content": "a\x00b\ud800"})  # (httpx cannot encode it)
    r = http.put("/m/c3/partial", content=body, headers={**ALICE, "content-type": "application/json"})
    assert r.status_code == 200  # text any database can hold (see the README)


# -- 3. the example app: an identity, and each user sees only their sessions --


@pytest.fixture
def webchat_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The example app in process; the client has no identity yet."""
    monkeypatch.syspath_prepend(str(ROOT))
    from examples.webchat.app import create_app

    app = create_app(f"sqlite:///{tmp_path}/chat.db", fake_delay=0.0005)
    with TestClient(app, raise_server_exceptions=False) as http:
        yield http


def user(http: TestClient) -> TestClient:
    """Another browser on the same app: it gets its identity by loading the page."""
    other = TestClient(http.app, raise_server_exceptions=False)
    r = other.get("/")
    assert r.status_code == 200 and "webchat_user" in other.cookies
    return other


def test_example_refuses_anonymous_requests(webchat_app: TestClient) -> None:
    anon = webchat_app
    alice = user(anon)
    sid = alice.post("/api/sessions", json={}).json()["id"]
    mid = events(alice.post(f"/api/sessions/{sid}/messages", json={"text": "hi"}).text)[0][1]["message_id"]
    calls = [
        ("GET", "/api/sessions", None),
        ("POST", "/api/sessions", {}),
        ("GET", f"/api/sessions/{sid}/messages", None),
        ("POST", f"/api/sessions/{sid}/messages", {"text": "hi"}),
        ("POST", f"/api/messages/{mid}/continue", None),
        ("POST", f"/api/messages/{mid}/stop", None),
        ("GET", f"/api/messages/{mid}/follow", None),
        ("PUT", "/api/messages/p1/partial", {"session_id": sid, "seq": 1, "content": "x"}),
    ]
    user_id, sig = alice.cookies["webchat_user"].split(".")
    cookies = [
        "",
        f"webchat_user={user_id}.{sig[:-1]}{'1' if sig[-1] == '0' else '0'}",  # forged
        f"webchat_user={'f' * len(user_id)}.{sig}",  # another user, alice's signature
        f"webchat_user={user_id}",
        "webchat_user=me",
        "webchat_user=\xe9.\xe9",
    ]
    anon.cookies.clear()
    for cookie in cookies:
        for method, path, body in calls:
            r = anon.request(method, path, json=body, headers={b"cookie": cookie.encode("latin-1")})
            assert r.status_code == 401, (method, path, cookie)
    assert len(alice.get(f"/api/sessions/{sid}/messages").json()) == 2  # nothing added


def test_example_each_user_sees_only_their_sessions(webchat_app: TestClient) -> None:
    http = webchat_app
    r = http.get("/")
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    alice, bob = user(http), user(http)
    sid = alice.post("/api/sessions", json={"title": "alice's"}).json()["id"]
    r = alice.post(f"/api/sessions/{sid}/messages", json={"text": "my secret"})
    mid = events(r.text)[0][1]["message_id"]
    assert [s["id"] for s in alice.get("/api/sessions").json()] == [sid]
    assert bob.get("/api/sessions").json() == []
    assert bob.get(f"/api/sessions/{sid}/messages").status_code == 403
    assert bob.post(f"/api/sessions/{sid}/messages", json={"text": "injected"}).status_code == 403
    assert bob.post(f"/api/messages/{mid}/continue").status_code == 403
    assert bob.post(f"/api/messages/{mid}/stop").status_code == 403
    r = bob.get(f"/api/messages/{mid}/follow")
    assert r.status_code == 403 and "secret" not in r.text
    r = bob.put("/api/messages/p1/partial", json={"session_id": sid, "seq": 1, "content": "x"})
    assert r.status_code == 403
    r = bob.put("/api/messages/p1/partial", json={"session_id": sid, "seq": 1, "content": "x"},
                headers={"x-user": "me"})  # the old example's "owner" header  # fmt: skip
    assert r.status_code == 403
    texts = [m["content"] for m in alice.get(f"/api/sessions/{sid}/messages").json()]
    assert texts[0] == "my secret" and len(texts) == 2
    assert alice.get(f"/api/messages/{mid}/follow").status_code == 200
    # Bob's own conversation works as usual.
    bsid = bob.post("/api/sessions", json={}).json()["id"]
    r = bob.put("/api/messages/p1/partial", json={"session_id": bsid, "seq": 1, "content": "x"})
    assert r.status_code == 200
    assert [s["id"] for s in bob.get("/api/sessions").json()] == [bsid]
