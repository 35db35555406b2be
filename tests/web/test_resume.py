"""Resumable answers: every event names its offset, a client that reconnects with
`Last-Event-ID` gets exactly what it missed, followers in the generating process get
every delta at once, followers in another process get them before the next flush
(PostgreSQL), and a Stop sent to another worker stops the answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from support import fresh_database
from web.sse import Sse, follow, start_answer
from web.webserver import Server

from chatpersist._fanout import Position, _chain, parse_event_id, resume_from
from chatpersist.providers import CANNED_ANSWER

# -- the position arithmetic ----------------------------------------------------------


def test_positions_and_event_ids() -> None:
    pos = Position()
    for piece in ("Hé", "llo ", "😀", ""):
        pos.advance(piece)
    assert pos == Position.of("Héllo 😀") and pos.offset == 7
    assert parse_event_id(pos.event_id) == (7, pos.crc)
    assert parse_event_id("12") == (12, None)
    for bad in ("", "x", "-1", "3.zz", "3.1ffffffff"):
        assert parse_event_id(bad) is None, bad
    text = "Héllo 😀 world"
    assert resume_from(text, parse_event_id(pos.event_id)) == " world"
    assert resume_from(text, (7, None)) == " world"
    assert resume_from("Other text, rewritten", parse_event_id(pos.event_id)) is None
    assert resume_from(text, (99, None)) is None and resume_from(text, None) is None


def test_chain_takes_only_what_continues() -> None:
    ahead = {0: "ab", 2: "cd", 6: "gh", 3: "dE"}
    pos = Position.of("abc")
    assert _chain(ahead, pos) == ["d", "E"]  # "ab" already had, "cd" overlaps, a gap at 5
    assert ahead == {6: "gh"}


# -- the example app, for real ----------------------------------------------------------


@pytest.mark.slow
def test_every_event_has_an_offset_and_followers_here_get_every_delta(
    webchat: Callable[..., Server],
) -> None:
    server = webchat(delay=0.01)
    mid, answer, t = start_answer(server)
    watcher = Sse()
    follow(server, mid, watcher)
    t.join(30)
    final = answer.text()
    assert final == CANNED_ANSWER
    for kind, eid, _ in answer.events:
        assert eid is not None, kind
    # every id names the text the client has at that event
    seen = ""
    for kind, eid, data in answer.events:
        if kind == "delta":
            seen += str(data["text"])
        assert parse_event_id(eid) == (len(seen), Position.of(seen).crc)
    # the follower in the same process got the text exactly, delta by delta (not in
    # flush-sized jumps: the fake model sends 4 characters at a time)
    assert watcher.text() == final
    sizes = [len(str(d["text"])) for k, _, d in watcher.events if k == "delta"]
    assert len(sizes) > 50 and max(sizes) <= 4 * 3, sizes[:20]
    assert watcher.events[-1][0] == "end" and watcher.events[-1][2]["status"] == "complete"


@pytest.mark.slow
def test_a_follower_that_drops_resumes_with_last_event_id_exactly(
    webchat: Callable[..., Server],
) -> None:
    server = webchat(delay=0.01)
    mid, answer, t = start_answer(server)
    got = ""
    last: str | None = None
    rounds = 0
    while True:
        part = Sse()
        follow(server, mid, part, last_id=last, stop_after=7)
        kinds = [k for k, _, _ in part.events]
        if last is not None:
            assert "snapshot" not in kinds  # resumed: only what it missed
        got = part.text(got)
        last = part.last_id
        rounds += 1
        if kinds and kinds[-1] == "end":
            break
    t.join(30)
    assert rounds > 3
    assert got == answer.text() == CANNED_ANSWER  # no gap, no duplicate
    # resuming from the generating stream's own ids works the same
    middle = answer.events[len(answer.events) // 2][1]
    rest = Sse()
    follow(server, mid, rest, last_id=middle)
    offset = parse_event_id(middle)
    assert offset is not None
    assert CANNED_ANSWER[: offset[0]] + rest.text() == CANNED_ANSWER
    # a position in a text that is not this one gets the whole text
    other = Sse()
    follow(server, mid, other, last_id=Position.of("something else").event_id)
    assert other.events[0][0] == "snapshot" and other.text() == CANNED_ANSWER


@pytest.mark.slow
def test_bad_positions_and_unknown_answers_are_refused_before_the_stream(
    webchat: Callable[..., Server],
) -> None:
    server = webchat(delay=0.001)
    mid, _, t = start_answer(server)
    t.join(30)
    url = f"{server.url}/api/messages/{mid}/follow"
    r = httpx.get(url, cookies=server.cookies, headers={"last-event-id": "not-an-id"})
    assert r.status_code == 400
    r = httpx.get(url, cookies=server.cookies, params={"offset": str(len(CANNED_ANSWER) - 5)})
    assert r.status_code == 200 and CANNED_ANSWER[-5:] in r.text and "snapshot" not in r.text
    r = httpx.get(f"{server.url}/api/messages/nope/follow", cookies=server.cookies)
    assert r.status_code == 404


@pytest.fixture
def shared_pg(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # Two servers, one database, one signing secret: two workers of one app.
    monkeypatch.setenv("WEBCHAT_SECRET", "shared-secret-for-the-test")
    yield from fresh_database("postgresql", tmp_path)  # type: ignore[arg-type]


@pytest.mark.slow
def test_another_process_gets_deltas_before_the_flush_and_stops_it(
    webchat: Callable[..., Server], shared_pg: str
) -> None:
    a = webchat(db=shared_pg, delay=0.02)
    b = webchat(db=shared_pg, delay=0.02)
    b.cookies = a.cookies  # the same user, on another worker
    mid, answer, t = start_answer(a)
    watcher = Sse()
    done = threading.Event()

    def watch() -> None:
        follow(b, mid, watcher)
        done.set()

    threading.Thread(target=watch).start()
    time.sleep(1.5)
    # Stop through the other worker: it is recorded, and the generating one ends it.
    asked = time.monotonic()
    r = httpx.post(f"{b.url}/api/messages/{mid}/stop", cookies=a.cookies)
    assert r.json() == {"stopped": True}
    t.join(10)
    took = time.monotonic() - asked
    assert not t.is_alive() and took < 2.0, took
    assert done.wait(15)
    end = answer.events[-1]
    assert end[0] == "end" and end[2]["finish_reason"] == "stopped"
    stored = answer.text()
    assert 0 < len(stored) < len(CANNED_ANSWER)
    assert watcher.text() == stored  # exactly the same text in the other process
    # before each flush (every 20 chunks), deltas came through NOTIFY in small pieces
    deltas = [len(str(d["text"])) for k, _, d in watcher.events if k == "delta"]
    assert len(deltas) >= 10 and sorted(deltas)[len(deltas) // 2] < 40, deltas
