"""A small chat backend, before and after adopting chatpersist (see README.md).

Run: CHAT_DB_URL=sqlite:///chat.db python before.py   (the client leaves halfway)
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert

from chatpersist import ChatStore

engine = sa.create_engine(os.environ.get("CHAT_DB_URL", "sqlite:///chat.db"))
metadata = sa.MetaData()
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("content", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
)
store = ChatStore(engine, table="messages")


def save_message(session_id: str, role: str, content: str, message_id: str) -> None:
    """Upsert by id, as the app always did."""
    now = datetime.now(UTC).replace(tzinfo=None)
    row = dict(id=message_id, session_id=session_id, role=role, content=content, created_at=now)
    stmt = insert(messages).values(row)
    with engine.begin() as conn:
        conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_={"content": content}))


def fake_llm(prompt: str) -> Iterator[str]:
    for word in f"Here is a long answer to {prompt!r}, word by word, as models stream.".split():
        time.sleep(0.02)
        yield word + " "


def answer(session_id: str, prompt: str, send: Callable[[str], None]) -> None:
    save_message(session_id, "user", prompt, uuid.uuid4().hex)
    message_id = uuid.uuid4().hex
    with store.draft(session_id, message_id=message_id) as d:
        for piece in fake_llm(prompt):
            d.append(piece)
            send(piece)  # raises when the client has gone away
    save_message(session_id, "assistant", d.text, message_id)


def history(session_id: str) -> list[tuple[str, str]]:
    return [(m.role, m.display_content) for m in store.history(session_id)]


class ClientGone(Exception):
    pass


def main() -> None:
    metadata.create_all(engine)
    store.migrate()  # the one additive migration
    sent: list[str] = []

    def send(piece: str) -> None:
        if len(sent) == 5:
            raise ClientGone  # the user switched to another conversation
        sent.append(piece)

    try:
        answer("s1", "rivers", send)
    except ClientGone:
        print(f"client left after: {''.join(sent)!r}")
    for role, content in history("s1"):
        print(f"{role}: {content}")


if __name__ == "__main__":
    main()
