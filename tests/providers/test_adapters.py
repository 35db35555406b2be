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
    assert to_chunks(
        NS(type="content_block_delta", delta=NS(type="thinking_delta", thinking="t"))
    ) == [ReasoningDelta("t")]
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


def test_real_openai_sdk_last_chunks_and_reasoning() -> None:
    types = pytest.importorskip("openai.types.chat")

    def chunk(choices: list[object], usage: object = None) -> object:
        return types.ChatCompletionChunk.model_validate(
            {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "o3",
             "choices": choices, "usage": usage}
        )  # fmt: skip

    thinking = chunk([{"index": 0, "delta": {"reasoning_content": "so..."}, "finish_reason": None}])
    last = chunk([{"index": 0, "delta": {}, "finish_reason": "length"}])
    usage = chunk([], {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12})
    assert to_chunks(thinking) == [ModelName("o3"), ReasoningDelta("so...")]
    assert to_chunks(last) == [ModelName("o3"), Finish("length")]
    assert to_chunks(usage) == [ModelName("o3"), Usage(3, 9)]


def test_real_anthropic_sdk_start_and_thinking() -> None:
    types = pytest.importorskip("anthropic.types")
    start = types.RawMessageStartEvent.model_validate(
        {"type": "message_start",
         "message": {"id": "m", "type": "message", "role": "assistant", "content": [],
                     "model": "claude-x", "stop_reason": None, "stop_sequence": None,
                     "usage": {"input_tokens": 12, "output_tokens": 1}}}
    )  # fmt: skip
    thinking = types.RawContentBlockDeltaEvent.model_validate(
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "thinking_delta", "thinking": "hmm"}}
    )  # fmt: skip
    stop = types.RawMessageStopEvent.model_validate({"type": "message_stop"})
    # The output count at the start is a placeholder: only the input count is kept.
    assert to_chunks(start) == [ModelName("claude-x"), Usage(input_tokens=12)]
    assert to_chunks(thinking) == [ReasoningDelta("hmm")]
    assert to_chunks(stop) == []


def test_real_langchain_content_blocks_and_split_usage() -> None:
    messages = pytest.importorskip("langchain_core.messages")
    first = messages.AIMessageChunk(
        content=[{"type": "thinking", "thinking": "let me see"}, {"type": "text", "text": "Sure"}],
        usage_metadata={"input_tokens": 12, "output_tokens": 0, "total_tokens": 12},
    )
    last = messages.AIMessageChunk(
        content="",
        response_metadata={"stop_reason": "end_turn", "model_name": "claude-x"},
        usage_metadata={"input_tokens": 0, "output_tokens": 30, "total_tokens": 30},
    )
    assert to_chunks(first) == [ReasoningDelta("let me see"), TextDelta("Sure"), Usage(12, None)]
    assert to_chunks(last) == [ModelName("claude-x"), Finish("end_turn"), Usage(None, 30)]
    assert to_chunks(messages.AIMessageChunk(content="")) == []


def test_real_litellm_chunk() -> None:
    types = pytest.importorskip("litellm.types.utils")
    chunk = types.ModelResponseStream(
        model="ollama/llama3",
        choices=[{"index": 0, "delta": {"content": "hey"}, "finish_reason": None}],
    )
    assert to_chunks(chunk) == [ModelName("ollama/llama3"), TextDelta("hey")]


def test_unknown_objects_name_their_type() -> None:
    class Weird:
        pass

    with pytest.raises(TypeError, match=r"test_adapters\.Weird"):
        to_chunks(Weird())
    with pytest.raises(TypeError, match="bytes"):
        to_chunks(b"raw bytes")
