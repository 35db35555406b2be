"""SDK stream objects read without depending on the SDKs: real SDK objects where the
SDK is installed (extra `sdks`), objects of the same shape otherwise."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from chatpersist.providers import Finish, ModelName, ReasoningDelta, TextDelta, Usage, to_chunks


def test_plain_strings_and_our_chunks() -> None:
    assert to_chunks("hi") == [TextDelta("hi")]
    assert to_chunks("") == []
    assert to_chunks(Finish("stop")) == [Finish("stop")]
    with pytest.raises(TypeError, match="int"):
        to_chunks(3)


def test_openai_shaped_objects_and_dicts() -> None:
    obj = NS(
        object="chat.completion.chunk", model="gpt-x",
        choices=[NS(delta=NS(content="Hi", reasoning_content=None), finish_reason=None)],
        usage=None,
    )  # fmt: skip
    assert to_chunks(obj) == [ModelName("gpt-x"), TextDelta("Hi")]
    last = {"model": "gpt-x", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
    assert to_chunks(last) == [ModelName("gpt-x"), Usage(1, 2)]


def test_anthropic_shaped_events() -> None:
    assert to_chunks(NS(type="content_block_delta", delta=NS(type="text_delta", text="x"))) == [
        TextDelta("x")
    ]
    assert to_chunks(NS(type="content_block_delta", delta=NS(type="thinking_delta", thinking="t"))) == [
        ReasoningDelta("t")
    ]
    assert to_chunks(
        NS(type="message_delta", delta=NS(stop_reason="max_tokens"), usage=NS(output_tokens=3))
    ) == [Finish("max_tokens"), Usage(output_tokens=3)]
    assert to_chunks(NS(type="ping")) == []


def test_langchain_shaped_chunks() -> None:
    chunk = NS(
        content=[{"type": "text", "text": "Hel"}, {"type": "thinking", "thinking": "hm"}],
        response_metadata={"finish_reason": "stop", "model_name": "lc-model"},
        usage_metadata={"input_tokens": 4, "output_tokens": 2},
    )
    assert to_chunks(chunk) == [
        TextDelta("Hel"), ReasoningDelta("hm"), ModelName("lc-model"), Finish("stop"), Usage(4, 2),
    ]  # fmt: skip


def test_real_openai_sdk_chunk() -> None:
    types = pytest.importorskip("openai.types.chat")
    chunk = types.ChatCompletionChunk.model_validate(
        {
            "id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}],
        }
    )  # fmt: skip
    assert to_chunks(chunk) == [ModelName("gpt-4o"), TextDelta("Hello")]


def test_real_anthropic_sdk_events() -> None:
    types = pytest.importorskip("anthropic.types")
    delta = types.RawContentBlockDeltaEvent.model_validate(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Yo"}}
    )
    stop = types.RawMessageDeltaEvent.model_validate(
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 7}}
    )  # fmt: skip
    assert to_chunks(delta) == [TextDelta("Yo")]
    assert to_chunks(stop) == [Finish("end_turn"), Usage(output_tokens=7)]


def test_real_langchain_chunk() -> None:
    messages = pytest.importorskip("langchain_core.messages")
    chunk = messages.AIMessageChunk(
        content="Bonjour",
        response_metadata={"finish_reason": "stop", "model_name": "m"},
        usage_metadata={"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
    )
    assert to_chunks(chunk) == [TextDelta("Bonjour"), ModelName("m"), Finish("stop"), Usage(1, 1)]


def test_litellm_shaped_chunk() -> None:
    # LiteLLM's streaming ModelResponse has OpenAI's shape.
    chunk = NS(model="ollama/llama3", choices=[NS(delta=NS(content="x"), finish_reason="stop")])
    assert to_chunks(chunk) == [ModelName("ollama/llama3"), TextDelta("x"), Finish("stop")]
