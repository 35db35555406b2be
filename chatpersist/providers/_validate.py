"""The ordering rules the chat APIs enforce on a request's `messages`, checked before
sending: a history that breaks one gets an HTTP 400 from the real API.

`check_openai_messages` and `check_anthropic_messages` raise `HistoryRuleError` (a
`ValueError`) naming the rule broken and the message at fault, e.g.
`tool_use_answered: messages[1]: tool_use toolu_1 has no tool_result in the next
message`. The fake model server checks every request with them in strict mode.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

OPENAI_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

#: The rules, by name (the first word of every error).
OPENAI_RULES = {
    "message_shape": "each message is an object with a known role and the fields it needs",
    "tool_calls_answered": "an assistant message with tool_calls is followed at once by one "
    "tool message per call id (in any order), before any other message",
    "tool_message_has_call": "a tool message answers a call of the assistant message just "
    "before it (and only once)",
    "tool_arguments_json": "a tool call's function.arguments is valid JSON",
    "assistant_not_empty": "an assistant message has content or tool_calls",
}
ANTHROPIC_RULES = {
    "message_shape": "each message is an object with role user or assistant and content "
    "that is a string or a list of blocks with the fields they need",
    "first_message_user": "the first message is the user's",
    "roles_alternate": "user and assistant messages alternate",
    "tool_use_answered": "every tool_use block has a tool_result with its id in the user "
    "message right after",
    "tool_result_has_tool_use": "every tool_result answers a tool_use of the assistant "
    "message right before",
    "tool_results_first": "in a user message, the tool_result blocks come before any other",
    "tool_use_input_object": "a tool_use block's input is an object",
    "thinking_signature": "a thinking block has a non-empty signature",
    "prefill_trailing_whitespace": "a last assistant message (a prefill) does not end with "
    "whitespace",
    "content_not_empty": "content is not empty (but for a last assistant message) and text "
    "blocks hold more than whitespace",
}


class HistoryRuleError(ValueError):
    """A history that breaks one of the API's rules: `rule` names it, `index` is the
    message at fault (None for the list as a whole)."""

    def __init__(self, rule: str, index: int | None, detail: str) -> None:
        where = "messages" if index is None else f"messages[{index}]"
        super().__init__(f"{rule}: {where}: {detail}")
        self.rule = rule
        self.index = index
        self.detail = detail


def _messages(messages: Any) -> Sequence[Any]:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise HistoryRuleError(
            "message_shape", None, f"expected a list of messages, got {type(messages).__name__}"
        )
    return messages


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _empty(content: Any) -> bool:
    return content is None or content == "" or (isinstance(content, list) and not content)


def check_openai_messages(messages: Sequence[Mapping[str, Any]]) -> None:
    """Raise `HistoryRuleError` (a `ValueError`) when `messages` break a rule of OpenAI's
    chat completions API (see `OPENAI_RULES`); return None when they keep them all."""
    msgs = _messages(messages)
    #: Call ids of the last assistant message not yet answered (None: no calls open).
    pending: dict[str, None] | None = None
    answered: set[str] = set()
    opened_at = 0
    for i, m in enumerate(msgs):
        if not isinstance(m, Mapping):
            raise HistoryRuleError("message_shape", i, f"not an object: {type(m).__name__}")
        role = m.get("role")
        if role not in OPENAI_ROLES:
            raise HistoryRuleError("message_shape", i, f"unknown role {role!r}")
        if role == "tool":
            call_id = m.get("tool_call_id")
            if not _nonempty_str(call_id):
                raise HistoryRuleError("message_shape", i, "a tool message needs tool_call_id")
            if pending is None or call_id not in pending:
                again = pending is not None and call_id in answered
                raise HistoryRuleError(
                    "tool_message_has_call", i,
                    f"a second tool message for {call_id!r}" if again else
                    f"tool message for {call_id!r} does not answer a call of the assistant "
                    "message just before it",
                )  # fmt: skip
            del pending[call_id]
            answered.add(call_id)
            continue
        if pending:
            raise HistoryRuleError(
                "tool_calls_answered", opened_at,
                f"tool calls {', '.join(pending)} have no tool message right after "
                f"(messages[{i}] is a {role} message)",
            )  # fmt: skip
        pending = None
        if role != "assistant":
            continue
        calls = m.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise HistoryRuleError("message_shape", i, "tool_calls must be a list")
        if calls == []:
            raise HistoryRuleError("message_shape", i, "tool_calls is empty (leave it out)")
        if not calls and _empty(m.get("content")):
            raise HistoryRuleError(
                "assistant_not_empty", i, "an assistant message with no content and no tool_calls"
            )
        if calls:
            pending, answered = {}, set()
            opened_at = i
            for k, call in enumerate(calls):
                pending[_check_openai_call(i, k, call, pending)] = None
    if pending:
        raise HistoryRuleError(
            "tool_calls_answered", opened_at,
            f"tool calls {', '.join(pending)} have no tool message after them",
        )  # fmt: skip


def _check_openai_call(i: int, k: int, call: Any, seen: Mapping[str, None]) -> str:
    where = f"tool_calls[{k}]"
    if not isinstance(call, Mapping):
        raise HistoryRuleError("message_shape", i, f"{where} is not an object")
    call_id = call.get("id")
    if not _nonempty_str(call_id):
        raise HistoryRuleError("message_shape", i, f"{where} has no id")
    if call_id in seen:
        raise HistoryRuleError("message_shape", i, f"{where}: id {call_id!r} used twice")
    if call.get("type") != "function":
        raise HistoryRuleError("message_shape", i, f"{where}.type must be 'function'")
    function = call.get("function")
    if not isinstance(function, Mapping) or not _nonempty_str(function.get("name")):
        raise HistoryRuleError("message_shape", i, f"{where}.function needs a name")
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        raise HistoryRuleError(
            "tool_arguments_json", i, f"{where}.function.arguments must be a JSON string"
        )
    try:
        json.loads(arguments)
    except ValueError:
        raise HistoryRuleError(
            "tool_arguments_json", i,
            f"{where} ({call_id}): function.arguments is not valid JSON: {arguments[:80]!r}",
        ) from None  # fmt: skip
    return str(call_id)


def check_anthropic_messages(messages: Sequence[Mapping[str, Any]]) -> None:
    """Raise `HistoryRuleError` (a `ValueError`) when `messages` (the request's
    `messages`, the system prompt apart) break a rule of Anthropic's Messages API (see
    `ANTHROPIC_RULES`); return None when they keep them all."""
    msgs = _messages(messages)
    if not msgs:
        raise HistoryRuleError("content_not_empty", None, "no messages")
    uses: list[str] = []  # the tool_use ids of the assistant message just before
    for i, m in enumerate(msgs):
        if not isinstance(m, Mapping):
            raise HistoryRuleError("message_shape", i, f"not an object: {type(m).__name__}")
        role = m.get("role")
        if role not in ("user", "assistant"):
            hint = " (the system prompt goes in the top-level `system`)" if role == "system" else ""
            raise HistoryRuleError("message_shape", i, f"unknown role {role!r}{hint}")
        if i == 0 and role != "user":
            raise HistoryRuleError("first_message_user", 0, f"the first message is {role!r}")
        if i > 0 and msgs[i - 1].get("role") == role:
            raise HistoryRuleError(
                "roles_alternate", i, f"two {role} messages in a row (messages[{i - 1}] too)"
            )
        last = i == len(msgs) - 1
        blocks = _blocks(i, m.get("content"), empty_ok=last and role == "assistant")
        for k, block in enumerate(blocks):
            _check_block(i, k, role, block)
        if role == "user":
            _check_results(i, blocks, uses)
            uses = []
        else:
            uses = [str(b["id"]) for b in blocks if b.get("type") == "tool_use"]
            if len(set(uses)) != len(uses):
                raise HistoryRuleError("message_shape", i, "a tool_use id is used twice")
    if uses:
        raise HistoryRuleError(
            "tool_use_answered", len(msgs) - 1,
            f"tool_use {', '.join(uses)} has no tool_result after it (no user message follows)",
        )  # fmt: skip
    final = msgs[-1]
    if final.get("role") == "assistant":
        content = final.get("content")
        tail = content if isinstance(content, str) else None
        if isinstance(content, list) and content and content[-1].get("type") == "text":
            tail = content[-1].get("text")
        if isinstance(tail, str) and tail and tail != tail.rstrip():
            raise HistoryRuleError(
                "prefill_trailing_whitespace", len(msgs) - 1,
                "the final assistant content (a prefill) ends with whitespace",
            )  # fmt: skip


def _blocks(i: int, content: Any, *, empty_ok: bool) -> list[Mapping[str, Any]]:
    if isinstance(content, str):
        if not content:
            if empty_ok:
                return []
            raise HistoryRuleError("content_not_empty", i, "empty content")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise HistoryRuleError(
            "message_shape", i, f"content must be a string or a list of blocks, not "
            f"{type(content).__name__}",
        )  # fmt: skip
    if not content and not empty_ok:
        raise HistoryRuleError("content_not_empty", i, "empty list of content blocks")
    for k, block in enumerate(content):
        if not isinstance(block, Mapping) or not _nonempty_str(block.get("type")):
            raise HistoryRuleError("message_shape", i, f"content[{k}] is not a typed block")
    return content


def _check_block(i: int, k: int, role: str, block: Mapping[str, Any]) -> None:
    kind = block["type"]
    where = f"content[{k}] ({kind})"
    only = {"tool_use": "assistant", "thinking": "assistant", "redacted_thinking": "assistant",
            "tool_result": "user"}  # fmt: skip
    if kind in only and only[kind] != role:
        raise HistoryRuleError("message_shape", i, f"{where} in a {role} message")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise HistoryRuleError("message_shape", i, f"{where} has no text")
        if not text.strip():
            raise HistoryRuleError(
                "content_not_empty", i, f"{where}: text blocks must hold non-whitespace text"
            )
    elif kind == "thinking":
        if not isinstance(block.get("thinking"), str):
            raise HistoryRuleError("message_shape", i, f"{where} has no thinking text")
        if not _nonempty_str(block.get("signature")):
            raise HistoryRuleError("thinking_signature", i, f"{where} has no signature")
    elif kind == "redacted_thinking":
        if not _nonempty_str(block.get("data")):
            raise HistoryRuleError("message_shape", i, f"{where} has no data")
    elif kind == "tool_use":
        if not _nonempty_str(block.get("id")) or not _nonempty_str(block.get("name")):
            raise HistoryRuleError("message_shape", i, f"{where} needs an id and a name")
        if not isinstance(block.get("input"), Mapping):
            raise HistoryRuleError(
                "tool_use_input_object", i,
                f"{where} {block['id']}: input must be an object, not "
                f"{type(block.get('input')).__name__}",
            )  # fmt: skip
    elif kind == "tool_result":
        if not _nonempty_str(block.get("tool_use_id")):
            raise HistoryRuleError("message_shape", i, f"{where} has no tool_use_id")


def _check_results(i: int, blocks: list[Mapping[str, Any]], uses: list[str]) -> None:
    """A user message after an assistant message with tool_use blocks `uses`."""
    results = [str(b["tool_use_id"]) for b in blocks if b.get("type") == "tool_result"]
    for k, block in enumerate(blocks):
        if block.get("type") != "tool_result" and any(
            b.get("type") == "tool_result" for b in blocks[k + 1 :]
        ):
            raise HistoryRuleError(
                "tool_results_first", i, f"content[{k}] ({block.get('type')}) comes before a "
                "tool_result",
            )  # fmt: skip
    for result in results:
        if result not in uses:
            raise HistoryRuleError(
                "tool_result_has_tool_use", i,
                f"tool_result for {result!r} answers no tool_use of the message before",
            )  # fmt: skip
    missing = [u for u in uses if u not in results]
    if missing:
        raise HistoryRuleError(
            "tool_use_answered", i - 1,
            f"tool_use {', '.join(missing)} has no tool_result in the next message",
        )  # fmt: skip
