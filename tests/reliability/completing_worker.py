"""A worker of the crash-completion test: an ASGI app that answers with policy
"finish" and `recover_with`, follows answers, and runs a `Recoverer`.

    python completing_worker.py DB_URL MODEL_URL PORT LEASE_SECONDS
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatpersist import AsyncChatStore
from chatpersist.asgi import ChatStreams
from chatpersist.providers import OpenAICompatible
from chatpersist.recovery import Recoverer

url, model_url, port, lease = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
store = AsyncChatStore(url, lease_seconds=lease, every_chunks=2, every_seconds=0.2)
streams = ChatStreams(store, authorize=lambda request, session_id: True)  # a test: all may follow


def provider_for(spec: str) -> OpenAICompatible:
    assert spec == "fake-model", spec
    return OpenAICompatible(model_url, spec)


recoverer = Recoverer(store.sync, provider_for, poll=0.2)


async def ask(request: Request) -> Response:
    sid = request.path_params["sid"]
    history = [{"role": "user", "content": "Tell me about persistence."}]
    return streams.response(
        sid, provider_for("fake-model").astream(history), policy="finish",
        recover_with="fake-model",
    )  # fmt: skip


async def follow(request: Request) -> Response:
    return streams.follow(request.path_params["mid"])


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    recoverer.start()
    yield
    recoverer.stop()


app = Starlette(
    routes=[
        Route("/ask/{sid}", ask, methods=["POST"]),
        Route("/follow/{mid}", follow),
    ],
    lifespan=lifespan,
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
