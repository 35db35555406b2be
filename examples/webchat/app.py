"""A chat page whose answers survive switching conversation, Stop, reload, closing the
tab and a server that dies: FastAPI + chatpersist.asgi + one static page.

    python -m examples.webchat                       # built-in fake model, ./webchat.db
    python -m examples.webchat --policy finish       # answers finish without the client
    python -m examples.webchat --provider openai --base-url http://localhost:11434/v1 --model llama3.2

Each browser gets an identity, a signed cookie, when it loads the page; every /api
route refuses requests without one (401), and a user sees only their own sessions.
One answer at a time per conversation: a second send or Continue while an answer is
being written there gets a 409.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from chatpersist import (
    STREAMING,
    AsyncChatStore,
    ChatStore,
    Message,
    MessageConflict,
    UnknownMessage,
    UnknownSession,
)
from chatpersist.asgi import ChatStreams
from chatpersist.providers import Anthropic, FakeModelServer, OpenAICompatible
from chatpersist.recovery import Recoverer, continuation

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
COOKIE = "webchat_user"
#: Seconds of writer silence after which a draft reads as cut off. A writer beats every
#: third of it (and flushes text every 2 s), so a live answer never looks dead, while
#: the answer of a server that died shows as cut off within seconds, not half a minute.
LEASE_SECONDS = 6.0
#: The longest title kept (a rename, or a title given when a session is created).
TITLE_CHARS = 200
#: The id a page gives a question, so that sending it again (after a network error)
#: never stores it twice.
QUESTION_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
#: The page runs only its own scripts and styles: even if a model's answer got HTML
#: past the sanitiser, no inline script or handler in it would run.
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def sign(request: Request, user: str) -> str:
    return hmac.new(request.app.state.secret, user.encode(), hashlib.sha256).hexdigest()


def user_of(request: Request) -> str | None:
    """The user of a request, from its "<user>.<signature>" cookie; None if anonymous."""
    user, _, sig = request.cookies.get(COOKIE, "").partition(".")
    if user and hmac.compare_digest(sig.encode(), sign(request, user).encode()):
        return user
    return None


def current_user(request: Request) -> str:
    user = user_of(request)
    if user is None:
        raise HTTPException(401, "no identity: load the page first")
    return user


User = Annotated[str, Depends(current_user)]


def owns(user: str | None, session_id: str) -> bool:
    # A real app keeps an owner column; here a session's id starts with its owner's.
    return user is not None and session_id.startswith(f"{user}.")


def check(user: str, session_id: str) -> None:
    if not owns(user, session_id):
        raise HTTPException(403, "not your conversation")


def authorize(request: Request, session_id: str) -> bool:
    """The hook of ChatStreams: follow and save-partial, for the session's owner only."""
    return owns(user_of(request), session_id)


def one_at_a_time(history: list[Message]) -> None:
    """409 while an answer is being written in the conversation (its writer's
    heartbeat is fresh): every tab shows its Stop instead."""
    if any(m.live for m in history):
        raise HTTPException(409, "an answer is still being written in this conversation")


def clean_title(value: object) -> str:
    return " ".join(str(value or "").split())[:TITLE_CHARS]


def generating(store: ChatStore, session_ids: list[str]) -> set[str]:
    """Which of these sessions have an answer being written (a streaming draft whose
    writer's heartbeat is fresh: `Message.live`), in one query by the loader's rule."""
    if not session_ids:
        return set()
    L = store.layout
    query = (
        sa.select(L.session_id)
        .distinct()
        .where(
            L.session_id.in_(session_ids),
            L.status == STREAMING,
            sa.not_(store.loader.interrupted()),
        )
    )
    with store.engine.connect() as conn:
        return {str(row[0]) for row in conn.execute(query)}


