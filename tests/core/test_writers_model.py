"""A model of several writers and a client on one message (hypothesis, stateful).

Three stores (as three processes would) open, take over, append to, flush and end
drafts of one message, while a client sends whole texts, the app deletes the row, and
flushes fail for a while. Whatever happens: the stored text is a prefix of the text
of the one writer that holds the row, seq never goes back, complete never reverts.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from tenacity import wait_fixed

from chatpersist import COMPLETE, STREAMING, ChatStore, MessageConflict
from chatpersist._schema import CLIENT_WRITER

WRITERS = st.integers(0, 2)
TEXT = st.text(alphabet="abcxyz ", min_size=1, max_size=5)


@pytest.mark.slow
def test_writers_takeovers_deletions_and_failures(
    make_store: Callable[..., ChatStore],
) -> None:
    stores = [
        make_store(every_chunks=10_000, every_seconds=1000, retry_wait=wait_fixed(0.01))
        for _ in range(3)
    ]
    sid = stores[0].create_session()
    counter = itertools.count()

    class Writers(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.mid = f"m-{uuid.uuid4().hex[:10]}-{next(counter)}"
            self.drafts: dict[int, Any] = {}
            # Drafts that ended: one of them may still be the row's holder.
            self.ended: list[Any] = []
            self.client_text = ""
            self.client_seq = 0
            self.last_seq = -1
            self.was_complete = False

        def row(self) -> tuple[str, int, str, str | None] | None:
            L = stores[0].layout
            with stores[0].engine.connect() as conn:
                r = conn.execute(
                    sa.select(L.content, L.seq, L.status, L.writer).where(L.id == self.mid)
                ).first()
            return None if r is None else (r[0], r[1], r[2], r[3])

        @rule(w=WRITERS)
        def open(self, w: int) -> None:
            if w in self.drafts:
                return
            d = stores[w].draft(sid, message_id=self.mid)
            try:
                d.__enter__()
            except MessageConflict:
                return  # complete: nobody writes it again
            self.drafts[w] = d

        @rule(w=WRITERS, text=TEXT)
        def append(self, w: int, text: str) -> None:
            if w in self.drafts:
                self.drafts[w].append(text)

        @rule(w=WRITERS)
        def flush(self, w: int) -> None:
            if w in self.drafts:
                self.drafts[w].flush(timeout=20)

        @rule(w=WRITERS, how=st.sampled_from(["complete", "stop", "error"]))
        def end(self, w: int, how: str) -> None:
            d = self.drafts.pop(w, None)
            if d is None:
                return
            self.ended.append(d)
            if how == "stop":
                d.stop()
            exc = RuntimeError("boom") if how == "error" else None
            d.__exit__(type(exc) if exc else None, exc, None)

        @rule(text=TEXT, done=st.booleans())
        def client(self, text: str, done: bool) -> None:
            self.client_seq = max(self.client_seq, (self.row() or ("", 0))[1]) + 1
            applied, m = stores[0].save_partial(
                sid, self.mid, self.client_text + text, self.client_seq, done=done
            )
            if applied:
                self.client_text += text

        @rule()
        def delete(self) -> None:
            L = stores[0].layout
            with stores[0].engine.begin() as conn:
                conn.execute(sa.delete(L.messages).where(L.id == self.mid))
            self.last_seq, self.was_complete = -1, False
            self.client_text, self.client_seq = "", 0

        @rule(w=WRITERS)
        def database_fails_once(self, w: int) -> None:
            writer = stores[w]._writer
            real = writer._commit

            def failing(jobs: Any) -> Any:
                writer._commit = real  # type: ignore[method-assign]
                raise sa.exc.OperationalError("injected", None, Exception("connection lost"))

            writer._commit = failing  # type: ignore[method-assign]

        @invariant()
        def one_writer_prefix(self) -> None:
            r = self.row()
            if r is None:
                return
            content, seq, status, token = r
            assert seq >= self.last_seq, (seq, self.last_seq)
            self.last_seq = seq
            if self.was_complete:
                assert status == COMPLETE
            self.was_complete = status == COMPLETE
            if token == CLIENT_WRITER:
                assert content == self.client_text
                return
            holders = [d for d in self.drafts.values() if d._opened().writer == token]
            ended = [d for d in self.ended if d._opened().writer == token]
            texts = [d.text for d in holders + ended]
            assert len(texts) <= 1
            if texts:
                assert texts[0].startswith(content), (texts[0], content)
            assert status in (COMPLETE, STREAMING)

        def teardown(self) -> None:
            for d in self.drafts.values():
                d.__exit__(None, None, None)

    Writers.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    run_state_machine_as_test(Writers, settings=Writers.TestCase.settings)
