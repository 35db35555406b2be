"""The public API: what each public module exports is pinned here, sorted, and every
public class, function, method and property says what it does."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest

PUBLIC = {
    "chatpersist": [
        "ABANDONED", "COMPLETE", "CUT_REASONS", "INTERRUPTED_MARKER", "STREAMING",
        "AsyncChatStore", "AsyncDraft", "ChatPersistError", "ChatStore", "Clock", "Draft", "DraftNotOpen",
        "FlushError", "JournalLocked", "Message", "MessageConflict", "MessagesTable",
        "MigrationsMissing", "NoSessionsTable", "NotAJournal", "NotMigrated", "OtherPart",
        "Part", "ReasoningPart", "SessionInfo", "SessionsTable", "StatRow", "StoreClosed",
        "SystemClock", "TableMismatch", "TextPart", "ToolCallPart", "ToolResultPart",
        "UnknownMessage", "UnknownSession", "__version__",
    ],
    "chatpersist.providers": [
        "CANNED_ANSWER", "NO_RETRY", "Anthropic", "Chunk", "FakeModelServer", "FakeReasoning",
        "FakeToolCall", "Finish",
        "HTTPProvider", "ModelName", "OpenAICompatible", "Provider", "ProviderError",
        "ProviderHTTPError", "ReasoningDelta", "RetryPolicy", "TextDelta", "ToolCallDelta", "Usage",
        "astream_into", "feed", "stream_into", "to_chunks",
    ],
    "chatpersist.recovery": [
        "CONTINUE_INSTRUCTION", "Recoverer", "continuation", "continue_answer", "regenerate",
    ],
    "chatpersist.testing": ["ManualClock", "OffsetClock"],
    "chatpersist.metrics": ["INSTRUMENTS", "Instrumentation", "Metric", "instrument"],
    "chatpersist.cli": ["cli", "main"],
    "chatpersist.aisdk": ["HEADERS", "UIChat", "ui_chunks", "ui_message"],
    "chatpersist.asgi": [
        "NOTIFY_CHANNEL", "Authorize", "ChatStreams", "DraftStreamResponse", "follow",
    ],
    "chatpersist.retrofit": [
        "DRAFT_COLUMNS", "HOST_COLUMNS", "MessagesTable", "SessionsTable", "add_draft_columns",
        "drop_draft_columns", "include_object", "include_object_for",
    ],
}  # fmt: skip


def isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions."""
    if name.isupper() or (name.upper() == name and "_" in name):
        return 0, name
    return (1, name) if name[:1].isupper() else (2, name)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_exports_are_pinned_and_sorted(name: str) -> None:
    module = importlib.import_module(name)
    assert list(module.__all__) == PUBLIC[name]
    assert len(set(module.__all__)) == len(module.__all__), "a name listed twice"
    assert sorted(module.__all__, key=isort_key) == list(module.__all__)
    for export in module.__all__:
        assert hasattr(module, export), export


def test_everything_raised_on_purpose_shares_one_root() -> None:
    import chatpersist
    from chatpersist.providers import ProviderError, ProviderHTTPError

    errors = [getattr(chatpersist, n) for n in chatpersist.__all__ if n.endswith(
        ("Error", "Conflict", "Closed", "Locked", "Missing", "Mismatch", "Open", "Table",
         "Journal", "Migrated", "Message", "Session"))]  # fmt: skip
    errors = [e for e in errors if isinstance(e, type) and issubclass(e, Exception)]
    assert len(errors) >= 12
    for e in [*errors, ProviderError, ProviderHTTPError]:
        assert issubclass(e, chatpersist.ChatPersistError), e


def documented(module: ModuleType) -> list[str]:
    missing = []
    for export in module.__all__:
        obj = getattr(module, export)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants are documented where they are defined
        if not inspect.getdoc(obj):
            missing.append(export)
        if not inspect.isclass(obj):
            continue
        for attr, value in vars(obj).items():
            if attr.startswith("_") or not (
                inspect.isfunction(value) or isinstance(value, property | classmethod)
            ):
                continue
            func = value.__func__ if isinstance(value, classmethod) else value
            if not (func.__doc__ or "").strip():
                missing.append(f"{export}.{attr}")
    return missing


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_name_has_a_docstring(name: str) -> None:
    assert documented(importlib.import_module(name)) == []
