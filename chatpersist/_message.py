"""The `Message` a loader returns, and how a stored row becomes one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ._parts import Part, build_parts
from ._schema import COMPLETE, STREAMING

INTERRUPTED_MARKER = "(response interrupted)"
#: Finish reasons of an answer that was cut short (by its user, its client, an error,
#: or a crash). Any other reason is how a model ends an answer ("stop", "length",
#: "tool_calls", "content_filter"...): the answer is complete. The one rule, used by
#: drafts, `save_partial` and the CLI.
CUT_REASONS = frozenset(
    {
        "stopped", "disconnected", "cancelled", "error", "provider_error", "abandoned",
        "regenerating", "interrupted", "timeout",
    }
)  # fmt: skip


#: How an answer opted in to completion after a crash may have ended and still be
#: completed by a `recovery.Recoverer`: its process stopped (cancelled), or `sweep()`
#: marked it (abandoned), or nothing (SIGKILL: its heartbeat stopped).
RECOVERABLE_REASONS = ("cancelled", "abandoned")


def ends_complete(reason: str | None) -> bool:
    """Whether an answer that ended with `reason` is complete (not cut short)."""
    return reason not in CUT_REASONS


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Message:
    """A stored message as the loader returns it. `id` and `session_id` come in the
    app's own type: `str`, or `int` for a table with integer ids (`int_ids`)."""

    id: str | int
    session_id: str | int
    role: str
    content: str
    status: str
    finish_reason: str | None
    seq: int
    created_at: datetime
    updated_at: datetime
    #: 'streaming' and nobody is writing it any more (ended abnormally or lease expired).
    interrupted: bool
    #: 'streaming' and a writer still holds it: more text may come.
    live: bool
    #: `content`, plus a visible marker when interrupted.
    display_content: str
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    #: Why the answer was cut, when known (e.g. the provider's error message).
    error: str | None = None
    #: The answer in order: text, reasoning, tool calls and tool results (a message
    #: of text only has one text part; an empty one none).
    parts: tuple[Part, ...] = ()
    #: Opted in to completion after a crash, its writer gone: a `Recoverer` completes
    #: it (or is completing it). It reads as `live`, not interrupted.
    recovering: bool = False
    #: What a Recoverer completes it with after a crash (None: not opted in), and how
    #: many recoveries claimed it so far.
    recover_with: str | None = None
    recoveries: int = 0

    @property
    def complete(self) -> bool:
        """The answer finished normally."""
        return self.status == COMPLETE

    def to_dict(self) -> dict[str, Any]:
        """The message as plain JSON-ready values (timestamps as ISO 8601)."""
        return {
            "id": self.id,
            "session_id": self.session_id,
            "role": self.role,
            "content": self.content,
            "status": self.status,
            "finish_reason": self.finish_reason,
            "seq": self.seq,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "interrupted": self.interrupted,
            "live": self.live,
            "display_content": self.display_content,
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "error": self.error,
            "parts": [p.to_dict() for p in self.parts],
            "recovering": self.recovering,
            "recover_with": self.recover_with,
            "recoveries": self.recoveries,
        }


def as_utc(value: datetime) -> datetime:
    """Stored timestamps are naive UTC; hand out aware ones."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_db_time(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def build_message(
    *,
    id: str | int,
    session_id: str | int,
    role: str,
    content: str,
    status: str,
    finish_reason: str | None,
    seq: int,
    created_at: datetime | None,
    updated_at: datetime | None,
    now: datetime,
    lease: timedelta,
    marker: str,
    model: str | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    error: str | None = None,
    parts: Any = None,
    offset: int = 0,
    recover_with: str | None = None,
    recoveries: int | None = 0,
    max_recoveries: int = 3,
) -> Message:
    # Rows written before the draft columns existed have no heartbeat (and an app's
    # table may have no created_at): fall back so the loader never fails on them.
    created = as_utc(created_at) if created_at is not None else None
    updated = as_utc(updated_at) if updated_at is not None else created or EPOCH
    created = created or updated
    streaming = status == STREAMING
    # A finish_reason on a streaming row means its writer ended it abnormally.
    cut = streaming and (finish_reason is not None or now - updated > lease)
    opted_in = streaming and recover_with is not None
    # Cut by a crash with recoveries left: a Recoverer will complete it.
    waiting = (
        cut and opted_in and (recoveries or 0) < max_recoveries
        and (finish_reason is None or finish_reason in RECOVERABLE_REASONS)
    )  # fmt: skip
    interrupted = cut and not waiting
    display = (
        f"{content}\n\n{marker}" if interrupted and content else marker if interrupted else content
    )
    return Message(
        id=id,
        session_id=session_id,
        role=role,
        content=content,
        status=status,
        finish_reason=finish_reason,
        seq=seq,
        created_at=created,
        updated_at=updated,
        interrupted=interrupted,
        live=streaming and not interrupted,
        display_content=display,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        error=error,
        parts=build_parts(parts, content, complete=status == COMPLETE, offset=offset),
        recovering=waiting or (opted_in and not cut and (recoveries or 0) > 0),
        recover_with=recover_with,
        recoveries=recoveries or 0,
    )
