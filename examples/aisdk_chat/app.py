"""The AI SDK's `useChat` on a Python backend, with answers that survive.

    python -m examples.aisdk_chat --db sqlite:///aisdk.db --port 8000

serves the chat endpoints `useChat` / `DefaultChatTransport` call (`/api/chat`,
`/api/chat/{id}/stream` for `resume: true`, and the history, Stop and Continue), and,
when it has been built (`npm run build` in `page/`), the React page at `/`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from chatpersist import AsyncChatStore
from chatpersist.aisdk import UIChat
from chatpersist.asgi import ChatStreams
from chatpersist.providers import FakeModelServer, OpenAICompatible

HERE = Path(__file__).parent
PAGE = HERE / "page" / "dist"


def authorize(request: Request, chat_id: str) -> bool:
    # Your app's check goes here (does this user own this chat?). The example has no
    # accounts: chat ids are random UUIDs made by the page, known only to it.
    return len(chat_id) >= 16


def create_app(
    db_url: str,
    *,
    base_url: str | None = None,
    model: str | None = None,
    fake_delay: float = 0.05,
    lease_seconds: float = 30.0,
    policy: str = "finish",
) -> Starlette:
    store = AsyncChatStore(db_url, lease_seconds=lease_seconds)
    # "finish": an answer goes on when its page goes away (switched, reloaded, offline),
    # and `resume: true` finds it; Stop is the user's way to end it.
    streams = ChatStreams(store, authorize=authorize, policy=policy)  # type: ignore[arg-type]
    chat = UIChat(streams, None)  # the provider is set when the app starts (below)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.migrate()
        fake = None
        if base_url is None:
            fake = FakeModelServer(delay=fake_delay).start()
            provider = OpenAICompatible(fake.base_url, "fake-model")
        else:
            provider = OpenAICompatible(
                base_url, model or "gpt-4o-mini", api_key=os.environ.get("OPENAI_API_KEY")
            )
        chat.provider = provider
        yield
        await streams.wait_background()
        await streams.aclose()
        await store.close()
        if fake is not None:
            fake.stop()

    async def index(request: Request) -> Response:
        if (PAGE / "index.html").is_file():
            return FileResponse(PAGE / "index.html")
        return PlainTextResponse("build the page first: cd examples/aisdk_chat/page && npm run build")

    routes = [
        Route("/api/chat", chat.send, methods=["POST"]),                      # useChat's POST
        Route("/api/chat/{chat_id}/stream", chat.resume, methods=["GET"]),    # resume: true
        Route("/api/chat/{chat_id}/messages", chat.messages, methods=["GET"]),  # UIMessage[]
        Route("/api/chat/{chat_id}/messages/{message_id}/stop", chat.stop, methods=["POST"]),
        Route("/api/chat/{chat_id}/messages/{message_id}/continue", chat.continue_,
              methods=["POST"]),
        Route("/", index),
    ]
    if (PAGE / "assets").is_dir():
        routes.append(Mount("/assets", StaticFiles(directory=PAGE / "assets")))
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description="chatpersist behind the AI SDK's useChat")
    ap.add_argument("--db", default=os.environ.get("CHATPERSIST_DB", "sqlite:///aisdk.db"))
    ap.add_argument("--base-url", help="an OpenAI-compatible server (default: a fake model)")
    ap.add_argument("--model")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--fake-delay", type=float, default=0.05)
    ap.add_argument("--lease-seconds", type=float, default=30.0)
    ap.add_argument("--policy", choices=["finish", "cancel"], default="finish")
    args = ap.parse_args()
    app = create_app(
        args.db, base_url=args.base_url, model=args.model, fake_delay=args.fake_delay,
        lease_seconds=args.lease_seconds, policy=args.policy,
    )  # fmt: skip
    print(f"chat page: http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=2, log_level="warning")


if __name__ == "__main__":
    main()
