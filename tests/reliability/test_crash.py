"""A real writer process killed with SIGKILL mid-stream."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from support import EVERY_CHUNKS, OffsetClock, chunk, kill_writer_after

from chatpersist import ChatStore


@pytest.mark.slow
def test_sigkill_mid_stream_keeps_a_recent_prefix(
    make_store: Callable[..., ChatStore], backend: str
) -> None:
    store = make_store()
    url = store.engine.url.render_as_string(hide_password=False)
    rng = random.Random(1234)
    for _ in range(3):
        sid = store.create_session()
        mid = f"crash-{rng.randrange(10**9)}"
        seen = kill_writer_after(url, sid, mid, rng.randrange(25, 120))
        stored = store.get_message(mid)
        generated = "".join(chunk(i) for i in range(seen + 50))
        assert generated.startswith(stored.content), "stored text must be a prefix"
        stored_chunks = stored.content.count(" ")
        # At most one flush window behind what the writer had reported (plus the one
        # chunk it may have appended between reporting and dying, and one in flight).
        assert seen - stored_chunks <= EVERY_CHUNKS + 2, (seen, stored_chunks)
        # Just after the crash the heartbeat is fresh: another worker could still be
        # writing, so it reads as live; once the lease has passed, as interrupted.
        assert stored.live and not stored.interrupted
        later = ChatStore(store.engine, lease_seconds=store.lease_seconds, clock=OffsetClock(31))
        m = later.get_message(mid)
        assert m.interrupted and not m.live
        assert m.display_content.endswith("(response interrupted)")
    if backend == "sqlite":
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
