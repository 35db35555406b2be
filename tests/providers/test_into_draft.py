"""Provider streams into drafts: one call, and how a broken stream ends."""

from __future__ import annotations

import asyncio
import os

import pytest
from providers.sse_server import Close, Raw, ScriptedServer, Status, openai_delta, stream_ok

from chatpersist import COMPLETE, STREAMING, ChatStore
from chatpersist.providers import (
    FakeModelServer,
    OpenAICompatible,
    ProviderError,
    RetryPolicy,
    astream_into,
    stream_into,
)

HI = [{"role": "user", "content": "hi"}]


def test_stream_into_stores_text_model_usage_and_reason(
    store: ChatStore, server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then(stream_ok("Hello", " there"))
    p = OpenAICompatible(server.url, "m-1", retry=RetryPolicy(sleep=sleeps.append))
    sid = store.create_session()
    seen: list[str] = []
    m = stream_into(store, sid, p.stream(HI), on_text=seen.append)
    assert (m.content, m.status, m.finish_reason) == ("Hello there", COMPLETE, "stop")
    assert (m.model, m.input_tokens, m.output_tokens) == ("m-1", 5, 7)
    assert "".join(seen) == "Hello there"


def test_connection_lost_mid_answer_keeps_the_partial(
    store: ChatStore, server: ScriptedServer, sleeps: list[float]
) -> None:
    server.then(
        [Status(200, {"content-type": "text/event-stream"}), Raw(openai_delta("half an")),
         Raw(openai_delta(" answer")), Close()],
        stream_ok("must not be used"),
    )  # fmt: skip
    p = OpenAICompatible(server.url, "m-1", retry=RetryPolicy(sleep=sleeps.append))
    sid = store.create_session()
    with pytest.raises(ProviderError) as info:
        stream_into(store, sid, p.stream(HI))
    m = store.get_message(str(info.value.message_id))
    assert (m.content, m.status, m.finish_reason) == ("half an answer", STREAMING, "provider_error")
    assert m.interrupted and m.error and "ended before" in m.error
    assert len(server.requests) == 1


def test_async_into_draft_from_the_fake_model(store: ChatStore) -> None:
    sid = store.create_session()
    with FakeModelServer("one two three four five", delay=0.001) as fake:
        p = OpenAICompatible(fake.base_url, "fake")
        m = asyncio.run(astream_into(store, sid, p.astream(HI)))
    assert (m.content, m.status, m.model) == ("one two three four five", COMPLETE, "fake-model")


def test_plain_iterables_and_sdk_shapes(store: ChatStore) -> None:
    sid = store.create_session()
    m = stream_into(store, sid, iter(["a", "b", "c"]))
    assert m.content == "abc"
    with pytest.raises(TypeError, match="cannot read a stream chunk"):
        stream_into(store, sid, iter(["ok", 42]))


@pytest.mark.skipif(
    not os.environ.get("CHATPERSIST_TEST_OPENAI_URL"),
    reason="set CHATPERSIST_TEST_OPENAI_URL (and _MODEL, _KEY) to test a real server",
)
def test_a_real_openai_compatible_server(store: ChatStore) -> None:
    p = OpenAICompatible(
        os.environ["CHATPERSIST_TEST_OPENAI_URL"],
        os.environ.get("CHATPERSIST_TEST_OPENAI_MODEL", "gpt-4o-mini"),
        api_key=os.environ.get("CHATPERSIST_TEST_OPENAI_KEY"),
    )
    sid = store.create_session()
    m = stream_into(store, sid, p.stream([{"role": "user", "content": "Say hello in 3 words."}]))
    assert m.status == COMPLETE and m.content and m.model
