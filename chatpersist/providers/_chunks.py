"""What a provider stream yields: small typed pieces, one kind of fact each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextDelta:
    """More of the answer's text."""

    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """More of the model's visible reasoning (not part of the answer)."""

    text: str


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


Chunk = TextDelta | ReasoningDelta | Finish | Usage | ModelName
