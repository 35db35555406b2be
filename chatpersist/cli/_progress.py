"""Progress of long jobs (an export, a migration, a journal replay) on stderr.

Shown only when stderr is a terminal, so scripts, pipes and captured output get
exactly what they got before. With `rich` installed (`chatpersist[ops]`) it is a
rich progress bar; without it, one line of plain text rewritten in place.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from ._output import is_terminal, safe

#: `tick(done, total)`: how far a job is (total None: not known, a spinner).
Tick = Callable[[int, int | None], None]


def _quiet(done: int, total: int | None) -> None:
    return None


def progress_shown(also_stdout: bool = False) -> bool:
    """Whether progress goes to stderr: when it is a terminal (and, with `also_stdout`,
    when stdout is not that terminal too: data shown there would be garbled)."""
    if not is_terminal(sys.stderr):
        return False
    return not (also_stdout and is_terminal(sys.stdout))


@contextmanager
def progress(label: str, *, show: bool | None = None) -> Iterator[Tick]:
    """A progress line for a job: `with progress("replaying") as tick: ... tick(n, total)`.
    Nothing is shown unless stderr is a terminal (or `show` says otherwise)."""
    if not (progress_shown() if show is None else show):
        yield _quiet
        return
    try:
        import rich.progress  # noqa: F401
    except ImportError:
        with _plain(label) as tick:
            yield tick
        return
    with _rich(label) as tick:
        yield tick


@contextmanager
def _rich(label: str) -> Iterator[Tick]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class Count(MofNCompleteColumn):
        """done/total, for a job that has told its total (else nothing)."""

        def render(self, task: Task) -> Text:
            return super().render(task) if task.fields.get("counted") else Text("")

    console = Console(file=sys.stderr)
    columns: list[Any] = [
        SpinnerColumn(finished_text="✓"),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        Count(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(safe(label), total=None, counted=False)

        def tick(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total, counted=total is not None)

        yield tick
        # Done: a full bar (a job without a count: of one step).
        state = bar.tasks[0]
        total = 1 if state.total is None else state.total
        bar.update(task, total=total, completed=total)


@contextmanager
def _plain(label: str) -> Iterator[Tick]:
    """`label  done/total  elapsed`, rewritten in place every 0.2 s by a thread."""
    shown: dict[str, int | None] = {"done": 0, "total": None}
    started = time.monotonic()
    stop = threading.Event()
    label = safe(label)

    def line() -> str:
        count = ""
        if shown["total"] is not None:
            count = f"  {shown['done']}/{shown['total']}"
        elif shown["done"]:
            count = f"  {shown['done']}"
        return f"\r{label}{count}  {time.monotonic() - started:.1f} s"

    def draw() -> None:
        while not stop.wait(0.2):
            click.echo(line(), nl=False, err=True)

    def tick(done: int, total: int | None) -> None:
        shown["done"], shown["total"] = done, total

    thread = threading.Thread(target=draw, name="chatpersist-progress", daemon=True)
    thread.start()
    ok = False
    try:
        yield tick
        ok = True
    finally:
        stop.set()
        thread.join()
        click.echo(line() + ("  done" if ok else ""), err=True)
