"""`chatpersist history` and `audit` on answers with parts: reasoning (dimmed on a
terminal, else prefixed, folded to its first line), tool calls (→ name(arguments)) and
tool results (← result); plain text answers print exactly as before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from chatpersist import ChatStore
from chatpersist.cli import cli

HOSTILE = "\x1b]0;owned\x07\x9b31m\r"
HOSTILE_SHOWN = "\\x1b]0;owned\\x07\\u009b31m\\x0d"
LONG = "x" * 500


def run(*args: str, color: bool = False) -> Result:
    result = CliRunner().invoke(cli, list(args), color=color)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("CHATPERSIST_DB", raising=False)
    url = f"sqlite:///{tmp_path}/cli-parts.db"
    with ChatStore(url) as store:
        store.migrate()
    yield url


@pytest.fixture
def session(url: str) -> tuple[str, str, str]:
    """A question, then an answer with parts cut inside its second tool call."""
    with ChatStore(url) as store:
        sid = store.create_session()
        store.add_message(sid, "user", "Weather and time in Paris?")
        with store.draft(sid) as d:
            d.append_reasoning("The user wants the weather\nand the time.\nTwo tools.")
            d.append_reasoning(signature="sig-1")
            d.append("Let me check both.")
            d.append_tool_call("call_1", "get_weather", '{"city":\n "Paris"}')
            d.add_tool_result("call_1", "sunny,\n21 C")
            d.add_tool_result("call_1", "the tool failed", is_error=True)
            d.append("It is sunny.")
            d.append_tool_call("call_2", "get_time", '{"tz": "CE')
            d.stop("disconnected")
    return url, sid, d.message_id


QUESTION = "user: Weather and time in Paris?"
PARTS_SHOWN = [
    "Let me check both.",
    '→ get_weather({"city": "Paris"})',
    "← sunny, 21 C",
    "← error: the tool failed",
    "It is sunny.",
    '→ get_time({"tz": "CE) (cut)',
    "",
    "(response interrupted)",
]


def test_history_shows_parts_in_order(session: tuple[str, str, str]) -> None:
    url, sid, _ = session
    lines = run("history", sid, "--db", url).stdout.splitlines()
    assert lines == [
        QUESTION,
        "assistant: reasoning: The user wants the weather (2 more lines)",
        *PARTS_SHOWN,
    ]
    full = run("history", sid, "--db", url, "--reasoning", "full").stdout.splitlines()
    assert full[1:4] == [
        "assistant: reasoning: The user wants the weather",
        "reasoning: and the time.",
        "reasoning: Two tools.",
    ]
    hidden = run("history", sid, "--db", url, "--reasoning", "hidden").stdout.splitlines()
    assert hidden == [QUESTION, f"assistant: {PARTS_SHOWN[0]}", *PARTS_SHOWN[1:]]


def test_on_a_terminal_reasoning_is_dimmed(session: tuple[str, str, str]) -> None:
    url, sid, _ = session
    out = run("history", sid, "--db", url, color=True).stdout
    assert "\x1b[2mThe user wants the weather (2 more lines)\x1b[0m" in out
    assert "reasoning: " not in out
    assert "← \x1b[31merror: \x1b[0mthe tool failed" in out
    assert "\x1b[33m(response interrupted)\x1b[0m" in out


def test_plain_text_messages_print_as_before(url: str) -> None:
    with ChatStore(url) as store:
        sid = store.create_session()
        store.add_message(sid, "user", "q")
        with store.draft(sid) as d:
            d.append("a full answer\non two lines")
        with store.draft(sid) as d:
            d.append("cut sh")
            d.stop("stopped")
        with store.draft(sid) as d:
            d.stop("stopped")  # nothing written
        live = store.draft(sid)
        live.__enter__()
        live.append("being written")
        live.flush(timeout=10)
        try:
            out = run("history", sid, "--db", url).stdout
            colored = run("history", sid, "--db", url, color=True).stdout
        finally:
            live.__exit__(None, None, None)
    assert out == (
        "user: q\n"
        "assistant: a full answer\non two lines\n"
        "assistant: cut sh\n\n(response interrupted)\n"
        "assistant: (response interrupted)\n"
        "assistant: being written  [still generating...]\n"
    )
    assert "\x1b[1massistant:\x1b[0m cut sh\n\n\x1b[33m(response interrupted)\x1b[0m" in colored


def test_long_arguments_and_results_are_cut(url: str) -> None:
    with ChatStore(url) as store:
        sid = store.create_session()
        store.add_message(sid, "user", "q")
        with store.draft(sid) as d:
            d.append_tool_call("c", "search", json.dumps({"q": LONG}))
            d.add_tool_result("c", LONG)
            d.append_reasoning("")
            d.add_part({"type": "citation", "url": "https://example.com"})
            d.append("Found it.")
    lines = run("history", sid, "--db", url).stdout.splitlines()
    call, result = lines[1], lines[2]
    assert call.startswith('assistant: → search({"q": "xxx') and call.endswith("x…)")
    assert len(call) == len("assistant: → search(") + 200 + len("…)")
    assert result == "← " + "x" * 200 + "…"
    assert lines[3:] == ["[citation]", "Found it."]


def test_hostile_text_in_parts_is_escaped(url: str) -> None:
    with ChatStore(url) as store:
        sid = store.create_session()
        store.add_message(sid, "user", "q")
        with store.draft(sid) as d:
            d.append_reasoning(f"think {HOSTILE}")
            d.append_tool_call("c", f"tool{HOSTILE}", json.dumps({"a": HOSTILE}))
            d.add_tool_result("c", f"result {HOSTILE}")
            d.add_part({"type": f"odd{HOSTILE}"})
    for color in (False, True):
        out = run("history", sid, "--db", url, color=color).stdout
        for raw in ("\x1b]0;", "\x9b", "\x07", "\r"):
            assert raw not in out, (raw, out)
        assert f"think {HOSTILE_SHOWN}" in out and f"result {HOSTILE_SHOWN}" in out
        assert f"→ tool{HOSTILE_SHOWN}(" in out and f"[odd{HOSTILE_SHOWN}]" in out


def test_json_carries_the_parts(session: tuple[str, str, str]) -> None:
    url, sid, mid = session
    history = json.loads(run("history", sid, "--db", url, "--json").stdout)
    assert history[0]["parts"] == [{"type": "text", "text": "Weather and time in Paris?"}]
    parts = history[1]["parts"]
    assert [p["type"] for p in parts] == [
        "reasoning", "text", "tool_call", "tool_result", "tool_result", "text", "tool_call",
    ]  # fmt: skip
    assert parts[0]["signature"] == "sig-1"
    assert (parts[-1]["arguments"], parts[-1]["complete"]) == ('{"tz": "CE', False)
    rows = json.loads(run("audit", "--db", url, "--json").stdout)
    assert [r["id"] for r in rows] == [mid] and rows[0]["parts"] == parts
    exported = run("audit", "export", "-", "--db", url).stdout.splitlines()
    assert json.loads(exported[0])["parts"] == parts


def test_audit_shows_the_answers_with_show(session: tuple[str, str, str]) -> None:
    url, sid, mid = session
    table = run("audit", "--db", url).stdout
    assert table.splitlines()[0].split() == [
        "session_id", "id", "length", "age", "reason", "model", "created_at",
    ]  # fmt: skip
    assert "→" not in table and "reasoning" not in table
    lines = run("audit", "--db", url, "--show").stdout.splitlines()
    start = lines.index(f"[{mid} in session {sid}: disconnected, 0s]")
    assert lines[start + 1 :] == [
        "assistant: reasoning: The user wants the weather (2 more lines)",
        *PARTS_SHOWN,
    ]
    assert run("audit", "--db", url, "--show", "--json").stdout.lstrip().startswith("[")
