"""The built-in fake model server, read through the real OpenAI-compatible client."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable

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
