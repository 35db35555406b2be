"""What the CLI prints: escaped for terminals, neutralised for spreadsheets."""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Callable, Iterable
from typing import IO, Any

import click
import click._compat as click_compat
from click.globals import resolve_color_default

from .._message import Message
from .._parts import Part, ReasoningPart, TextPart, ToolCallPart, ToolResultPart

# -- output: what a terminal or a spreadsheet must not take as commands --------------

#: C0 controls but newline and tab, DEL, and C1 controls: a terminal acts on them
#: (ESC and CSI start colour, cursor and title sequences; CR overwrites the line).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: What JSON leaves raw (it escapes only U+0000-U+001F).
_JSON_RAW_CONTROLS = re.compile(r"[\x7f-\x9f]")
#: A spreadsheet reads a cell starting with these as a formula (OWASP, CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _escape_control(m: re.Match[str]) -> str:
    code = ord(m[0])
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def safe(text: str) -> str:
    """`text` for plain output: control characters shown as `\\x1b`, `\\u009b`..."""
    return _CONTROLS.sub(_escape_control, text)


def to_json(value: Any, indent: int | None = None) -> str:
    """Exact JSON that is safe on a terminal too: DEL and C1 controls, which JSON may
    leave raw, are written as `\\u` escapes (the same JSON value)."""
    text = json.dumps(value, indent=indent, ensure_ascii=False, default=str)
    return _JSON_RAW_CONTROLS.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def csv_cell(value: Any, terminal: bool = False) -> Any:
    """A CSV cell no spreadsheet runs as a formula: text starting with =, +, -, @, tab
    or carriage return gets a leading single quote (OWASP). On a terminal, control
    characters are escaped too."""
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_STARTS):
        value = "'" + value
    return safe(value) if terminal else value


def write_csv(
    out: IO[str],
    rows: list[dict[str, Any]],
    columns: list[str],
    tick: Callable[[int, int | None], None] | None = None,
) -> None:
    """Rows as CSV (`tick(done, total)`: progress, every 100 rows)."""
    terminal = is_terminal(out)
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for n, row in enumerate(rows):
        if tick is not None and n % 100 == 0:
            tick(n, len(rows))
        writer.writerow({c: csv_cell(row.get(c), terminal) for c in columns})


def is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


# -- errors ------------------------------------------------------------------------


def emit_rows(rows: list[dict[str, Any]], as_json: bool, as_csv: bool, columns: list[str]) -> None:
    """One listing, as JSON, CSV, or aligned plain text."""
    if as_json:
        click.echo(to_json(rows, indent=2))
    elif as_csv:
        write_csv(sys.stdout, rows, columns)
    elif not rows:
        click.echo("(none)")
    else:
        cells = [[_cell(r.get(c)) for c in columns] for r in rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
        click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
        for row in cells:
            click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1%}" if value <= 1 else f"{value:.0f}"
    return safe(str(value).replace("\n", " "))


#: How much of a tool call's arguments, or of a tool result, a listing shows.
PREVIEW_CHARS = 200
#: How `history` shows reasoning: its first line and how many more, all of it, or none.
REASONING_MODES = ("folded", "full", "hidden")


def styled() -> bool:
    """Whether styles reach stdout (a terminal, or colour forced): click's own rule."""
    return not click_compat.should_strip_ansi(sys.stdout, resolve_color_default())


def show_message(m: Message, reasoning: str = "folded") -> None:
    """A message as `history` prints it: `role: text`, with its reasoning, tool calls
    and tool results on lines of their own when it has any."""
    who = click.style(f"{safe(m.role)}:", bold=True)
    if all(isinstance(p, TextPart) for p in m.parts):
        if m.interrupted:
            body = m.content + ("\n\n" if m.content else "")
            rest = m.display_content[len(body) :]
            click.echo(f"{who} {safe(body)}" + click.style(safe(rest), fg="yellow"))
        elif m.live:
            click.echo(
                f"{who} {safe(m.content)}" + click.style("  [still generating...]", fg="cyan")
            )
        else:
            click.echo(f"{who} {safe(m.content)}")
        return
    body = "\n".join(part_lines(m.parts, reasoning, styled()))
    if m.interrupted:
        marker = m.display_content[len(m.content) :].lstrip("\n")
        body += ("\n\n" if body else "") + click.style(safe(marker), fg="yellow")
    elif m.live:
        body += click.style("  [still generating...]", fg="cyan")
    click.echo(f"{who} {body}")


def part_lines(parts: Iterable[Part], reasoning: str = "folded", styled: bool = False) -> list[str]:
    """The parts of a message as lines to print (escaped; `styled`: with ANSI styles,
    else reasoning is prefixed `reasoning: `). Text is shown whole; reasoning folded
    to its first line, whole or not at all; tool calls as `→ name(arguments)` and
    results as `← result`, both cut at `PREVIEW_CHARS`."""
    out: list[str] = []
    text_before = False
    for p in parts:
        if isinstance(p, TextPart):
            if text_before:  # text goes on where it stopped
                out[-1] += safe(p.text)
            else:
                out.append(safe(p.text))
            text_before = True
            continue
        text_before = False
        if isinstance(p, ReasoningPart):
            out.extend(_reasoning(p, reasoning, styled))
        elif isinstance(p, ToolCallPart):
            cut = not p.complete or p.input is None
            line = f"→ {safe(p.name)}({_preview(p.arguments)})" + (" (cut)" if cut else "")
            out.append(line)
        elif isinstance(p, ToolResultPart):
            mark = "error: " if p.is_error else ""
            if mark and styled:
                mark = click.style(mark, fg="red")
            out.append(f"← {mark}{_preview(p.content)}")
        else:
            out.append(f"[{safe(p.type)}]")
    return out


def _reasoning(p: ReasoningPart, mode: str, styled: bool) -> list[str]:
    text = p.text if p.text or p.redacted is None else "(redacted)"
    if mode == "hidden" or not text:
        return []
    lines = text.rstrip("\n").split("\n")
    if mode == "folded" and len(lines) > 1:
        more = len(lines) - 1
        lines = [f"{lines[0]} ({more} more line{'s' if more > 1 else ''})"]
    if styled:
        return [click.style(safe(line), dim=True) for line in lines]
    return [f"reasoning: {safe(line)}" for line in lines]


#: A line break and the indentation around it (pretty-printed JSON, a multi-line result).
_LINE_BREAKS = re.compile(r"[ \t\r]*\n[ \t]*")


def _preview(text: str) -> str:
    """`text` on one line, cut at `PREVIEW_CHARS` (ending with … when cut)."""
    flat = _LINE_BREAKS.sub(" ", text).strip(" ")
    if len(flat) > PREVIEW_CHARS:
        flat = flat[:PREVIEW_CHARS] + "…"
    return safe(flat)
