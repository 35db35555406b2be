"""The checks every value passes before it reaches the database, and the text
sanitising each database needs: one place, so the store, drafts and the client's
saves refuse the same inputs with the same messages."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from ._errors import MessageConflict
from ._schema import ID_LENGTH, REASON_LENGTH


def new_id() -> str:
    return uuid.uuid4().hex


def check_id(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if not value or len(value) > ID_LENGTH:
        raise ValueError(f"{what} must be 1 to {ID_LENGTH} characters long")
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters: {value!r}")
    return value


def check_int_id(value: object, what: str) -> str:
    try:
        return str(int(str(value)))
    except ValueError:
        raise ValueError(f"{what} must be an integer id here: {value!r}") from None


def check_role(role: object) -> None:
    if not isinstance(role, str) or not role or len(role) > 32:
        raise ValueError(f"role must be a non-empty string of at most 32 characters: {role!r}")


def check_reason(reason: object) -> None:
    if reason is not None and (not isinstance(reason, str) or len(reason) > REASON_LENGTH):
        raise ValueError(
            f"finish_reason must be a string of at most {REASON_LENGTH} characters: {reason!r}"
        )


def check_owner(message_id: str, owner: object, session_id: str) -> None:
    if str(owner) != session_id:
        raise MessageConflict(f"message {message_id!r} belongs to another session")


def check_intervals(every_chunks: int, every_seconds: float) -> None:
    if not isinstance(every_chunks, int) or every_chunks < 1:
        raise ValueError("every_chunks must be a positive integer")
    if not every_seconds > 0:
        raise ValueError("every_seconds must be positive")


def sanitizer(dialect: str) -> Callable[[str], str]:
    """Text as the database can hold it (documented in the README)."""

    def sanitize(text: str) -> str:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # Join surrogate pairs that arrived as halves; replace the lone ones,
            # which no UTF-8 column can hold.
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
            text = _LONE_SURROGATE.sub("\ufffd", text)
        if dialect == "postgresql" and "\x00" in text:
            text = text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL
        return text

    return sanitize


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
