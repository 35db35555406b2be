"""The `chatpersist` command: a thin layer over the library."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from ._errors import (
    ChatPersistError,
    JournalLocked,
    NotAJournal,
    NotMigrated,
    UnknownMessage,
    UnknownSession,
)
from ._message import Message
from ._retrofit import MessagesTable
from ._store import ChatStore

# Exit codes (documented in the README and in `chatpersist --help`).
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_MIGRATED = 3
EXIT_NOT_FOUND = 4
EXIT_PROVIDER = 5
EXIT_JOURNAL = 6

F = TypeVar("F", bound=Callable[..., Any])


def default_db() -> str:
    env = os.environ.get("CHATPERSIST_DB")
    if env:
        return env
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    path = base / "chatpersist" / "chat.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def db_option(f: F) -> F:
    return click.option(
        "--db",
        "db",
        default=None,
        metavar="URL",
        help="SQLAlchemy database URL (default: $CHATPERSIST_DB, "
        "else a SQLite file in your data directory).",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")(f)


def csv_option(f: F) -> F:
    return click.option("--csv", "as_csv", is_flag=True, help="CSV for spreadsheets.")(f)


def provider_options(f: F) -> F:
    for option in reversed(
        [
            click.option(
                "--provider",
                type=click.Choice(["openai", "anthropic", "fake"]),
                default="openai",
                show_default=True,
                help="openai: any OpenAI-compatible server; fake: the built-in offline model.",
            ),
            click.option("--base-url", default=None, help="The provider's base URL."),
            click.option("--model", default=None, help="Model name."),
            click.option(
                "--api-key",
                default=None,
                help="API key (default: $OPENAI_API_KEY or $ANTHROPIC_API_KEY).",
            ),
        ]
    ):
        f = option(f)
    return f


@contextmanager
def open_store(
    db: str | None, table: str | None = None, schema: str | None = None
) -> Iterator[ChatStore]:
    """A store for one command; bad URLs and table names are usage errors, not tracebacks."""
    try:
        target = MessagesTable(table, schema=schema) if table else None
        store = ChatStore(db or default_db(), table=target)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        yield store
    finally:
        store.close()


@contextmanager
def open_provider(
    provider: str, base_url: str | None, model: str | None, api_key: str | None
) -> Iterator[Any]:
    from .providers import Anthropic, FakeModelServer, OpenAICompatible

    if provider == "fake":
        with FakeModelServer(delay=0.02) as server:
            yield OpenAICompatible(server.base_url, model or "fake-model")
        return
    if provider == "anthropic":
        yield Anthropic(
            model or "claude-sonnet-4-5",
            api_key=api_key or os.environ.get("ANTHROPIC_API_KEY"),
            base_url=base_url or "https://api.anthropic.com",
        )
        return
    if not base_url:
        raise click.UsageError("--base-url is required with --provider openai")
    if not model:
        raise click.UsageError("--model is required with --provider openai")
    yield OpenAICompatible(base_url, model, api_key=api_key or os.environ.get("OPENAI_API_KEY"))


def parse_since(value: str | None) -> timedelta | None:
    if value is None:
        return None
    m = re.fullmatch(r"(\d+)\s*([smhdw])", value.strip())
    if not m:
        raise click.BadParameter("use a number and a unit: 30m, 12h, 7d, 2w", param_hint="--since")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m[2]]
    return timedelta(**{unit: int(m[1])})


def emit_rows(rows: list[dict[str, Any]], as_json: bool, as_csv: bool, columns: list[str]) -> None:
    """One listing, as JSON, CSV, or aligned plain text."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
    elif as_csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(buf.getvalue(), nl=False)
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
    return str(value).replace("\n", " ")


def show_message(m: Message) -> None:
    who = click.style(f"{m.role}:", bold=True)
    if m.interrupted:
        body = m.content + ("\n\n" if m.content else "")
        click.echo(f"{who} {body}" + click.style(m.display_content[len(body) :], fg="yellow"))
    elif m.live:
        click.echo(f"{who} {m.content}" + click.style("  [still generating...]", fg="cyan"))
    else:
        click.echo(f"{who} {m.content}")


