"""Recovering interrupted answers: continue one where it stopped, or answer again in
place. This layer sits above the store and the providers: plain functions taking both.

    from chatpersist.recovery import continue_answer
    message = continue_answer(store, message_id, OpenAICompatible(url, model))

The history goes to each provider in its API's shape (its `history_format`), repaired
where the answer was cut: inside its reasoning, or inside a tool call's arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._errors import MessageConflict
from ._history import (
    CutToolCalls,
    HistoryFormat,
    for_model,
    format_of,
    merge_user_turns,
    message_turns,
)
from ._message import Message
from ._schema import COMPLETE
from ._store import ChatStore
from .providers import Provider, stream_into

__all__ = ["CONTINUE_INSTRUCTION", "continuation", "continue_answer", "regenerate"]

#: The user turn that asks a model without prefill to go on with its partial answer.
CONTINUE_INSTRUCTION = (
    "Continue your previous answer exactly where it stopped. Do not repeat anything "
    "you already wrote and do not comment on the interruption."
)


def continuation(
    store: ChatStore,
    message_id: str | int,
    *,
    prefill: bool = False,
    format: HistoryFormat = "openai",
    cut_tool_calls: CutToolCalls = "drop",
    keep_reasoning: bool = False,
) -> list[dict[str, Any]]:
    """The messages that ask a model to continue an interrupted answer, in the shape
    of `format`'s API.

    The partial answer is sent repaired: its reasoning left out, a tool call cut in
    its arguments never sent as it is (see `cut_tool_calls`, which applies to the
    history before it too; `keep_reasoning` applies to that history only). With
    `prefill` (Anthropic), the partial answer is the assistant turn the model
    extends, without trailing whitespace (which the API refuses); a partial answer
    that does not end with text (a tool call, its result), or without `prefill`, is
    followed by an instruction to continue exactly where it stopped. A partial answer
    with nothing left to send is answered afresh."""
    target = _recoverable(store, message_id)
    history = for_model(
        store.history(target.session_id), before=target.id, format=format,
        cut_tool_calls=cut_tool_calls, keep_reasoning=keep_reasoning,
    )  # fmt: skip
    partial = message_turns(target, format, cut_tool_calls)
    if prefill:
        extended = _prefill(partial)
        if extended is not None:
            partial = extended
            return _join([*history, *partial], format)
    if not partial:
        return history
    return _join([*history, *partial, {"role": "user", "content": CONTINUE_INSTRUCTION}], format)


def continue_answer(
    store: ChatStore,
    message_id: str | int,
    provider: Provider,
    *,
    on_text: Callable[[str], object] | None = None,
    cut_tool_calls: CutToolCalls = "drop",
    keep_reasoning: bool = False,
) -> Message:
    """Continue an interrupted answer with `provider`: the new text is appended to
    the same message, which ends complete. The history goes in the provider's shape
    (`provider.history_format`, else OpenAI's); see `continuation`."""
    target = _recoverable(store, message_id)
    messages = continuation(
        store, message_id, prefill=bool(getattr(provider, "prefill", False)),
        format=format_of(provider), cut_tool_calls=cut_tool_calls,
        keep_reasoning=keep_reasoning,
    )  # fmt: skip
    # A draft on the target's id resumes it: new text goes after what is stored.
    return stream_into(
        store, str(target.session_id), provider.stream(messages), message_id=str(target.id),
        on_text=on_text,
    )  # fmt: skip


def regenerate(
    store: ChatStore,
    message_id: str | int,
    provider: Provider,
    *,
    on_text: Callable[[str], object] | None = None,
    cut_tool_calls: CutToolCalls = "drop",
    keep_reasoning: bool = False,
) -> Message:
    """Answer again in place: the same message (same id, same position) gets a
    fresh answer to the history before it (in the provider's shape)."""
    fmt = format_of(provider)
    target = store.restart(message_id)
    history = for_model(
        store.history(target.session_id), before=target.id, format=fmt,
        cut_tool_calls=cut_tool_calls, keep_reasoning=keep_reasoning,
    )  # fmt: skip
    return stream_into(
        store, str(target.session_id), provider.stream(history), message_id=str(target.id),
        on_text=on_text,
    )  # fmt: skip


def _prefill(partial: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The partial answer as a prefill: its last turn the assistant's, ending with text
    without trailing whitespace; None when it does not end with text."""
    if not partial or partial[-1].get("role") != "assistant" or partial[-1].get("tool_calls"):
        return None
    last = partial[-1]
    content = last.get("content")
    if isinstance(content, str) and content.rstrip():
        return [*partial[:-1], {**last, "content": content.rstrip()}]
    if isinstance(content, list) and content and content[-1].get("type") == "text":
        text = str(content[-1].get("text", "")).rstrip()
        if text:
            tail = {**content[-1], "text": text}
            return [*partial[:-1], {**last, "content": [*content[:-1], tail]}]
    return None


def _join(messages: list[dict[str, Any]], fmt: HistoryFormat) -> list[dict[str, Any]]:
    return merge_user_turns(messages) if fmt == "anthropic" else messages


def _recoverable(store: ChatStore, message_id: str | int) -> Message:
    m = store.get_message(message_id)
    if m.status == COMPLETE:
        raise MessageConflict(f"message {message_id!r} is complete: nothing to continue")
    if m.live:
        raise MessageConflict(f"message {message_id!r} is still being written")
    return m
