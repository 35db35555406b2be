"""Optional: stream from a real OpenAI-compatible server (skipped unless configured).

CHATPERSIST_TEST_OPENAI_URL=http://localhost:11434/v1 CHATPERSIST_TEST_OPENAI_MODEL=llama3.2
"""

from __future__ import annotations

import asyncio
import os

import pytest

from chatpersist.providers import Finish, OpenAICompatible, TextDelta

URL = os.environ.get("CHATPERSIST_TEST_OPENAI_URL")
pytestmark = pytest.mark.skipif(
    not URL, reason="set CHATPERSIST_TEST_OPENAI_URL (and _MODEL, _KEY) to test a real server"
)
ASK = [{"role": "user", "content": "Say hello in three words."}]


def real() -> OpenAICompatible:
    return OpenAICompatible(
        str(URL),
        os.environ.get("CHATPERSIST_TEST_OPENAI_MODEL", "gpt-4o-mini"),
        api_key=os.environ.get("CHATPERSIST_TEST_OPENAI_KEY"),
    )


def test_sync_stream_from_a_real_server() -> None:
    chunks = list(real().stream(ASK))
    assert "".join(c.text for c in chunks if isinstance(c, TextDelta)).strip()
    assert any(isinstance(c, Finish) for c in chunks)


def test_async_stream_from_a_real_server() -> None:
    async def run() -> list[object]:
        return [c async for c in real().astream(ASK)]

    chunks = asyncio.run(run())
    assert "".join(c.text for c in chunks if isinstance(c, TextDelta)).strip()
    assert any(isinstance(c, Finish) for c in chunks)
