"""Recovering interrupted answers: continue one where it stopped, or answer again in
place. This layer sits above the store and the providers: plain functions taking both.

    from chatpersist.recovery import continue_answer
    message = continue_answer(store, message_id, OpenAICompatible(url, model))

The history goes to each provider in its API's shape (its `history_format`), repaired
where the answer was cut: inside its reasoning, or inside a tool call's arguments.
"""

from __future__ import annotations

import logging
import threading
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

__all__ = [
    "CONTINUE_INSTRUCTION", "Recoverer", "continuation", "continue_answer", "regenerate",
]  # fmt: skip

log = logging.getLogger("chatpersist")

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
    return _continuation(
        store, _recoverable(store, message_id), prefill=prefill, format=format,
        cut_tool_calls=cut_tool_calls, keep_reasoning=keep_reasoning,
    )  # fmt: skip


def _continuation(
    store: ChatStore,
    target: Message,
    *,
    prefill: bool,
    format: HistoryFormat,
    cut_tool_calls: CutToolCalls,
    keep_reasoning: bool,
) -> list[dict[str, Any]]:
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


class Recoverer:
    """Completes answers whose writer died (opted in with `draft(recover_with=...)` or
    `ChatStreams.response(..., policy="finish", recover_with=...)`).

    Every `poll` seconds it claims up to `concurrency` of them (`ChatStore.
    claim_recoverable`: at most one claimant per answer, fenced like any takeover) and
    continues each from its stored text, in a thread of its own, with the provider
    `provider_for(recover_with)` builds. Run one in every worker (`start()` /
    `stop()`), or on its own (`chatpersist recover-worker`). An answer whose recovery
    dies too is claimed again, up to the store's `max_recoveries`; then it reads as
    interrupted (Continue by hand).
    """

    def __init__(
        self,
        store: ChatStore,
        provider_for: Callable[[str], Provider],
        *,
        poll: float = 1.0,
        concurrency: int = 4,
        cut_tool_calls: CutToolCalls = "drop",
    ) -> None:
        if poll <= 0 or concurrency < 1:
            raise ValueError("poll must be positive and concurrency at least 1")
        self.store = store
        self.provider_for = provider_for
        self.poll = poll
        self.concurrency = concurrency
        self.cut_tool_calls = cut_tool_calls
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: set[threading.Thread] = set()
        self._lock = threading.Lock()
        #: Answers completed, and recoveries that failed, by this recoverer.
        self.completed = 0
        self.failed = 0

    def run_once(self, wait: bool = True) -> list[str]:
        """Claim what is due now and complete it (with `wait`, before returning);
        the ids of the answers claimed."""
        with self._lock:
            self._running = {t for t in self._running if t.is_alive()}
            room = self.concurrency - len(self._running)
        if room <= 0:
            return []
        claimed = self.store.claim_recoverable(room)
        threads = []
        for m in claimed:
            t = threading.Thread(
                target=self._complete, args=(m,), name=f"chatpersist-recover-{m.id}",
                daemon=True,
            )  # fmt: skip
            with self._lock:
                self._running.add(t)
            t.start()
            threads.append(t)
        if wait:
            for t in threads:
                t.join()
        return [str(m.id) for m in claimed]

    def start(self) -> None:
        """Run in a background thread until `stop()`."""
        if self._thread is not None:
            raise RuntimeError("this Recoverer is already running")
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._loop, name="chatpersist-recoverer", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop claiming; wait up to `timeout` for the answers being completed."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            running = list(self._running)
        for t in running:
            t.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once(wait=False)
            except Exception:  # noqa: BLE001 - a database away: try again at the next poll
                log.exception("chatpersist: recoverer could not claim answers")
            self._stopping.wait(self.poll)

    def _complete(self, target: Message) -> None:
        spec = target.recover_with or ""
        try:
            provider = self.provider_for(spec)
            messages = _continuation(
                self.store, target, prefill=bool(getattr(provider, "prefill", False)),
                format=format_of(provider), cut_tool_calls=self.cut_tool_calls,
                keep_reasoning=False,
            )  # fmt: skip
            m = stream_into(
                self.store, str(target.session_id), provider.stream(messages),
                message_id=str(target.id),
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - one answer's failure must not stop the others
            with self._lock:  # recoveries run in threads of their own
                self.failed += 1
            log.exception("chatpersist: recovery of %r with %r failed", target.id, spec)
            return
        with self._lock:
            self.completed += m.complete
        log.info("chatpersist: recovered %r (%s)", target.id, m.status)


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
