"""The history rules of the OpenAI and Anthropic APIs: for each rule, a history that
keeps it passes and one that breaks it fails, naming the rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from chatpersist.providers._validate import (
    ANTHROPIC_RULES,
    OPENAI_RULES,
    HistoryRuleError,
    check_anthropic_messages,
    check_openai_messages,
)

Messages = list[dict[str, Any]]


def tool_call(call_id: str, arguments: str = '{"city": "Paris"}') -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": "get_weather", "arguments": arguments}}  # fmt: skip


def tool(call_id: str, content: str = "sunny") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


USER = {"role": "user", "content": "Weather in Paris and Rome?"}
OPENAI_OK: Messages = [
    {"role": "system", "content": "Be brief."},
    USER,
    {"role": "assistant", "content": None, "tool_calls": [tool_call("a"), tool_call("b")]},
    tool("b"),  # any order among them
    tool("a"),
    {"role": "assistant", "content": "Sunny in both."},
    {"role": "user", "content": "Thanks"},
]


def test_a_valid_openai_history_passes() -> None:
    check_openai_messages(OPENAI_OK)
    check_openai_messages([USER])
    # content next to tool calls, and "" content with tool calls, are fine
    check_openai_messages(
        [USER, {"role": "assistant", "content": "", "tool_calls": [tool_call("a", "{}")]},
         tool("a")]
    )  # fmt: skip


OPENAI_BROKEN: list[tuple[str, Messages]] = [
    # a result is missing
    ("tool_calls_answered", [USER, {"role": "assistant", "tool_calls": [tool_call("a"),
                                                                        tool_call("b")]},
                             tool("a"), {"role": "user", "content": "and?"}]),
    # the calls end the history unanswered
    ("tool_calls_answered", [USER, {"role": "assistant", "tool_calls": [tool_call("a")]}]),
    # another message comes between the call and its result
    ("tool_calls_answered", [USER, {"role": "assistant", "tool_calls": [tool_call("a")]},
                             {"role": "assistant", "content": "hm"}, tool("a")]),
    ("tool_calls_answered", [USER, {"role": "assistant", "tool_calls": [tool_call("a")]},
                             {"role": "system", "content": "note"}, tool("a")]),
    # a result without a call
    ("tool_message_has_call", [USER, tool("a")]),
    # a result for a call of an older assistant message
    ("tool_message_has_call", [USER, {"role": "assistant", "tool_calls": [tool_call("a")]},
                               tool("a"), {"role": "assistant", "content": "ok"}, tool("a")]),
    # a result for an id that is not among the calls
    ("tool_message_has_call", [USER, {"role": "assistant", "tool_calls": [tool_call("a")]},
                               tool("zzz")]),
    # the same call answered twice
    ("tool_message_has_call", [USER, {"role": "assistant", "tool_calls": [tool_call("a")]},
                               tool("a"), tool("a")]),
    ("tool_arguments_json", [USER, {"role": "assistant",
                                    "tool_calls": [tool_call("a", '{"city": "Pa')]}, tool("a")]),
    ("tool_arguments_json", [USER, {"role": "assistant",
                                    "tool_calls": [tool_call("a", "")]}, tool("a")]),
    ("assistant_not_empty", [USER, {"role": "assistant", "content": None}]),
    ("assistant_not_empty", [USER, {"role": "assistant", "content": ""}]),
    ("assistant_not_empty", [USER, {"role": "assistant"}]),
    ("message_shape", [USER, {"role": "robot", "content": "x"}]),
    ("message_shape", [USER, {"role": "assistant", "content": None, "tool_calls": []}]),
    ("message_shape", [USER, {"role": "assistant", "tool_calls": [tool_call("a"),
                                                                  tool_call("a")]}]),
    ("message_shape", [USER, {"role": "assistant", "tool_calls": [{"id": "a",
                                                                   "function": {}}]}]),
    ("message_shape", [USER, {"role": "tool", "content": "no id"}]),
    ("message_shape", ["not a message"]),  # type: ignore[list-item]
]  # fmt: skip


@pytest.mark.parametrize(("rule", "messages"), OPENAI_BROKEN)
def test_a_broken_openai_history_names_the_rule(rule: str, messages: Messages) -> None:
    with pytest.raises(ValueError, match=rf"^{rule}: messages") as raised:
        check_openai_messages(messages)
    assert isinstance(raised.value, HistoryRuleError) and raised.value.rule == rule


def test_every_openai_rule_is_tested() -> None:
    assert {rule for rule, _ in OPENAI_BROKEN} == set(OPENAI_RULES)


def test_the_error_says_where_and_which_calls() -> None:
    with pytest.raises(HistoryRuleError) as raised:
        check_openai_messages(OPENAI_BROKEN[0][1])
    assert raised.value.index == 1 and "b" in raised.value.detail
    assert str(raised.value).startswith("tool_calls_answered: messages[1]: tool calls b ")


# -- Anthropic --


def use(call_id: str, value: Any = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": "get_weather",
            "input": {"city": "Paris"} if value is None else value}  # fmt: skip


def result(call_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": "sunny"}


def thinking(signature: Any = "EqQBCgIYAh") -> dict[str, Any]:
    return {"type": "thinking", "thinking": "Two cities.", "signature": signature}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


ANTHROPIC_OK: Messages = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {"role": "assistant", "content": [thinking(), {"type": "redacted_thinking", "data": "EmwK"},
                                      text("Checking."), use("a"), use("b")]},
    {"role": "user", "content": [result("b"), result("a"), text("Also: be brief.")]},
    {"role": "assistant", "content": "Sunny in both."},
    {"role": "user", "content": [text("Thanks")]},
]  # fmt: skip


def test_a_valid_anthropic_history_passes() -> None:
    check_anthropic_messages(ANTHROPIC_OK)
    # a prefill without trailing whitespace, and an empty last assistant message
    check_anthropic_messages([*ANTHROPIC_OK, {"role": "assistant", "content": "Sure, the"}])
    check_anthropic_messages([*ANTHROPIC_OK, {"role": "assistant", "content": ""}])
    check_anthropic_messages([*ANTHROPIC_OK, {"role": "assistant", "content": [text("Sure")]}])


def with_message(i: int, message: dict[str, Any]) -> Messages:
    history = copy.deepcopy(ANTHROPIC_OK)
    history[i] = message
    return history


U0 = {"role": "user", "content": "Weather?"}
ANTHROPIC_BROKEN: list[tuple[str, Messages]] = [
    ("first_message_user", [{"role": "assistant", "content": "Hi"}, U0]),
    ("roles_alternate", [U0, {"role": "user", "content": "again"}]),
    ("roles_alternate", [U0, {"role": "assistant", "content": "a"},
                         {"role": "assistant", "content": "b"}]),
    # a tool_use answered only two messages later (the API merges no such turns)
    ("tool_use_answered", [U0, {"role": "assistant", "content": [use("a")]},
                           {"role": "user", "content": "hm?"},
                           {"role": "assistant", "content": "wait"},
                           {"role": "user", "content": [result("a")]}]),
    ("tool_use_answered", with_message(2, {"role": "user", "content": [result("a")]})),
    ("tool_use_answered", [U0, {"role": "assistant", "content": [use("a")]}]),
    ("tool_result_has_tool_use", [U0, {"role": "assistant", "content": "no tools"},
                                  {"role": "user", "content": [result("a")]}]),
    ("tool_result_has_tool_use", [{"role": "user", "content": [result("a")]}]),
    ("tool_result_has_tool_use", with_message(
        2, {"role": "user", "content": [result("a"), result("b"), result("c")]})),
    ("tool_results_first", with_message(
        2, {"role": "user", "content": [text("Here:"), result("a"), result("b")]})),
    ("tool_use_input_object", with_message(
        1, {"role": "assistant", "content": [use("a", '{"city": "Paris"}'), use("b")]})),
    ("tool_use_input_object", with_message(
        1, {"role": "assistant", "content": [use("a", []), use("b")]})),
    ("thinking_signature", with_message(
        1, {"role": "assistant", "content": [thinking(""), use("a"), use("b")]})),
    ("thinking_signature", with_message(
        1, {"role": "assistant", "content": [thinking(None), use("a"), use("b")]})),
    ("prefill_trailing_whitespace", [*ANTHROPIC_OK, {"role": "assistant", "content": "The "}]),
    ("prefill_trailing_whitespace", [*ANTHROPIC_OK, {"role": "assistant",
                                                     "content": [text("Line\n")]}]),
    ("content_not_empty", [U0, {"role": "assistant", "content": ""},
                           {"role": "user", "content": "?"}]),
    ("content_not_empty", [{"role": "user", "content": []}]),
    ("content_not_empty", [{"role": "user", "content": [text("")]}]),
    ("content_not_empty", [{"role": "user", "content": [text("  \n")]}]),
    ("content_not_empty", []),
    ("message_shape", [{"role": "system", "content": "Be brief."}, U0]),
    ("message_shape", [{"role": "user", "content": None}]),
    ("message_shape", [{"role": "user", "content": [{"text": "no type"}]}]),
    ("message_shape", [U0, {"role": "assistant", "content": [use("a"), use("a")]}]),
    ("message_shape", [{"role": "user", "content": [use("a")]}]),
    ("message_shape", [U0, {"role": "assistant", "content": [{"type": "redacted_thinking"}]}]),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "messages"), ANTHROPIC_BROKEN)
def test_a_broken_anthropic_history_names_the_rule(rule: str, messages: Messages) -> None:
    with pytest.raises(ValueError, match=rf"^{rule}: messages") as raised:
        check_anthropic_messages(messages)
    assert isinstance(raised.value, HistoryRuleError) and raised.value.rule == rule


def test_every_anthropic_rule_is_tested() -> None:
    assert {rule for rule, _ in ANTHROPIC_BROKEN} == set(ANTHROPIC_RULES)


def test_the_anthropic_error_names_the_unanswered_call() -> None:
    with pytest.raises(HistoryRuleError) as raised:
        check_anthropic_messages(ANTHROPIC_BROKEN[4][1])
    assert str(raised.value) == (
        "tool_use_answered: messages[1]: tool_use b has no tool_result in the next message"
    )


def test_not_a_list() -> None:
    for check in (check_openai_messages, check_anthropic_messages):
        with pytest.raises(HistoryRuleError, match="^message_shape: messages: expected a list"):
            check("hello")  # type: ignore[arg-type]
