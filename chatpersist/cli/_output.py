"""What the CLI prints: escaped for terminals, neutralised for spreadsheets."""
from __future__ import annotations

import csv
import json
import re
import sys
from typing import IO, Any

import click

from .._message import Message

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


def write_csv(out: IO[str], rows: list[dict[str, Any]], columns: list[str]) -> None:
    terminal = is_terminal(out)
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
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


def show_message(m: Message) -> None:
    who = click.style(f"{safe(m.role)}:", bold=True)
    if m.interrupted:
        body = m.content + ("\n\n" if m.content else "")
        rest = m.display_content[len(body) :]
        click.echo(f"{who} {safe(body)}" + click.style(safe(rest), fg="yellow"))
    elif m.live:
        click.echo(f"{who} {safe(m.content)}" + click.style("  [still generating...]", fg="cyan"))
    else:
        click.echo(f"{who} {safe(m.content)}")