def create_app(
    db_url: str,
    *,
    provider: str = "fake",
    base_url: str | None = None,
    model: str | None = None,
    policy: str = "cancel",
    fake_delay: float = 0.05,
    secret: str | None = None,
    lease_seconds: float = LEASE_SECONDS,
) -> FastAPI:
    state: dict[str, Any] = {}
    # Every call awaitable: the loop never waits on the database. A draft whose writer
    # is silent for `lease_seconds` (its process died) reads as interrupted.
    store = AsyncChatStore(db_url, lease_seconds=lease_seconds)
    streams = ChatStreams(store, policy=policy, authorize=authorize)  # type: ignore[arg-type]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.migrate()
        fake = None
        if provider == "fake":
            fake = FakeModelServer(delay=fake_delay).start()
            state["provider"] = OpenAICompatible(fake.base_url, "fake-model")
        elif provider == "anthropic":
            state["provider"] = Anthropic(model or "claude-sonnet-4-5", os.environ.get("ANTHROPIC_API_KEY"))
        else:
            state["provider"] = OpenAICompatible(
                base_url or "https://api.openai.com/v1", model or "gpt-4o-mini",
                api_key=os.environ.get("OPENAI_API_KEY"),
            )  # fmt: skip
        # Answers that keep generating when their page leaves also finish when the
        # worker writing them dies: any worker's Recoverer completes them.
        recoverer = Recoverer(store.sync, lambda spec: state["provider"])
        recoverer.start()
        yield
        recoverer.stop()
        await streams.wait_background()
        await streams.aclose()
        await store.close()  # final flush of anything still open
        if fake is not None:
            fake.stop()

    app = FastAPI(lifespan=lifespan)

    @app.middleware("http")
    async def served_by(request: Request, call_next: Any) -> Response:
        # Which worker answered: behind `--workers N`, a follow or a Stop may land on
        # any of them (chatpersist makes that work; this header lets you see it).
        response: Response = await call_next(request)
        response.headers["x-webchat-worker"] = str(os.getpid())
        return response

    # Signs the identity cookies. A random one per process: identities reset when the
    # server restarts, unless WEBCHAT_SECRET (or `secret`) keeps it.
    app.state.secret = (secret or os.environ.get("WEBCHAT_SECRET") or secrets.token_hex(32)).encode()

    @app.exception_handler(UnknownSession)
    @app.exception_handler(UnknownMessage)
    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(MessageConflict)
    async def conflict(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=409)

    @app.get("/")
    async def index(request: Request) -> FileResponse:
        page = FileResponse(HERE / "index.html", headers=PAGE_HEADERS)
        if user_of(request) is None:  # a new browser: give it an identity
            user = secrets.token_hex(16)
            page.set_cookie(
                COOKIE, f"{user}.{sign(request, user)}", max_age=400 * 86400, httponly=True,
                samesite="lax", secure=request.url.scheme == "https",
            )  # fmt: skip
        return page

    # The page's script, styles, icon and the two libraries it renders answers with
    # (vendored: no build step, no CDN).
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/favicon.ico")
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/chatpersist.js")
    async def helper_js() -> Response:
        # The helper for pages that hold the stream themselves (not used by this page).
        js = resources.files("chatpersist") / "static" / "chatpersist.js"
        return Response(js.read_text(), media_type="text/javascript")

    # Every route under /api needs an identity (401 without one).
    api = APIRouter(prefix="/api", dependencies=[Depends(current_user)])

    async def json_object(request: Request) -> dict[str, Any]:
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise HTTPException(400, "expected a JSON object")
        return body

    def chosen_policy(request: Request) -> Literal["cancel", "finish"] | None:
        """The page's "Keep generating when I leave" (`?policy=finish`), else the server's."""
        chosen = request.query_params.get("policy")
        return "finish" if chosen == "finish" else "cancel" if chosen == "cancel" else None

    def recover_with(request: Request) -> str | None:
        """An answer that keeps generating is opted in to completion after a crash."""
        return "default" if (chosen_policy(request) or policy) == "finish" else None

    @api.get("/sessions")
    async def sessions(user: User) -> list[dict[str, Any]]:
        mine = [s for s in await store.sessions() if owns(user, s.id)]
        live = await asyncio.to_thread(generating, store.sync, [s.id for s in mine])
        return [s.to_dict() | {"generating": s.id in live} for s in mine]

    @api.post("/sessions")
    async def new_session(request: Request, user: User) -> dict[str, str]:
        title = clean_title((await json_object(request)).get("title")) or "New chat"
        return {"id": await store.create_session(title, session_id=f"{user}.{secrets.token_hex(8)}")}

    @api.patch("/sessions/{session_id}")
    async def rename(session_id: str, request: Request, user: User) -> dict[str, str]:
        check(user, session_id)
        title = clean_title((await json_object(request)).get("title"))
        if not title:
            raise HTTPException(400, "empty title")
        await store.rename_session(session_id, title)
        return {"id": session_id, "title": title}

    @api.delete("/sessions/{session_id}")
    async def delete(session_id: str, user: User) -> dict[str, int]:
        check(user, session_id)
        # Stop what is still being written there first (from whichever worker writes
        # it); a draft that still writes after the delete finds its row gone and stops.
        for m in await store.history(session_id):
            if m.live:
                await streams.stop(str(m.id), wait=2.0)
        return {"deleted": await store.delete_session(session_id)}

    @api.get("/sessions/{session_id}/messages")
    async def messages(session_id: str, user: User) -> list[dict[str, Any]]:
        check(user, session_id)
        return [m.to_dict() for m in await store.history(session_id)]

    @api.post("/sessions/{session_id}/messages")
    async def send(session_id: str, request: Request, user: User) -> Response:
        check(user, session_id)
        body = await json_object(request)
        text = str(body.get("text") or "").strip()
        if not text:
            raise HTTPException(400, "empty message")
        qid = body.get("id")
        if qid is not None and not (isinstance(qid, str) and QUESTION_ID.fullmatch(qid)):
            raise HTTPException(400, "id: 8 to 64 letters, digits, '-' or '_'")
        history = await store.history(session_id)
        one_at_a_time(history)
        # The question is stored before anything else can fail. Sent again with its
        # id (the page lost the connection), it is not stored twice.
        mid = f"{session_id}.q.{qid}" if qid else None
        ids = [str(m.id) for m in history]
        if mid in ids:
            if ids[-1] != mid:
                raise HTTPException(409, "this question has been answered already")
        else:
            await store.add_message(session_id, "user", text, message_id=mid)
        shape = state["provider"].history_format  # "openai" or "anthropic"
        turns = await store.history_for_model(session_id, format=shape)
        return streams.response(
            session_id, state["provider"].astream(turns), policy=chosen_policy(request),
            recover_with=recover_with(request),
        )  # fmt: skip

    @api.post("/messages/{message_id}/continue")
    async def continue_(message_id: str, request: Request, user: User) -> Response:
        # Continue a cut answer, or Retry one the model failed (an empty one is
        # answered afresh): the new text goes into the same message.
        m = await store.get_message(message_id)
        session_id = str(m.session_id)
        check(user, session_id)
        one_at_a_time(await store.history(session_id))
        p = state["provider"]
        msgs = await asyncio.to_thread(
            continuation, store.sync, message_id, prefill=getattr(p, "prefill", False),
            format=p.history_format,
        )  # fmt: skip
        return streams.response(
            session_id, p.astream(msgs), message_id=message_id, policy=chosen_policy(request),
            recover_with=recover_with(request),
        )  # fmt: skip

    @api.post("/messages/{message_id}/stop")
    async def stop(message_id: str, user: User) -> dict[str, bool]:
        check(user, str((await store.get_message(message_id)).session_id))
        return {"stopped": await streams.stop(message_id)}  # from any worker

    @api.get("/messages/{message_id}/follow")
    async def follow(message_id: str) -> Response:
        return streams.follow(message_id)  # 404, 403 (authorize) before the stream starts

    api.add_api_route(
        "/messages/{message_id}/partial",
        streams.save_partial_endpoint(),  # JSON only, same origin, authorize
        methods=["PUT", "POST"],
    )
    app.include_router(api)
    return app


