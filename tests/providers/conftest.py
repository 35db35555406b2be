from __future__ import annotations

from collections.abc import Iterator

import pytest
from providers.sse_server import ScriptedServer


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    s = ScriptedServer()
    yield s
    s.close()


@pytest.fixture
def sleeps() -> list[float]:
    """Backoff sleeps recorded instead of slept (the retry policy's sleep is injected)."""
    return []
