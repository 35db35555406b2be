"""A chat page whose answers survive switching conversation, Stop, reload and closing
the tab: FastAPI + chatpersist.asgi + one static page.

    python -m examples.webchat                       # built-in fake model, ./webchat.db
    python -m examples.webchat --policy finish       # answers finish without the client
    python -m examples.webchat --provider openai --base-url http://localhost:11434/v1 --model llama3.2
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from chatpersist import ChatStore, MessageConflict, UnknownMessage, UnknownSession
from chatpersist.asgi import ChatStreams
from chatpersist.providers import Anthropic, FakeModelServer, OpenAICompatible

HERE = Path(__file__).resolve().parent


def create_app(
    db_url: str,
    *,
    provider: str = "fake",
    base_url: str | None = None,
    model: str | None = None,
    policy: str = "cancel",
    fake_delay: float = 0.05,
) -> FastAPI:
    state: dict[str, Any] = {}
    store = ChatStore(db_url)
    streams = ChatStreams(store, policy=policy)  # type: ignore[arg-type]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.migrate()
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
        yield
        await streams.wait_background()
        store.close()  # final flush of anything still open
        if fake is not None:
            fake.stop()

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(UnknownSession)
    @app.exception_handler(UnknownMessage)
    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(MessageConflict)
    async def conflict(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=409)

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(HERE / "index.html")

    @app.get("/chatpersist.js")
    async def helper_js() -> Response:
        js = resources.files("chatpersist") / "static" / "chatpersist.js"
        return Response(js.read_text(), media_type="text/javascript")

    @app.get("/api/sessions")
    async def sessions() -> list[dict[str, Any]]:
        return [s.to_dict() for s in store.sessions()]

    @app.post("/api/sessions")
    async def new_session(request: Request) -> dict[str, str]:
        body = await request.json() if await request.body() else {}
        return {"id": store.create_session(body.get("title") or "New chat")}

    @app.get("/api/sessions/{session_id}/messages")
    async def messages(session_id: str) -> list[dict[str, Any]]:
        return [m.to_dict() for m in store.history(session_id)]

    @app.post("/api/sessions/{session_id}/messages")
    async def send(session_id: str, request: Request) -> Response:
        text = str((await request.json()).get("text") or "").strip()
        if not text:
            raise HTTPException(400, "empty message")
        store.add_message(session_id, "user", text)
        history = store.history_for_model(session_id)
        chosen = request.query_params.get("policy")
        return streams.response(
            session_id, state["provider"].astream(history),
            policy=chosen if chosen in ("cancel", "finish") else None,  # type: ignore[arg-type]
        )  # fmt: skip

    @app.post("/api/messages/{message_id}/continue")
    async def continue_(message_id: str) -> Response:
        m = store.get_message(message_id)
        p = state["provider"]
        msgs = store.continuation(message_id, prefill=getattr(p, "prefill", False))
        return streams.response(m.session_id, p.astream(msgs), message_id=message_id)

    @app.post("/api/messages/{message_id}/stop")
    async def stop(message_id: str) -> dict[str, bool]:
        return {"stopped": streams.stop(message_id)}

    @app.get("/api/messages/{message_id}/follow")
    async def follow(message_id: str) -> Response:
        store.get_message(message_id)  # 404 before the stream starts
        return streams.follow(message_id)

    def authorize(request: Request, session_id: str) -> bool:
        # A real app checks that the logged-in user owns the session.
        return request.headers.get("x-user", "me") == "me"

    app.add_api_route(
        "/api/messages/{message_id}/partial",
        streams.save_partial_endpoint(authorize),
        methods=["PUT", "POST"],
    )
    return app


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description="chatpersist web chat example")
    ap.add_argument("--db", default=os.environ.get("CHATPERSIST_DB", "sqlite:///webchat.db"))
    ap.add_argument("--provider", choices=["fake", "openai", "anthropic"], default="fake")
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument("--policy", choices=["cancel", "finish"], default="cancel")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--fake-delay", type=float, default=0.05)
    args = ap.parse_args()
    app = create_app(
        args.db, provider=args.provider, base_url=args.base_url, model=args.model,
        policy=args.policy, fake_delay=args.fake_delay,
    )  # fmt: skip
    print(f"chat page: http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=2, log_level="warning")


if __name__ == "__main__":
    main()
