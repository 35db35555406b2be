"""Resumable answers behind `uvicorn --workers 4`, for real: one database, four worker
processes, and the kernel spreading new connections over them. Followers that drop
and resume at random, on whichever worker, each end with exactly the answer; a Stop
sent to another worker than the generating one stops it; and when the generating
worker is SIGKILLed, a follower on another worker gets the end (interrupted) once the
draft's lease has passed."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from support import free_port, fresh_database, wait_http
from web.sse import Sse, follow, read_sse, start_answer
from web.webserver import ROOT, Server

from chatpersist._fanout import Position, parse_event_id
from chatpersist.providers import CANNED_ANSWER

WORKERS = 4
#: Seconds between the fake model's 4-character chunks: CANNED_ANSWER (873 characters,
#: 219 chunks) streams for 5.5 to 7 s.
DELAY = 0.025
#: The drafts' lease, in seconds (the example's default is ChatStore's 30 s).
LEASE = 3.0
FOLLOWERS = 20
HEADER = "x-webchat-worker"


@pytest.fixture(scope="module")
def pg_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from fresh_database("postgresql", tmp_path_factory.mktemp("workers"))


@pytest.fixture(scope="module")
def workers(pg_db: str) -> Iterator[Server]:
    """The webchat example with `--workers 4` on a fresh PostgreSQL database, every
    worker up; the whole process group is killed afterwards (restarted workers too).
    One server for the module's tests (starting four workers takes seconds): each
    test has answers of its own, and the one that kills a worker comes last (uvicorn
    starts another in its place)."""
    # The database is empty: the four workers all migrate it as they start (they take
    # turns on the database's lock; none may fail).
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.webchat", "--db", pg_db, "--port", str(port),
         "--workers", str(WORKERS), "--fake-delay", str(DELAY), "--lease-seconds", str(LEASE)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
    )  # fmt: skip
    try:
        server = Server(proc, port, pg_db)
        page = wait_http(server.url + "/", proc, "the webchat workers")
        server.cookies = dict(page.cookies)  # signed with the secret every worker shares
        # The first answer came from one worker: wait until every one answers.
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while len(seen) < WORKERS:
            assert time.monotonic() < deadline and proc.poll() is None, f"workers up: {seen}"
            with new_client(server) as client:
                seen.add(client.get("/api/sessions").headers[HEADER])
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
        proc.wait()


def new_client(server: Server, keepalive: bool = True) -> httpx.Client:
    """A client with the identity; without keep-alive, each request is a new connection
    (which the kernel hands to any worker)."""
    limits = httpx.Limits() if keepalive else httpx.Limits(max_keepalive_connections=0)
    return httpx.Client(base_url=server.url, cookies=server.cookies, timeout=60, limits=limits)


def client_on_another_worker(server: Server, worker: str) -> tuple[httpx.Client, str]:
    """A keep-alive client whose connection is served by another worker than `worker`."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        client = new_client(server)
        other = client.get("/api/sessions").raise_for_status().headers[HEADER]
        if other != worker:
            return client, other
        client.close()
    raise AssertionError(f"no connection served by another worker than {worker}")


# -- many followers, dropping and resuming on any worker ---------------------------------


@dataclass
class Follower:
    seed: int
    #: Per connection: the Last-Event-ID it sent, what it read, the worker that served it.
    connections: list[tuple[str | None, Sse, str | None]] = field(default_factory=list)
    error: BaseException | None = None

    def run(self, server: Server, mid: str) -> None:
        rng = random.Random(self.seed)
        try:
            with new_client(server, keepalive=False) as client:
                time.sleep(rng.uniform(0, 1.0))
                last: str | None = None
                deadline = time.monotonic() + 40
                while time.monotonic() < deadline:
                    part = Sse()
                    # Read a few events, then drop the connection (or read to the end).
                    worker = follow(server, mid, part, last, rng.randint(1, 12), client)
                    self.connections.append((last, part, worker))
                    if part.events and part.events[-1][0] == "end":
                        return
                    last = part.last_id or last
                    time.sleep(rng.choice([0, 0, rng.uniform(0, 0.3)]))
                raise AssertionError("no end within 40 s")
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            self.error = exc

    def replay(self, resumed_snapshots: bool = False) -> tuple[str, list[str]]:
        """The text this follower ends with (as a client applying the events would),
        and every event that broke the protocol: an id that does not name the text the
        client then has (a gap or a duplicate), a text that is not a prefix of the
        answer, a snapshot other than a fresh connection's first event."""
        text, faults = "", []
        for n, (sent, part, worker) in enumerate(self.connections):
            where = f"follower {self.seed}, connection {n} (worker {worker}, from {sent})"
            for i, (kind, eid, data) in enumerate(part.events):
                if kind == "snapshot":
                    if (sent is not None or i > 0) and not resumed_snapshots:
                        faults.append(
                            f"{where}: event {i} is a snapshot of {len(str(data['text']))} "
                            f"characters while the client had {len(text)}"
                        )
                    text = str(data["text"])
                elif kind == "delta":
                    text += str(data["text"])
                if not CANNED_ANSWER.startswith(text):
                    faults.append(f"{where}: event {i} ({kind}) leaves a text off the answer")
                if parse_event_id(eid) != (len(text), Position.of(text).crc):
                    faults.append(f"{where}: event {i} ({kind}) has id {eid}, at {len(text)}")
        return text, faults


