"""`chatpersist top`: the answers being written now, refreshed in place.

The snapshot is `_activity.snapshot` (computed in SQL); this module only shows it:
with `rich` on a terminal (`chatpersist[ops]`), as plain lines otherwise (a pipe,
`--once`, or rich not installed), and as JSON with `--json`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click

from .._activity import ActiveAnswer, Activity, InterruptedAnswer, snapshot
from .._store import ChatStore
from ._output import is_terminal, safe, to_json

ANSWER_COLUMNS = ("session", "message", "model", "age", "length", "rate", "state")
CUT_COLUMNS = ("session", "message", "model", "reason", "length", "ended")
#: Columns aligned right (numbers).
_NUMERIC = frozenset({"age", "length", "rate", "ended"})


def duration(seconds: float) -> str:
    """A duration as top shows it: 7s, 2m05s, 1h02m, 3d04h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def answer_cells(a: ActiveAnswer) -> list[str]:
    return [
        safe(a.session_id), safe(a.message_id), safe(a.model or "-"), duration(a.age),
        str(a.length), f"{a.rate:.0f}/s", a.state,
    ]  # fmt: skip


def cut_cells(i: InterruptedAnswer) -> list[str]:
    return [
        safe(i.session_id), safe(i.message_id), safe(i.model or "-"), safe(i.reason),
        str(i.length), f"{duration(i.ago)} ago",
    ]  # fmt: skip


def summary(act: Activity) -> str:
    t = act.totals
    return (
        f"{act.at:%Y-%m-%d %H:%M:%S} UTC   live {t.live}   stalled {t.stalled}   "
        + (f"recovering {t.recovering}   " if t.recovering else "")
        + f"interrupted (1 h) {t.interrupted_last_hour}   complete (1 h) {t.complete_last_hour}"
    )


def _titles(act: Activity) -> tuple[str, str]:
    t = act.totals
    writing = t.live + t.stalled
    more = f", {writing - len(act.answers)} more" if writing > len(act.answers) else ""
    return (
        f"writing now ({writing}{more}; stalled: nothing written for "
        f"{act.stalled_after:g} s)",
        "last interrupted",
    )


def plain_lines(act: Activity) -> list[str]:
    """The snapshot as plain text lines (no styles, control characters escaped)."""
    writing, cut = _titles(act)
    lines = [summary(act), "", writing]
    lines += _table(ANSWER_COLUMNS, [answer_cells(a) for a in act.answers])
    lines += ["", cut]
    lines += _table(CUT_COLUMNS, [cut_cells(i) for i in act.interrupted])
    return lines


def _table(columns: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    if not rows:
        return ["  (none)"]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]

    def line(cells: list[str] | tuple[str, ...]) -> str:
        out = [
            v.rjust(w) if c in _NUMERIC else v.ljust(w)
            for c, v, w in zip(columns, cells, widths, strict=True)
        ]
        return ("  " + "  ".join(out)).rstrip()

    return [line(columns), *(line(r) for r in rows)]


def rich_view(act: Activity) -> Any:
    """The snapshot as a rich renderable (cells are `Text`: no markup is read from
    the database's values)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def table(
        title: str, columns: tuple[str, ...], rows: list[list[str]], style: Callable[[str], str]
    ) -> Any:
        if not rows:
            return Group(Text(title, style="bold"), Text("  (none)", style="dim"))
        t = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD)
        for c in columns:
            t.add_column(c, justify="right" if c in _NUMERIC else "left", no_wrap=True)
        for r in rows:
            t.add_row(*(Text(v, style=style(v) if c in ("state", "reason") else "")
                        for c, v in zip(columns, r, strict=True)))  # fmt: skip
        return t

    def state_style(v: str) -> str:
        return "green" if v == "live" else "yellow"

    writing, cut = _titles(act)
    return Group(
        Text(summary(act), style="bold"),
        Text(""),
        table(writing, ANSWER_COLUMNS, [answer_cells(a) for a in act.answers], state_style),
        Text(""),
        table(cut, CUT_COLUMNS, [cut_cells(i) for i in act.interrupted], lambda v: "red"),
        Text("Ctrl-C to quit", style="dim"),
    )


def run_top(
    store: ChatStore,
    *,
    as_json: bool,
    once: bool,
    interval: float,
    limit: int,
    stalled_after: float | None,
    count: int | None,
) -> None:
    """One snapshot (`as_json`, `once`), or refreshed every `interval` seconds until
    Ctrl-C (or `count` times)."""

    last: list[Activity] = []

    def take() -> Activity:
        # The last snapshot too: a silent draft stays stalled across its heartbeats.
        act = snapshot(
            store, limit=limit, stalled_after=stalled_after, previous=last[0] if last else None
        )
        last[:] = [act]
        return act

    if as_json:
        click.echo(to_json(take().to_dict(), indent=2))
        return
    if once:
        click.echo("\n".join(plain_lines(take())))
        return
    try:
        if not is_terminal(sys.stdout):
            _batch(take, interval, count)
            return
        try:
            import rich.live  # noqa: F401
        except ImportError:
            _redraw(take, interval, count)
        else:
            _live(take, interval, count)
    except KeyboardInterrupt:
        return  # Ctrl-C is how top ends


def _batch(take: Callable[[], Activity], interval: float, count: int | None) -> None:
    """Not a terminal: a snapshot after another, a blank line between them."""
    n = 0
    while True:
        if n:
            click.echo()
        click.echo("\n".join(plain_lines(take())))
        sys.stdout.flush()
        n += 1
        if count is not None and n >= count:
            return
        time.sleep(interval)


def _redraw(take: Callable[[], Activity], interval: float, count: int | None) -> None:
    """A terminal without rich: the screen cleared (click), then the plain snapshot."""
    n = 0
    while True:
        act = take()
        click.clear()
        click.echo("\n".join([*plain_lines(act), "", "Ctrl-C to quit"]))
        n += 1
        if count is not None and n >= count:
            return
        time.sleep(interval)


def _live(take: Callable[[], Activity], interval: float, count: int | None) -> None:
    """A terminal with rich: the view redrawn in place each refresh."""
    from rich.console import Console
    from rich.live import Live

    with Live(
        rich_view(take()), console=Console(), auto_refresh=False, vertical_overflow="ellipsis"
    ) as live:
        live.refresh()
        n = 1
        while count is None or n < count:
            time.sleep(interval)
            live.update(rich_view(take()), refresh=True)
            n += 1
