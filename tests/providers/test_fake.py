"""The built-in fake model server, read through the real OpenAI-compatible client."""

from __future__ import annotations

import asyncio
import itertools
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest

from chatpersist.providers import (
    CANNED_ANSWER,
    FakeModelServer,
    Finish,
    ModelName,
    OpenAICompatible,
    TextDelta,
    Usage,
)


def answer(server: FakeModelServer, messages: list[dict[str, str]]) -> list[object]:
    return list(OpenAICompatible(server.base_url, "any").stream(messages))


def text(chunks: Iterable[object]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def test_streams_the_canned_answer_with_finish_and_usage() -> None:
    with FakeModelServer(chunk_chars=64, delay=0.001) as fake:
        assert fake.base_url.startswith("http://127.0.0.1:") and fake.base_url.endswith("/v1")
        chunks = answer(fake, [{"role": "user", "content": "why save drafts?"}])
    assert text(chunks) == CANNED_ANSWER and CANNED_ANSWER.count("\n\n") >= 2
    assert Finish("stop") in chunks and ModelName("fake-model") in chunks
    usage = [c for c in chunks if isinstance(c, Usage)]
    assert len(usage) == 1 and (usage[0].output_tokens or 0) > 0
    assert fake.requests[0]["messages"][-1]["content"] == "why save drafts?"


def test_streams_at_the_given_pace() -> None:
    with FakeModelServer("abcdefgh", chunk_chars=2, delay=0.05) as fake:
        started = time.monotonic()
        chunks = answer(fake, [{"role": "user", "content": "hi"}])
        took = time.monotonic() - started
    assert [c.text for c in chunks if isinstance(c, TextDelta)] == ["ab", "cd", "ef", "gh"]
    assert took >= 0.2


@pytest.mark.parametrize(
    "tail",
    [
        [],  # the assistant's partial answer is the last message
        [{"role": "user", "content": "Please continue."}],
    ],
)
def test_continues_after_a_partial_answer(tail: list[dict[str, str]]) -> None:
    cut = CANNED_ANSWER.index(" bets everything")
    history = [
        {"role": "user", "content": "why?"},
        {"role": "assistant", "content": CANNED_ANSWER[:cut]},
        *tail,
    ]
    with FakeModelServer(chunk_chars=200, delay=0.001) as fake:
        assert text(answer(fake, history)) == CANNED_ANSWER[cut:]


def test_an_unrelated_history_gets_the_whole_answer() -> None:
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Something else entirely."},
        {"role": "user", "content": "and now?"},
    ]
    with FakeModelServer("the whole answer", delay=0.001) as fake:
        assert text(answer(fake, history)) == "the whole answer"


def test_stops_writing_when_the_client_goes_away() -> None:
    with FakeModelServer(chunk_chars=1, delay=0.01) as fake:
        stream = OpenAICompatible(fake.base_url, "any").stream([{"role": "user", "content": "hi"}])
        got = list(itertools.islice((c for c in stream if isinstance(c, TextDelta)), 3))
        stream.close()
        deadline = time.monotonic() + 2
        while fake.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fake.disconnects == 1
    assert text(got) == CANNED_ANSWER[:3]


# The real openai SDK against the fake server: it must get the shapes the real API sends.

ASK = [{"role": "user", "content": "why save drafts?"}]


@pytest.fixture
def sdk() -> Any:
    return pytest.importorskip("openai")


@pytest.fixture
def fake() -> Iterator[FakeModelServer]:
    with FakeModelServer("the fake model's whole answer", chunk_chars=5, delay=0.001) as server:
        yield server


@pytest.fixture
def client(sdk: Any, fake: FakeModelServer) -> Iterator[Any]:
    """The real OpenAI client on the fake server (closed after the test, so no
    keep-alive connection outlives it)."""
    with sdk.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0, timeout=10) as c:
        yield c


def test_openai_sdk_non_stream_completion(sdk: Any, fake: FakeModelServer, client: Any) -> None:
    done = client.chat.completions.create(model="fake-model", messages=ASK)
    assert isinstance(done, sdk.types.chat.ChatCompletion)
    assert done.object == "chat.completion" and done.id.startswith("chatcmpl-")
    assert isinstance(done.created, int) and done.model == "fake-model"
    assert done.choices[0].message.role == "assistant"
    assert done.choices[0].message.content == fake.answer
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.completion_tokens > 0
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    # "stream": false says the same as no "stream" at all
    again = client.chat.completions.create(model="m", messages=ASK, stream=False)
    assert again.choices[0].message.content == fake.answer


