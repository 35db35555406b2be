"""The websocket retrofit example (examples/retrofit_ws): integer ids, the app's own
column names and its own alembic history; answers cut by a closed websocket or a
killed server are kept, and the change to the app stays small."""

from __future__ import annotations

import importlib
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from support import ROOT, OffsetClock, changed_lines, free_port, wait_http, wait_until

from chatpersist import COMPLETE, STREAMING, ChatStore, Message
from chatpersist.providers import CANNED_ANSWER, FakeModelServer
from chatpersist.retrofit import include_object_for

websockets_client = pytest.importorskip("websockets.sync.client")

EXAMPLE = ROOT / "examples" / "retrofit_ws"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # as uvicorn and the CLI import it: from the repository root
models = importlib.import_module("examples.retrofit_ws.models")
MESSAGES = models.MESSAGES
APP_COLUMNS = {"msg_id", "chat", "author", "body", "sent_at"}
CHUNK = 4  # characters per chunk from the fake model


def alembic_config() -> Config:
    return Config(str(EXAMPLE / "alembic.ini"))


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite file migrated by the app's own alembic history, to head."""
    url = f"sqlite:///{tmp_path}/chat.db"
    monkeypatch.setenv("CHAT_DB_URL", url)  # what the example's env.py reads
    command.upgrade(alembic_config(), "head")
    return url


def columns(url: str, table: str = "chat_messages") -> set[str]:
    engine = sa.create_engine(url)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_app_alembic_history_adds_the_draft_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/chat.db"
    monkeypatch.setenv("CHAT_DB_URL", url)
    cfg = alembic_config()
    command.upgrade(cfg, "0001")  # the app before chatpersist
    assert columns(url) == APP_COLUMNS
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(models.chats).values(id=1, title="old", updated=sa.func.now()))
        conn.execute(
            sa.insert(models.chat_messages).values(
                chat=1, author="user", body="an old message", sent_at=sa.func.now()
            )
        )
    command.upgrade(cfg, "head")  # the chatpersist revision
    assert columns(url) == APP_COLUMNS | {c.name for c in MESSAGES.added_columns()}
    with ChatStore(engine, table=MESSAGES) as store:
        (old,) = store.history(1)
        assert (old.content, old.status, old.interrupted) == ("an old message", COMPLETE, False)
    # Autogenerate against the app's models proposes nothing: env.py hides our columns...
    command.check(cfg)
    # ...which it would otherwise propose to drop.
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert compare_metadata(ctx, models.metadata)
        ctx = MigrationContext.configure(
            conn, opts={"include_object": include_object_for(MESSAGES)}
        )
        assert compare_metadata(ctx, models.metadata) == []
    engine.dispose()
    command.downgrade(cfg, "0001")  # drops exactly what it added
    assert columns(url) == APP_COLUMNS


# -- the app under a real uvicorn ---------------------------------------------------


class App:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, db: str) -> None:
        self.proc, self.port, self.db = proc, port, db
        self.url = f"http://127.0.0.1:{port}"

    def new_chat(self) -> int:
        return int(httpx.post(self.url + "/chats").raise_for_status().json()["id"])

    def ws(self, chat_id: int) -> Any:
        return websockets_client.connect(f"ws://127.0.0.1:{self.port}/ws/{chat_id}")


@pytest.fixture
def start_app(db: str) -> Iterator[Callable[..., App]]:
    """`start_app(delay, chunk_chars)`: uvicorn serving after.py, its model a fake one in this process."""
    apps: list[App] = []
    fakes: list[FakeModelServer] = []

    def start(delay: float = 0.02, chunk_chars: int = CHUNK) -> App:
        fake = FakeModelServer(delay=delay, chunk_chars=chunk_chars).start()
        fakes.append(fake)
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CHAT_DB_URL": db,
               "MODEL_BASE_URL": fake.base_url}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.retrofit_ws.after:app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        app = App(proc, port, db)
        apps.append(app)
        wait_http(app.url + "/openapi.json", proc, "the example app")
        return app

    yield start
    for a in apps:
        if a.proc.poll() is None:
            a.proc.kill()
        a.proc.wait()
    for f in fakes:
        f.stop()


def read_tokens(ws: Any, chars: int | None = None) -> tuple[str, bool]:
    """(text received, whether the answer ended) after `chars` characters, or the end."""
    text = ""
    while chars is None or len(text) < chars:
        frame = json.loads(ws.recv(timeout=10))
        if frame.get("done"):
            return text, True
        text += frame["token"]
    return text, False


def last_answer(store: ChatStore, chat_id: int) -> Message:
    answers = [m for m in store.history(chat_id) if m.role == "assistant"]
    assert len(answers) == 1, answers
    return answers[0]


