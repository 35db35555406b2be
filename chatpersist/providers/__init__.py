"""Streaming providers over httpx, SDK adapters, and piping any stream into a draft.

provider = OpenAICompatible("http://localhost:11434/v1", "llama3.2")
message = stream_into(store, session_id, provider.stream(history))
"""

from ._adapters import to_chunks
from ._anthropic import Anthropic
from ._chunks import Chunk, Finish, ModelName, ReasoningDelta, TextDelta, Usage
from ._errors import ProviderError, ProviderHTTPError
from ._fake import CANNED_ANSWER, FakeModelServer
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
    "Usage",
    "astream_into",
    "feed",
    "stream_into",
    "to_chunks",
]
