"""Completion after a crash, for real: 4 worker processes on one PostgreSQL, each
running a Recoverer; the worker generating an answer (policy "finish", opted in with
`recover_with`) is SIGKILLed mid-answer. The answer completes exactly once, in another
worker, and a follower connected to a third worker sees it through to its end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from support import free_port, subprocess_env, wait_until
from web.sse import Sse, read_sse

from chatpersist import ChatStore
from chatpersist.providers import CANNED_ANSWER, FakeModelServer

WORKER = Path(__file__).with_name("completing_worker.py")
LEASE = 2.0

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["postgresql"])]


def _start(db_url: str, model_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), db_url, model_url, str(port), str(LEASE)],
        env=subprocess_env(),
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/follow/none", timeout=1).status_code == 404
        except httpx.TransportError:
            return False

    wait_until(up, timeout=30, what=f"worker on port {port}")
    return proc, url


def test_a_killed_workers_answer_completes_exactly_once(store: ChatStore, db_url: str) -> None:
    # A slow model: the answer takes seconds, so the kill lands in its middle.
    with FakeModelServer(delay=0.05, chunk_chars=4) as fake:
        workers = [_start(db_url, fake.base_url) for _ in range(4)]
        try:
            sid = store.create_session()
            asked, started = Sse(), threading.Event()

            def ask() -> None:
                try:
                    with httpx.stream("POST", f"{workers[0][1]}/ask/{sid}", timeout=60) as r:
                        lines = r.iter_lines()
                        read_sse(lines, asked, stop_after=5)
                        started.set()
                        read_sse(lines, asked)
                except httpx.TransportError:
                    pass  # its worker is killed

            asker = threading.Thread(target=ask)
            asker.start()
            assert started.wait(30)
            mid = str(asked.events[0][2]["message_id"])
            followed = Sse()
            errors: list[BaseException] = []

            def follow() -> None:
                try:
                    url = f"{workers[2][1]}/follow/{mid}"
                    with httpx.stream("GET", url, timeout=60) as r:
                        assert r.status_code == 200, r.read()
                        read_sse(r.iter_lines(), followed)
                except BaseException as exc:  # reported by the test
                    errors.append(exc)

            follower = threading.Thread(target=follow)
            follower.start()
            wait_until(lambda: len(store.get_message(mid).content) > 20, what="some text stored")
            os.kill(workers[0][0].pid, signal.SIGKILL)
            workers[0][0].wait(10)
            cut = store.get_message(mid).content
            assert cut and len(cut) < len(CANNED_ANSWER)
            follower.join(60)
            assert not follower.is_alive(), "the follower did not see the end"
            assert not errors, errors
            asker.join(10)
        finally:
            for proc, _ in workers:
                proc.kill()
                proc.wait(10)
        m = store.get_message(mid)
        requests = len(fake.requests)
    assert m.complete and m.recoveries == 1, (m, followed.events[-3:])
    # Exactly once: the text cut off, then the rest of it (the fake model continues a
    # partial answer of its own from where it stops), with no repeat or gap; and two
    # requests to the model in all (no second continuation).
    assert m.content.startswith(cut) and m.content == CANNED_ANSWER
    assert requests == 2
    # The follower saw it through: what it reassembled is the stored answer.
    kind, _, end = followed.events[-1]
    assert kind == "end" and end["status"] == "complete"
    assert followed.text() == m.content
