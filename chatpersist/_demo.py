"""The offline demo: an answer streams, the client goes away halfway, nothing is lost."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from ._store import ChatStore

QUESTION = "Why should a chat app save an answer while it is still streaming?"

ANSWER = (
    "Because the person reading it may leave before it ends. They switch to another "
    "conversation, close the tab, lose the network or press Ctrl-C, and an app that saves "
    "the answer only when the stream finishes throws away everything generated so far. "
    "When they come back, their question has no reply, as if the model never answered. "
    "Saving a draft every few chunks or every couple of seconds costs a handful of small "
    "writes, and in exchange the partial answer is always there, clearly marked as "
    "interrupted, ready to be read, continued or regenerated."
)


class ClientGone(Exception):
    """The client disconnected (closed the tab, switched conversation)."""


def fake_model(text: str, chunk_chars: int = 4, delay: float = 0.01) -> Iterator[str]:
    for i in range(0, len(text), chunk_chars):
        time.sleep(delay)
        yield text[i : i + chunk_chars]


def run_demo(db_url: str, echo: Callable[[str], None] = print, delay: float = 0.01) -> str:
    """Stream a canned answer, drop the client halfway, then print the history."""
    with ChatStore(db_url, every_chunks=10, every_seconds=0.5) as store:
        store.migrate()
        sid = store.create_session("demo")
        store.add_message(sid, "user", QUESTION)
        echo(f"user> {QUESTION}")
        echo(
            "assistant> ",
        )
        cut = len(ANSWER) // 2
        try:
            with store.draft(sid) as d:
                for piece in fake_model(ANSWER, delay=delay):
                    d.append(piece)
                    echo(piece)
                    if len(d.text) >= cut:
                        d.stop("disconnected")
                        raise ClientGone
        except ClientGone:
            echo(f"\n\n[client disconnected after {len(d.text)} of {len(ANSWER)} characters]")
        echo("\nHistory loaded from the database:")
        for m in store.history(sid):
            echo(f"  {m.role}: {m.display_content}")
            if m.interrupted:
                echo(f"    (status={m.status}, finish_reason={m.finish_reason})")
        return sid