def app_from_env() -> FastAPI:
    """The app for `uvicorn --factory` (each worker builds its own), set up by the
    WEBCHAT_* variables that `main` sets for `--workers`."""
    env = os.environ
    return create_app(
        env["WEBCHAT_DB"], provider=env.get("WEBCHAT_PROVIDER", "fake"),
        base_url=env.get("WEBCHAT_BASE_URL"), model=env.get("WEBCHAT_MODEL"),
        policy=env.get("WEBCHAT_POLICY", "cancel"),
        fake_delay=float(env.get("WEBCHAT_FAKE_DELAY", "0.05")),
        lease_seconds=float(env.get("WEBCHAT_LEASE_SECONDS", str(LEASE_SECONDS))),
    )  # fmt: skip


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description="chatpersist web chat example")
    ap.add_argument("--db", default=os.environ.get("CHATPERSIST_DB", "sqlite:///webchat.db"))
    ap.add_argument("--provider", choices=["fake", "openai", "anthropic"], default="fake")
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument(
        "--policy", choices=["cancel", "finish"], default="cancel",
        help="when the page goes away: stop the answer (cancel) or let it finish; the "
        "page's 'Keep generating when I leave' chooses per request",
    )  # fmt: skip
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--fake-delay", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=1, help="worker processes (PostgreSQL)")
    ap.add_argument(
        "--lease-seconds", type=float, default=LEASE_SECONDS,
        help="seconds of writer silence before a draft reads as interrupted",
    )  # fmt: skip
    args = ap.parse_args()
    print(f"chat page: http://{args.host}:{args.port}/", flush=True)
    if args.workers > 1:
        # Every worker signs identities with the same secret, so any of them can
        # serve any request of a user.
        os.environ.setdefault("WEBCHAT_SECRET", secrets.token_hex(32))
        os.environ.update(
            WEBCHAT_DB=args.db, WEBCHAT_PROVIDER=args.provider, WEBCHAT_POLICY=args.policy,
            WEBCHAT_FAKE_DELAY=str(args.fake_delay), WEBCHAT_LEASE_SECONDS=str(args.lease_seconds),
            **{k: v for k, v in (("WEBCHAT_BASE_URL", args.base_url),
                                 ("WEBCHAT_MODEL", args.model)) if v},
        )  # fmt: skip
        uvicorn.run(
            "examples.webchat.app:app_from_env", factory=True, workers=args.workers,
            host=args.host, port=args.port, timeout_graceful_shutdown=2, log_level="warning",
        )  # fmt: skip
        return
    app = create_app(
        args.db, provider=args.provider, base_url=args.base_url, model=args.model,
        policy=args.policy, fake_delay=args.fake_delay, lease_seconds=args.lease_seconds,
    )  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=2, log_level="warning")


if __name__ == "__main__":
    main()
