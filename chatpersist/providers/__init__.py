"""Streaming providers over httpx, SDK adapters, and piping any stream into a draft.

provider = OpenAICompatible("http://localhost:11434/v1", "llama3.2")
message = stream_into(store, session_id, provider.stream(history))

Streams carry text, reasoning and tool calls; `feed` records them all on a draft.
"""

from ._adapters import to_chunks
from ._anthropic import Anthropic
from ._chunks import Chunk, Finish, ModelName, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from ._errors import ProviderError, ProviderHTTPError
from ._fake import CANNED_ANSWER, FakeModelServer, FakeReasoning, FakeToolCall
from ._http import HTTPProvider, Provider
from ._openai import OpenAICompatible
from ._pipe import astream_into, feed, stream_into
from ._retry import NO_RETRY, RetryPolicy

__all__ = [
    "CANNED_ANSWER",
    "NO_RETRY",
    "Anthropic",
    "Chunk",
    "FakeModelServer",
    "FakeReasoning",
    "FakeToolCall",
    "Finish",
    "HTTPProvider",
    "ModelName",
    "OpenAICompatible",
    "Provider",
    "ProviderError",
    "ProviderHTTPError",
    "ReasoningDelta",
    "RetryPolicy",
    "TextDelta",
    "ToolCallDelta",
    "Usage",
    "astream_into",
    "feed",
    "stream_into",
    "to_chunks",
]
