"""Optional: stream from a real OpenAI-compatible server (skipped unless configured).

CHATPERSIST_TEST_OPENAI_URL=http://localhost:11434/v1 CHATPERSIST_TEST_OPENAI_MODEL=llama3.2
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from chatpersist import ChatStore
from chatpersist.providers import Finish, OpenAICompatible, TextDelta, stream_into

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


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_a_history_with_tool_calls_cut_short_is_accepted(tmp_path: Path) -> None:
    """An answer that called a tool, got its result, then was cut inside a second
    call's arguments: the repaired history (both policies) is accepted by the real
    server, and its answer is stored with its parts."""
    with ChatStore(f"sqlite:///{tmp_path}/real.db") as store:
        store.migrate()
        sid = store.create_session()
        store.add_message(sid, "user", "What is the weather in Paris and in Rome?")
        with store.draft(sid) as d:
            d.append("Let me check. ")
            d.append_tool_call("call_1", "get_weather", '{"city": "Paris"}')
            d.add_tool_result("call_1", '{"temp_c": 12, "sky": "sunny"}')
            d.append_tool_call("call_2", "get_weather", '{"city": "Ro')
            d.stop("disconnected")
        for policy in ("drop", "error"):
            history = store.history_for_model(sid, cut_tool_calls=policy)
            assert any(m.get("role") == "tool" for m in history)
            chunks = list(real().stream([*history, {"role": "user", "content": "Go on."}],
                                        tools=[WEATHER_TOOL]))  # fmt: skip
            assert any(isinstance(c, Finish) for c in chunks)
        answer = stream_into(store, sid, real().stream(
            store.history_for_model(sid), tools=[WEATHER_TOOL]))  # fmt: skip
        assert answer.complete and answer.parts
