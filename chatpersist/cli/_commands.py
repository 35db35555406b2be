"""The `chatpersist` commands: each a thin layer over one library call."""

from __future__ import annotations

import inspect
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from .._message import Message
from .._store import ChatStore
from ..recovery import continue_answer
from ..recovery import regenerate as regenerate_answer
from ._options import (
    EXIT_INTERRUPTED,
    ChatPersistGroup,
    CliError,
    csv_option,
    database_errors,
    db_option,
    json_option,
    open_provider,
    open_store,
    parse_since,
    provider_options,
    reasoning_option,
    store_options,
    usage_error,
    with_group_options,
)
from ._output import emit_rows, safe, show_message, to_json, write_csv
from ._progress import Tick, progress, progress_shown
from ._recover_worker import recover_worker

# -- commands ----------------------------------------------------------------------


@click.group(
    cls=ChatPersistGroup,
    epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 database not migrated, "
    "4 unknown session or message, 5 the provider refused, 6 journal not usable, "
    "130 interrupted.",
)
@click.version_option(package_name="chatpersist")
def cli() -> None:
    """Keep streamed chat answers safe in your database."""


@cli.command()
@store_options
def migrate(db: str | None, table: str | None, schema: str | None) -> None:
    """Create or upgrade chatpersist's tables (or retrofit an app's messages table).

    A migration a crash left half done is finished; a line on stderr says so."""
    import logging

    class Echo(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            click.echo(safe(record.getMessage()), err=True)

    log = logging.getLogger("chatpersist")
    echo = Echo(logging.WARNING)
    log.addHandler(echo)
    try:
        with open_store(db, table, schema) as store:
            # No progress hook in a migration: a spinner and the time it has taken.
            with progress("migrating" + (f" table {store.table.name}" if store.table else "")):
                store.migrate()
            target = store.table
    finally:
        log.removeHandler(echo)
    click.echo(
        f"table {target.name!r} has its draft columns" if target else "database is up to date"
    )


@cli.command()
@store_options
@json_option
@csv_option
@click.option("--limit", type=click.IntRange(min=0), default=None)
def sessions(
    db: str | None, table: str | None, schema: str | None, as_json: bool, as_csv: bool,
    limit: int | None,
) -> None:  # fmt: skip
    """List sessions, most recent first."""
    with open_store(db, table, schema) as store:
        rows = [s.to_dict() for s in store.sessions(limit=limit)]
    cols = ["id", "title", "updated_at", "messages", "interrupted"]
    emit_rows(rows, as_json, as_csv, cols)


@cli.command()
@click.argument("session_id")
@store_options
@json_option
@reasoning_option
def history(
    session_id: str, db: str | None, table: str | None, schema: str | None, as_json: bool,
    reasoning: str | None,
) -> None:  # fmt: skip
    """Show a session's messages; interrupted answers are marked. Reasoning, tool calls
    (→ name(arguments)) and tool results (← result) are shown where they came."""
    with open_store(db, table, schema) as store:
        messages = store.history(session_id)
    if as_json:
        click.echo(to_json([m.to_dict() for m in messages], indent=2))
        return
    for m in messages:
        show_message(m, reasoning or "folded")


AUDIT_COLUMNS = ["session_id", "id", "length", "age", "reason", "model", "created_at"]


def audit_rows(
    store: ChatStore, since: timedelta | None, session: str | None, reason: str | None
) -> list[dict[str, Any]]:
    now = store.clock.now()
    return [
        audit_row(m, now) for m in store.interrupted(since=since, session_id=session, reason=reason)
    ]


def audit_row(m: Message, now: datetime) -> dict[str, Any]:
    """An interrupted answer as `audit` lists it (JSON and JSON Lines carry its parts)."""
    return {
        "session_id": m.session_id,
        "id": m.id,
        "length": len(m.content),
        "age": _age(now - m.created_at),
        "reason": m.finish_reason or "lease_expired",
        "model": m.model,
        "created_at": m.created_at.isoformat(),
        "error": m.error,
        "content": m.content,
        "parts": [p.to_dict() for p in m.parts],
    }


def _age(delta: timedelta) -> str:
    s = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


@cli.group(invoke_without_command=True)
@store_options
@click.option("--since", default=None, help="Only newer than this: 30m, 12h, 7d...")
@click.option("--session", default=None, help="Only this session.")
@click.option("--reason", default=None, help="Only this finish_reason (e.g. disconnected).")
@json_option
@csv_option
@click.option(
    "--show", is_flag=True, help="Then show each answer, its reasoning and tool calls too."
)
@reasoning_option
@click.pass_context
def audit(
    ctx: click.Context, db: str | None, table: str | None, schema: str | None,
    since: str | None, session: str | None, reason: str | None, as_json: bool, as_csv: bool,
    show: bool, reasoning: str | None,
) -> None:  # fmt: skip
    """List interrupted answers (see also: audit stats, audit export)."""
    if ctx.invoked_subcommand is not None:
        return
    delta = parse_since(since)
    with open_store(db, table, schema) as store:
        now = store.clock.now()
        found = store.interrupted(since=delta, session_id=session, reason=reason)
    rows = [audit_row(m, now) for m in found]
    emit_rows(rows, as_json, as_csv, AUDIT_COLUMNS)
    if show and not (as_json or as_csv):
        for m, row in zip(found, rows, strict=True):
            click.echo()
            head = f"[{row['id']} in session {row['session_id']}: {row['reason']}, {row['age']}]"
            click.echo(click.style(safe(head), bold=True))
            show_message(m, reasoning or "folded")


@audit.command("stats")
@store_options
@click.option("--since", default=None, help="Only newer than this: 30m, 12h, 7d...")
@json_option
@csv_option
@click.pass_context
def audit_stats(
    ctx: click.Context, db: str | None, table: str | None, schema: str | None,
    since: str | None, as_json: bool, as_csv: bool,
) -> None:  # fmt: skip
    """Interruption rate by day, model and reason."""
    o = with_group_options(
        ctx, db=db, table=table, schema=schema, since=since, as_json=as_json, as_csv=as_csv
    )
    delta = parse_since(o["since"])
    with open_store(o["db"], o["table"], o["schema"]) as store:
        rows = [r.to_dict() for r in store.audit_stats(since=delta)]
    cols = ["day", "model", "reason", "answers", "interrupted", "rate"]
    emit_rows(rows, o["as_json"], o["as_csv"], cols)


@audit.command("export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@store_options
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option("--since", default=None)
@click.option("--session", default=None)
@click.option("--reason", default=None)
@click.pass_context
def audit_export(
    ctx: click.Context, file: str, db: str | None, table: str | None, schema: str | None,
    fmt: str, since: str | None, session: str | None, reason: str | None,
) -> None:  # fmt: skip
    """Write interrupted answers, with their text, to FILE (- for stdout).

    In CSV, text starting with =, +, -, @, tab or carriage return gets a leading
    single quote, so that no spreadsheet runs it as a formula."""
    o = with_group_options(
        ctx, db=db, table=table, schema=schema, since=since, session=session, reason=reason
    )
    delta = parse_since(o["since"])
    # On stderr when it is a terminal, unless the export goes to that terminal too.
    shown = progress_shown(also_stdout=file == "-")
    with open_store(o["db"], o["table"], o["schema"]) as store:
        with progress("reading interrupted answers", show=shown):
            rows = audit_rows(store, delta, o["session"], o["reason"])
    try:
        out = open(file, "w", encoding="utf-8", newline="") if file != "-" else None
    except OSError as exc:
        raise CliError(f"cannot write {file!r}: {exc.strerror}") from exc
    stream = out or sys.stdout
    try:
        with progress(f"writing {file}", show=shown) as tick:
            if fmt == "jsonl":
                for n, r in enumerate(rows):
                    if n % 100 == 0:
                        tick(n, len(rows))
                    stream.write(to_json(r) + "\n")
            else:
                write_csv(stream, rows, [*AUDIT_COLUMNS, "error", "content"], tick)
            tick(len(rows), len(rows))
    finally:
        if out is not None:
            out.close()
    if file != "-":
        click.echo(f"{len(rows)} interrupted answers written to {safe(file)}", err=True)


@cli.command()
@store_options
@json_option
@click.option(
    "--delete-empty", is_flag=True,
    help="Also delete abandoned drafts that hold nothing (no text, no parts).",
)  # fmt: skip
@click.option(
    "--older-than", "older_than", default=None, metavar="AGE",
    help="With --delete-empty: only those last written more than AGE ago (30d, 12h...).",
)  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Say what would be done; change nothing.")
def sweep(
    db: str | None, table: str | None, schema: str | None, as_json: bool,
    delete_empty: bool, older_than: str | None, dry_run: bool,
) -> None:  # fmt: skip
    """Mark drafts whose writer is gone as abandoned (safe to run from cron); with
    --delete-empty, delete the abandoned ones that hold nothing."""
    age = parse_since(older_than, "--older-than")
    if age is not None and not delete_empty:
        raise usage_error("--older-than applies to --delete-empty: give both")
    with open_store(db, table, schema) as store:
        if not (delete_empty or dry_run):
            n = store.sweep()
            click.echo(to_json({"abandoned": n}) if as_json else f"{n} abandoned drafts marked")
            return
        report = store.clean(age, delete_empty=delete_empty, dry_run=dry_run)
    if as_json:
        click.echo(to_json(report.to_dict()))
        return
    would = "would be " if dry_run else ""
    click.echo(f"{report.marked} abandoned drafts {would}marked")
    if delete_empty:
        click.echo(f"{report.deleted} empty abandoned drafts {would}deleted")


@cli.command()
@store_options
@json_option
@click.option("--once", is_flag=True, help="Print one plain snapshot and exit.")
@click.option(
    "--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
    help="Seconds between refreshes.",
)  # fmt: skip
@click.option(
    "--limit", type=click.IntRange(min=0), default=20, show_default=True,
    help="Answers listed in each part.",
)  # fmt: skip
@click.option(
    "--stalled-after", type=click.FloatRange(min=0, min_open=True), default=None,
    metavar="SECONDS",
    help="A draft with no write for this long is stalled (default: 4, twice the flush "
    "interval).",
)  # fmt: skip
@click.option(
    "--count", type=click.IntRange(min=1), default=None, help="Refresh this many times, then exit."
)
def top(
    db: str | None, table: str | None, schema: str | None, as_json: bool, once: bool,
    interval: float, limit: int, stalled_after: float | None, count: int | None,
) -> None:  # fmt: skip
    """Watch the answers being written now: live and stalled drafts, the last
    interrupted answers, and the totals of the last hour. Refreshed every second
    until Ctrl-C; plain lines when not a terminal."""
    from ._top import run_top

    with open_store(db, table, schema) as store:
        run_top(
            store, as_json=as_json, once=once, interval=interval, limit=limit,
            stalled_after=stalled_after, count=count,
        )  # fmt: skip


@cli.command()
@store_options
@click.option("--journal", type=click.Path(dir_okay=False, exists=True), required=True)
def recover(db: str | None, table: str | None, schema: str | None, journal: str) -> None:
    """Replay a journal of drafts written while the database was away."""
    with open_store(db, table, schema) as store, progress("replaying the journal") as tick:
        n = _recover(store, journal, tick)
    click.echo(f"{n} messages recovered from {safe(journal)}")


def _recover(store: ChatStore, journal: str, tick: Tick) -> int:
    """`store.recover_from(journal)`, with its progress where the store reports it."""
    recover_from: Callable[..., int] = store.recover_from
    if "progress" in inspect.signature(recover_from).parameters:
        return recover_from(journal, progress=tick)
    return recover_from(journal)


@cli.command("continue")
@click.argument("message_id")
@store_options
@provider_options
def continue_(
    message_id: str, db: str | None, table: str | None, schema: str | None, **provider: Any
) -> None:
    """Continue an interrupted answer; the text is appended to the same message."""
    with open_store(db, table, schema) as store, open_provider(**provider) as p:
        m = store.get_message(message_id)
        click.echo(safe(m.content), nl=False)
        try:
            final = continue_answer(store, message_id, p, on_text=_stream_out)
        finally:
            click.echo()
    click.echo(safe(f"[message {final.id} is {final.status}]"), err=True)


@cli.command()
@click.argument("message_id")
@store_options
@provider_options
def regenerate(
    message_id: str, db: str | None, table: str | None, schema: str | None, **provider: Any
) -> None:
    """Answer again in place of MESSAGE_ID."""
    with open_store(db, table, schema) as store, open_provider(**provider) as p:
        try:
            final = regenerate_answer(store, message_id, p, on_text=_stream_out)
        finally:
            click.echo()
    click.echo(safe(f"[message {final.id} is {final.status}]"), err=True)


def _stream_out(text: str) -> None:
    click.echo(safe(text), nl=False)
    sys.stdout.flush()


@cli.command()
@store_options
@provider_options
@click.option("--session", "session_id", default=None, help="Resume this session.")
def chat(
    db: str | None, table: str | None, schema: str | None, session_id: str | None,
    **provider: Any,
) -> None:  # fmt: skip
    """Chat interactively. Ctrl-C during an answer stops it and keeps the partial text;
    Ctrl-C or Ctrl-D at the prompt exits."""
    from ._chat import run_chat

    if table is not None and session_id is None:
        raise usage_error("--session is required with --table: your app creates its sessions")
    with open_store(db, table, schema) as store, open_provider(**provider) as p:
        run_chat(store, p, session_id)


@cli.command()
@db_option
@click.option("--fast", is_flag=True, help="Stream without pauses.")
def demo(db: str | None, fast: bool) -> None:
    """Offline demo: a client leaves mid-answer, the partial answer survives and is
    continued."""
    from ._demo import run_demo

    if db is not None:
        with open_store(db):  # a bad URL is one line, before the demo starts
            pass
        with database_errors(db):
            run_demo(db, fast=fast)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run_demo(f"sqlite:///{Path(tmp) / 'demo.db'}", fast=fast)


@cli.command("fake-server")
@click.option("--port", type=click.IntRange(0, 65535), default=8123, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def fake_server(port: int, host: str) -> None:
    """Run the built-in fake OpenAI-compatible model until Ctrl-C (point any OpenAI
    client at the URL it prints)."""
    from ..providers import FakeModelServer

    try:
        server = FakeModelServer(host=host, port=port)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    click.echo(f"fake model {server.model!r} at base URL {server.base_url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


cli.add_command(recover_worker)


def main() -> None:
    """The `chatpersist` entry point: `cli`, with 130 for an interrupt."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