@pytest.mark.slow
def test_followers_on_every_worker_drop_and_resume_exactly(workers: Server) -> None:
    mid, answer, t = start_answer(workers)
    generating = answer.worker
    followers = [Follower(seed) for seed in range(FOLLOWERS)]
    threads = [threading.Thread(target=f.run, args=(workers, mid)) for f in followers]
    for th in threads:
        th.start()
    t.join(30)
    for th in threads:
        th.join(30)
    assert not t.is_alive() and not any(th.is_alive() for th in threads)
    final = answer.text()
    assert final == CANNED_ANSWER
    assert answer.events[-1][0] == "end" and answer.events[-1][2]["status"] == "complete"
    errors = [f"{f.seed}: {f.error!r}" for f in followers if f.error is not None]
    assert not errors, errors
    faults = []  # all of them, for the whole picture
    for f in followers:
        text, wrong = f.replay()
        faults += wrong
        if text != final:
            faults.append(f"follower {f.seed} ends with {len(text)} characters")
        _, eid, end = f.connections[-1][1].events[-1]
        if (end["status"], end["interrupted"], end["length"]) != ("complete", False, len(final)):
            faults.append(f"follower {f.seed}: end {end} (id {eid})")
    assert not faults, f"{len(faults)} faults: {faults[:12]}"
    # They really dropped and resumed, and the kernel spread them over the workers.
    served = [w for f in followers for _, _, w in f.connections]
    assert len(served) > 3 * FOLLOWERS, len(served)
    assert len(set(served)) > 1, set(served)
    assert any(w != generating for w in served)


# -- Stop through another worker ---------------------------------------------------------


@pytest.mark.slow
def test_a_stop_sent_to_another_worker_stops_the_answer(workers: Server) -> None:
    mid, answer, t = start_answer(workers)
    assert answer.worker is not None
    time.sleep(1.0)  # some text first
    client, other = client_on_another_worker(workers, answer.worker)
    try:
        asked = time.monotonic()
        r = client.post(f"/api/messages/{mid}/stop")
        assert r.headers[HEADER] == other  # the same connection: the other worker
        assert r.json() == {"stopped": True}
        t.join(5)
        took = time.monotonic() - asked
    finally:
        client.close()
    assert not t.is_alive() and took < 2.0, took
    kind, _, end = answer.events[-1]
    assert kind == "end" and end["finish_reason"] == "stopped", answer.events[-1]
    received = answer.text()
    assert 0 < len(received) < len(CANNED_ANSWER) and CANNED_ANSWER.startswith(received)
    assert end["length"] == len(received)
    # What is stored is exactly what the client got.
    stored = Sse()
    follow(workers, mid, stored)
    assert [k for k, _, _ in stored.events] == ["snapshot", "end"]
    assert stored.text() == received
    assert stored.events[-1][2]["finish_reason"] == "stopped"


# -- the generating worker killed --------------------------------------------------------


@pytest.mark.slow
def test_a_follower_on_another_worker_learns_a_killed_writers_end(workers: Server) -> None:
    mid, answer, t = start_answer(workers, may_break=True)
    assert answer.worker is not None
    generating = int(answer.worker)
    watcher = Follower(seed=-1)
    attached, ended = threading.Event(), threading.Event()
    ended_at: list[float] = []

    def watch() -> None:
        # A follow served by another worker: new connections until one is.
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with (
                    new_client(workers) as client,
                    client.stream("GET", f"/api/messages/{mid}/follow") as r,
                ):
                    worker = r.headers[HEADER]
                    if worker == str(generating):
                        continue
                    part = Sse()
                    watcher.connections.append((None, part, worker))
                    attached.set()
                    read_sse(r.iter_lines(), part)
                    ended_at.append(time.monotonic())
                    return
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            watcher.error = exc
        finally:
            ended.set()

    threading.Thread(target=watch).start()
    assert attached.wait(20), watcher.error
    time.sleep(1.0)  # the follower gets deltas from the other process
    assert watcher.connections[0][1].events[-1][0] == "delta"
    killed_at = time.monotonic()
    os.kill(generating, signal.SIGKILL)
    t.join(10)
    assert not t.is_alive() and answer.broken is not None  # the answer's stream was cut
    assert answer.events[-1][0] == "delta"
    # The row reads as interrupted once the lease has passed; the follower in the other
    # process polls it (every 5 s while PostgreSQL's listener is up).
    assert ended.wait(LEASE + 15), "the follower never got the end"
    assert watcher.error is None, watcher.error
    took = ended_at[0] - killed_at
    part = watcher.connections[0][1]
    kind, _, end = part.events[-1]
    assert kind == "end" and end["interrupted"] is True, part.events[-1]
    assert LEASE - 1.5 < took < LEASE + 7, took
    # The follower ends with exactly the stored text (its last flush: what the killed
    # worker had streamed past it is lost, and a snapshot takes it back).
    text, faults = watcher.replay(resumed_snapshots=True)
    assert not faults, faults
    stored = Sse()
    follow(workers, mid, stored)
    assert stored.events[-1][0] == "end" and stored.events[-1][2]["interrupted"] is True
    assert text == stored.text() and 0 < len(text) < len(CANNED_ANSWER)
    assert end["length"] == len(text)
    assert CANNED_ANSWER.startswith(answer.text())