def test_openai_sdk_stream_without_include_usage(fake: FakeModelServer, client: Any) -> None:
    chunks = list(
        client.chat.completions.create(model="fake-model", messages=ASK, stream=True)
    )
    assert all(c.choices for c in chunks), "a chunk without choices[0]"
    assert all(c.object == "chat.completion.chunk" and c.usage is None for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == fake.answer
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_openai_sdk_stream_with_include_usage(fake: FakeModelServer, client: Any) -> None:
    chunks = list(
        client.chat.completions.create(
            model="fake-model", messages=ASK, stream=True, stream_options={"include_usage": True}
        )
    )
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.choices and c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == fake.answer


def test_each_completion_has_its_own_id(client: Any) -> None:
    openai = client

    def stream() -> list[Any]:
        return list(
            openai.chat.completions.create(
                model="m", messages=ASK, stream=True, stream_options={"include_usage": True}
            )
        )

    first, second = stream(), stream()
    for chunks in (first, second):
        assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
        assert len({c.created for c in chunks}) == 1 and isinstance(chunks[0].created, int)
    plain = openai.chat.completions.create(model="m", messages=ASK)
    assert len({first[0].id, second[0].id, plain.id}) == 3


def test_async_openai_sdk_stream(sdk: Any, fake: FakeModelServer) -> None:
    async def run() -> list[Any]:
        aclient = sdk.AsyncOpenAI(base_url=fake.base_url, api_key="x", max_retries=0)
        try:
            stream = await aclient.chat.completions.create(model="m", messages=ASK, stream=True)
            return [c async for c in stream]
        finally:
            await aclient.close()

    chunks = asyncio.run(run())
    assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == fake.answer


def test_openai_sdk_lists_and_retrieves_models(sdk: Any, client: Any) -> None:
    openai = client
    models = list(openai.models.list())
    assert [m.id for m in models] == ["fake-model"]
    assert models[0].object == "model" and isinstance(models[0].created, int)
    assert models[0].owned_by
    assert openai.models.retrieve("fake-model").id == "fake-model"
    with pytest.raises(sdk.NotFoundError):
        openai.models.retrieve("no-such-model")


def test_bad_requests_get_an_openai_style_400(
    sdk: Any, fake: FakeModelServer, client: Any
) -> None:
    openai = client
    with pytest.raises(sdk.BadRequestError) as raised:
        openai.post("/chat/completions", body={"model": "m"}, cast_to=object)
    assert raised.value.status_code == 400 and raised.value.param == "messages"
    assert raised.value.type == "invalid_request_error"
    url = fake.base_url + "/chat/completions"
    for body in (b"{not json", b"[1, 2]", b'{"messages": "hi"}'):
        r = httpx.post(url, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, body
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
    # the server is still up
    done = openai.chat.completions.create(model="m", messages=ASK)
    assert done.choices[0].message.content == fake.answer


def test_our_client_gets_usage_only_when_it_asks() -> None:
    no_usage = {"stream_options": {"include_usage": False}}
    with FakeModelServer("short answer", delay=0.001) as fake:
        asked = answer(fake, ASK)
        not_asked = list(OpenAICompatible(fake.base_url, "m", extra_body=no_usage).stream(ASK))
    assert fake.requests[0]["stream_options"] == {"include_usage": True}
    assert text(asked) == "short answer" and any(isinstance(c, Usage) for c in asked)
    assert text(not_asked) == "short answer" and Finish("stop") in not_asked
    assert not any(isinstance(c, Usage) for c in not_asked)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_fake_server_runs_until_ctrl_c(sdk: Any) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from chatpersist.cli import main; main()",
         "fake-server", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As a shell does for a foreground program (a background CI run ignores SIGINT).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the server printed nothing"
        line = proc.stdout.readline()
        base_url = f"http://127.0.0.1:{port}/v1"
        assert base_url in line, line
        openai = sdk.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=10)
        done = openai.chat.completions.create(model="fake-model", messages=ASK)
        assert done.choices[0].message.content == CANNED_ANSWER
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
