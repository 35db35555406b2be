"""A websocket chat app as people write them (FastAPI, SQLite, its own alembic history):
the assistant's answer is saved when the stream ends. See README.md.

Run: python -m examples.retrofit_ws.migrate && uvicorn examples.retrofit_ws.after:app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from chatpersist import ChatStore
from chatpersist.providers import FakeModelServer, OpenAICompatible, TextDelta

from .models import MESSAGES, chat_messages, chats

engine = sa.create_engine(os.environ.get("CHAT_DB_URL", "sqlite:///chat.db"))
store = ChatStore(engine, table=MESSAGES)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Any OpenAI-compatible server; without one, a local fake model (no key, no network).
    fake = None if "MODEL_BASE_URL" in os.environ else FakeModelServer().start()
    base_url = os.environ["MODEL_BASE_URL"] if fake is None else fake.base_url
    model = os.environ.get("MODEL", "fake-model")
    app.state.model = OpenAICompatible(base_url, model, os.environ.get("MODEL_API_KEY"))
    yield
    if fake is not None:
        fake.stop()


app = FastAPI(lifespan=lifespan)


def save_message(chat_id: int, author: str, body: str) -> None:
    with engine.begin() as conn:
        row = dict(chat=chat_id, author=author, body=body, sent_at=now())
        conn.execute(sa.insert(chat_messages).values(row))
        conn.execute(sa.update(chats).where(chats.c.id == chat_id).values(updated=now()))


def load_history(chat_id: int) -> list[dict[str, str]]:
    return [{"author": m.role, "body": m.display_content} for m in store.history(chat_id)]


@app.post("/chats")
def new_chat(title: str = "New chat") -> dict[str, int]:
    insert = sa.insert(chats).values(title=title, updated=now()).returning(chats.c.id)
    with engine.begin() as conn:
        return {"id": conn.execute(insert).scalar_one()}


@app.get("/chats/{chat_id}/messages")
def history(chat_id: int) -> list[dict[str, str]]:
    return load_history(chat_id)


@app.websocket("/ws/{chat_id}")
async def chat(websocket: WebSocket, chat_id: int) -> None:
    """Each text frame received is a question; the answer goes back as
    {"token": ...} frames, then {"done": true}."""
    await websocket.accept()
    try:
        while True:
            question = await websocket.receive_text()
            save_message(chat_id, "user", question)
            prompt = store.history_for_model(chat_id)
            async with store.draft_async(chat_id) as draft:  # saved as it streams
                async for chunk in app.state.model.astream(prompt):
                    if isinstance(chunk, TextDelta):
                        draft.append(chunk.text)
                        await websocket.send_json({"token": chunk.text})  # raises if client left
            await websocket.send_json({"done": True})
    except WebSocketDisconnect:
        pass  # the user closed the tab
