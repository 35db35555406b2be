"""Recovering interrupted answers: continue one where it stopped, or answer again in
place. This layer sits above the store and the providers: plain functions taking both.

    from chatpersist.recovery import continue_answer
    message = continue_answer(store, message_id, OpenAICompatible(url, model))
"""

from __future__ import annotations

from collections.abc import Callable

from ._errors import MessageConflict
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
    store: ChatStore, message_id: str | int, *, prefill: bool = False
) -> list[dict[str, str]]:
    """The messages that ask a model to continue an interrupted answer. With
    `prefill` (Anthropic), the partial answer is the assistant turn the model
    extends (without trailing whitespace, which the API refuses); otherwise it is
    followed by an instruction to continue exactly where it stopped."""
    target = _recoverable(store, message_id)
    history = store.history_for_model(target.session_id, before=target.id)
    if prefill:
        return [*history, {"role": "assistant", "content": target.content.rstrip()}]
    return [
        *history,
        {"role": "assistant", "content": target.content},
        {"role": "user", "content": CONTINUE_INSTRUCTION},
    ]


def continue_answer(
    store: ChatStore,
    message_id: str | int,
    provider: Provider,
    *,
    on_text: Callable[[str], object] | None = None,
) -> Message:
    """Continue an interrupted answer with `provider`: the new text is appended to
    the same message, which ends complete."""
    target = _recoverable(store, message_id)
    messages = continuation(store, message_id, prefill=bool(getattr(provider, "prefill", False)))
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
) -> Message:
    """Answer again in place: the same message (same id, same position) gets a
    fresh answer to the history before it."""
    target = store.restart(message_id)
    history = store.history_for_model(target.session_id, before=target.id)
    return stream_into(
        store, str(target.session_id), provider.stream(history), message_id=str(target.id),
        on_text=on_text,
    )  # fmt: skip


def _recoverable(store: ChatStore, message_id: str | int) -> Message:
    m = store.get_message(message_id)
    if m.status == COMPLETE:
        raise MessageConflict(f"message {message_id!r} is complete: nothing to continue")
    if m.live:
        raise MessageConflict(f"message {message_id!r} is still being written")
    return m