@click.group(
    epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 database not migrated, "
    "4 unknown session or message, 5 the provider refused."
)
@click.version_option(package_name="chatpersist")
def cli() -> None:
    """Keep streamed chat answers safe in your database."""


@cli.command()
@db_option
@click.option("--table", default=None, help="Add the draft columns to this existing table.")
@click.option("--schema", default=None, help="The table's schema (PostgreSQL).")
def migrate(db: str | None, table: str | None, schema: str | None) -> None:
    """Create or upgrade chatpersist's tables (or retrofit an app's messages table).

    A migration a crash left half done is finished; a line on stderr says so."""
    import logging

    class Echo(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            click.echo(record.getMessage(), err=True)

    log = logging.getLogger("chatpersist")
    echo = Echo(logging.WARNING)
    log.addHandler(echo)
    try:
        with open_store(db, table, schema) as store:
            store.migrate()
    finally:
        log.removeHandler(echo)
    click.echo(f"table {table!r} has its draft columns" if table else "database is up to date")


@cli.command()
@db_option
@json_option
@csv_option
@click.option("--limit", type=int, default=None)
def sessions(db: str | None, as_json: bool, as_csv: bool, limit: int | None) -> None:
    """List sessions, most recent first."""
    with open_store(db) as store:
        rows = [s.to_dict() for s in store.sessions(limit=limit)]
    cols = ["id", "title", "updated_at", "messages", "interrupted"]
    emit_rows(rows, as_json, as_csv, cols)


@cli.command()
@click.argument("session_id")
@db_option
@json_option
def history(session_id: str, db: str | None, as_json: bool) -> None:
    """Show a session's messages; interrupted answers are marked."""
    with open_store(db) as store:
        messages = store.history(session_id)
    if as_json:
        click.echo(json.dumps([m.to_dict() for m in messages], indent=2, ensure_ascii=False))
        return
    for m in messages:
        show_message(m)


AUDIT_COLUMNS = ["session_id", "id", "length", "age", "reason", "model", "created_at"]


def audit_rows(
    store: ChatStore, since: str | None, session: str | None, reason: str | None
) -> list[dict[str, Any]]:
    now = store.clock.now()
    return [
        {
            "session_id": m.session_id,
            "id": m.id,
            "length": len(m.content),
            "age": _age(now - m.created_at),
            "reason": m.finish_reason or "lease_expired",
            "model": m.model,
            "created_at": m.created_at.isoformat(),
            "error": m.error,
            "content": m.content,
        }
        for m in store.interrupted(since=parse_since(since), session_id=session, reason=reason)
    ]


def _age(delta: timedelta) -> str:
    s = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


@cli.group(invoke_without_command=True)
@db_option
@click.option("--since", default=None, help="Only newer than this: 30m, 12h, 7d...")
@click.option("--session", default=None, help="Only this session.")
@click.option("--reason", default=None, help="Only this finish_reason (e.g. disconnected).")
@json_option
@csv_option
@click.pass_context
def audit(
    ctx: click.Context, db: str | None, since: str | None, session: str | None,
    reason: str | None, as_json: bool, as_csv: bool,
) -> None:  # fmt: skip
    """List interrupted answers (see also: audit stats, audit export)."""
    if ctx.invoked_subcommand is not None:
        return
    with open_store(db) as store:
        rows = audit_rows(store, since, session, reason)
    emit_rows(rows, as_json, as_csv, AUDIT_COLUMNS)


@audit.command("stats")
@db_option
@click.option("--since", default=None, help="Only newer than this: 30m, 12h, 7d...")
@json_option
@csv_option
def audit_stats(db: str | None, since: str | None, as_json: bool, as_csv: bool) -> None:
    """Interruption rate by day, model and reason."""
    with open_store(db) as store:
        rows = [r.to_dict() for r in store.audit_stats(since=parse_since(since))]
    emit_rows(rows, as_json, as_csv, ["day", "model", "reason", "answers", "interrupted", "rate"])


@audit.command("export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@db_option
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option("--since", default=None)
@click.option("--session", default=None)
@click.option("--reason", default=None)
def audit_export(
    file: str, db: str | None, fmt: str, since: str | None, session: str | None, reason: str | None
) -> None:
    """Write interrupted answers, with their text, to FILE (- for stdout)."""
    with open_store(db) as store:
        rows = audit_rows(store, since, session, reason)
    with open(file, "w", encoding="utf-8", newline="") if file != "-" else _stdout() as out:
        if fmt == "jsonl":
            for r in rows:
                out.write(json.dumps(r, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(out, fieldnames=[*AUDIT_COLUMNS, "error", "content"])
            writer.writeheader()
            writer.writerows(rows)
    if file != "-":
        click.echo(f"{len(rows)} interrupted answers written to {file}", err=True)


@contextmanager
def _stdout() -> Iterator[Any]:
    yield sys.stdout


@cli.command()
@db_option
@json_option
def sweep(db: str | None, as_json: bool) -> None:
    """Mark drafts whose writer is gone as abandoned (safe to run from cron)."""
    with open_store(db) as store:
        n = store.sweep()
    click.echo(json.dumps({"abandoned": n}) if as_json else f"{n} abandoned drafts marked")


@cli.command()
@db_option
@click.option("--journal", type=click.Path(dir_okay=False), required=True)
def recover(db: str | None, journal: str) -> None:
    """Replay a journal of drafts written while the database was away."""
    with open_store(db) as store:
        n = store.recover_from(journal)
    click.echo(f"{n} messages recovered from {journal}")


@cli.command("continue")
@click.argument("message_id")
@db_option
@provider_options
def continue_(message_id: str, db: str | None, **provider: Any) -> None:
    """Continue an interrupted answer; the text is appended to the same message."""
    with open_store(db) as store, open_provider(**provider) as p:
        m = store.get_message(message_id)
        click.echo(m.content, nl=False)
        final = store.continue_answer(message_id, p, on_text=_stream_out)
    click.echo()
    click.echo(f"[message {final.id} is {final.status}]", err=True)


@cli.command()
@click.argument("message_id")
@db_option
@provider_options
def regenerate(message_id: str, db: str | None, **provider: Any) -> None:
    """Answer again in place of MESSAGE_ID."""
    with open_store(db) as store, open_provider(**provider) as p:
        final = store.regenerate(message_id, p, on_text=_stream_out)
    click.echo()
    click.echo(f"[message {final.id} is {final.status}]", err=True)


def _stream_out(text: str) -> None:
    click.echo(text, nl=False)
    sys.stdout.flush()


@cli.command()
@db_option
@provider_options
@click.option("--session", "session_id", default=None, help="Resume this session.")
def chat(db: str | None, session_id: str | None, **provider: Any) -> None:
    """Chat interactively. Ctrl-C during an answer stops it and keeps the partial text;
    Ctrl-C or Ctrl-D at the prompt exits."""
    from ._chat import run_chat

    with open_store(db) as store, open_provider(**provider) as p:
        run_chat(store, p, session_id)


@cli.command()
@db_option
@click.option("--fast", is_flag=True, help="Stream without pauses.")
def demo(db: str | None, fast: bool) -> None:
    """Offline demo: a client leaves mid-answer, the partial answer survives and is
    continued."""
    from ._demo import run_demo

    if db:
        run_demo(db, fast=fast)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run_demo(f"sqlite:///{Path(tmp) / 'demo.db'}", fast=fast)


@cli.command("fake-server")
@click.option("--port", type=int, default=8123, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def fake_server(port: int, host: str) -> None:
    """Run the built-in fake OpenAI-compatible model until Ctrl-C (point any OpenAI
    client at the URL it prints)."""
    from .providers import FakeModelServer

    try:
        server = FakeModelServer(host=host, port=port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    click.echo(f"fake model {server.model!r} at base URL {server.base_url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


def main() -> None:
    from .providers import ProviderError

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else EXIT_ERROR)
    except NotMigrated as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_NOT_MIGRATED)
    except (UnknownSession, UnknownMessage) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    except ProviderError as exc:
        click.echo(f"error: the provider refused: {exc}", err=True)
        sys.exit(EXIT_PROVIDER)
    except (NotAJournal, JournalLocked) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_JOURNAL)
    except ChatPersistError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
