"""What a provider stream yields: small typed pieces, one kind of fact each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextDelta:
    """More of the answer's text."""

    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """More of the model's visible reasoning (not part of the answer). `signature`
    ends a block (Anthropic's thinking signature, which must be sent back);
    `redacted` is a redacted block's opaque data."""

    text: str
    signature: str | None = None
    redacted: str | None = None


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call: `index` names the call within the answer (OpenAI's
    `index`, Anthropic's content block index); `id` and `name` come with its first
    piece, `arguments` is the next fragment of its JSON arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class Finish:
    """How the answer ended, as the provider says it (stop, length, end_turn...)."""

    reason: str


@dataclass(frozen=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class ModelName:
    name: str


Chunk = TextDelta | ReasoningDelta | ToolCallDelta | Finish | Usage | ModelName