def test_closed_websocket_keeps_the_answer_as_disconnected(
    start_app: Callable[..., App],
) -> None:
    app = start_app()
    chat_id = app.new_chat()
    with app.ws(chat_id) as ws:
        ws.send("Why save drafts?")
        received, ended = read_tokens(ws, 10 * CHUNK)
    assert not ended  # closed mid-answer
    with ChatStore(app.db, table=MESSAGES) as store:
        wait_until(
            lambda: last_answer(store, chat_id).finish_reason == "disconnected",
            what="the draft to end as disconnected",
        )
        m = last_answer(store, chat_id)
        assert m.status == STREAMING and m.interrupted and not m.live
        assert m.error is not None and "WebSocketDisconnect" in m.error
        assert m.content and m.content.startswith(received) and CANNED_ANSWER.startswith(m.content)
        assert m.content != CANNED_ANSWER  # generation stopped with the client
        user, answer = httpx.get(f"{app.url}/chats/{chat_id}/messages").json()
        assert user == {"author": "user", "body": "Why save drafts?"}
        assert answer["author"] == "assistant"
        assert answer["body"].startswith(m.content) and answer["body"].endswith(
            "(response interrupted)"
        )


def test_a_client_that_stays_gets_one_complete_row(start_app: Callable[..., App]) -> None:
    app = start_app(delay=0.005, chunk_chars=40)
    chat_id = app.new_chat()
    with app.ws(chat_id) as ws:
        ws.send("Why save drafts?")
        received, ended = read_tokens(ws)
    assert ended and received == CANNED_ANSWER
    with ChatStore(app.db, table=MESSAGES) as store:
        hist = store.history(chat_id)
        assert [m.role for m in hist] == ["user", "assistant"]  # stored once
        assert (hist[1].status, hist[1].finish_reason) == (COMPLETE, "stop")
        assert hist[1].content == CANNED_ANSWER
    with sa.create_engine(app.db).connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(models.chat_messages)).scalar() == 2
        )
        updated = conn.execute(sa.select(models.chats.c.updated)).scalar()
        assert updated is not None


def test_kill_9_mid_answer_keeps_the_text_streamed_so_far(
    start_app: Callable[..., App],
) -> None:
    app = start_app()
    chat_id = app.new_chat()
    with app.ws(chat_id) as ws:
        ws.send("Why save drafts?")
        # 3.5 flush windows (20 chunks each): a kill mid-window, not as a flush commits.
        received, _ = read_tokens(ws, 70 * CHUNK)
        app.proc.send_signal(signal.SIGKILL)
        app.proc.wait(timeout=10)
    now = ChatStore(app.db, table=MESSAGES)
    later = ChatStore(app.db, table=MESSAGES, clock=OffsetClock(31))  # after the lease
    try:
        assert last_answer(now, chat_id).live  # nobody knows yet that its writer died
        m = last_answer(later, chat_id)
        assert m.status == STREAMING and m.interrupted and not m.live
        assert m.finish_reason is None  # lease expired: nobody recorded why
        assert CANNED_ANSWER.startswith(m.content)
        # At most one flush window (plus the chunk on the wire) was lost.
        window = (later.every_chunks + 1) * CHUNK
        assert len(m.content) >= len(received) - window, (len(m.content), len(received))
        assert m.display_content.endswith("(response interrupted)")
    finally:
        now.close()
        later.close()


def test_readme_cli_command_prints_the_interrupted_answer(db: str) -> None:
    from starlette.websockets import WebSocketDisconnect

    engine = sa.create_engine(db)
    with engine.begin() as conn:
        pk = conn.execute(
            sa.insert(models.chats).values(title="t", updated=sa.func.now())
        ).inserted_primary_key
        assert pk is not None
        chat_id = pk[0]
    with ChatStore(engine, table=MESSAGES) as store:
        with pytest.raises(WebSocketDisconnect), store.draft(chat_id) as d:
            d.append("Saving an answer only when")
            raise WebSocketDisconnect(1001)
    engine.dispose()
    readme = (EXAMPLE / "README.md").read_text()
    (line,) = [x for x in readme.splitlines() if x.startswith("$ chatpersist history")]
    args = shlex.split(line[2:])
    assert "examples.retrofit_ws.models:MESSAGES" in args
    args[args.index("--db") + 1] = db
    args[-1] = str(chat_id)
    run = subprocess.run(
        [sys.executable, "-c", "from chatpersist.cli import main; main()", *args[1:]],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Saving an answer only when" in run.stdout
    assert "(response interrupted)" in run.stdout


def test_the_change_is_small() -> None:
    """before.py -> after.py, besides the table definition (models.py, shared) and the
    migration (alembic/versions/0002_chatpersist.py)."""
    changed = changed_lines(EXAMPLE / "before.py", EXAMPLE / "after.py")
    added = [x for x in changed if x.startswith("+")]
    removed = [x for x in changed if x.startswith("-")]
    assert len(added) <= 12 and len(removed) <= 12, changed
    readme = (EXAMPLE / "README.md").read_text()
    assert all(line[1:] in readme for line in changed)  # the README shows the current diff
    assert "ChatStore" not in (EXAMPLE / "before.py").read_text()
