"""The `chatpersist` command: a thin layer over the library."""

from __future__ import annotations

import csv
import importlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import click
import sqlalchemy as sa

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
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


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


class CliError(click.ClickException):
    """One line on stderr; exit 1 (the subclasses: the other documented codes)."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {safe(self.format_message())}", file=file, err=file is None)


class CliUsageError(CliError):
    exit_code = EXIT_USAGE


class NotMigratedError(CliError):
    exit_code = EXIT_NOT_MIGRATED


class NotFoundError(CliError):
    exit_code = EXIT_NOT_FOUND


class ProviderRefused(CliError):
    exit_code = EXIT_PROVIDER


class JournalError(CliError):
    exit_code = EXIT_JOURNAL


def usage_error(message: str) -> CliError:
    return CliUsageError(message)


def library_error(exc: Exception) -> CliError | None:
    """The exit code and message for an error the library raises on purpose."""
    from .providers import ProviderError

    if isinstance(exc, NotMigrated):
        return NotMigratedError(str(exc))
    if isinstance(exc, UnknownSession | UnknownMessage):
        return NotFoundError(str(exc))
    if isinstance(exc, ProviderError):
        return ProviderRefused(f"the provider refused: {exc}")
    if isinstance(exc, NotAJournal | JournalLocked):
        return JournalError(str(exc))
    if isinstance(exc, ChatPersistError):
        return CliError(str(exc))
    if isinstance(exc, ValueError):  # the library's checks of an argument (an id...)
        return usage_error(str(exc))
    return None


class ChatPersistGroup(click.Group):
    """Turns the library's errors into one-line messages and exit codes, for the
    `chatpersist` entry point and for `CliRunner` alike."""

    def invoke(self, ctx: click.Context) -> Any:
        from .providers import ProviderError

        try:
            return super().invoke(ctx)
        except (ChatPersistError, ProviderError, ValueError) as exc:
            mapped = library_error(exc)
            if mapped is None:
                raise
            raise mapped from exc


def _shown_url(url: str) -> str:
    try:
        return repr(sa.make_url(url).render_as_string(hide_password=True))
    except Exception:
        return repr(url)


def _first_line(exc: BaseException) -> str:
    """The driver's own message, without SQLAlchemy's SQL and background link."""
    orig = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        text = f"{args[1]} ({args[0]})"  # MySQL drivers: (code, message)
    else:
        text = str(orig)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Unreachable servers, missing files, drivers and tables: one line, exit 1."""
    try:
        yield
    except sa.exc.NoSuchTableError as exc:
        raise CliError(f"no table {str(exc)!r} in the database {_shown_url(url)}") from exc
    except sa.exc.NoSuchModuleError as exc:
        raise CliError(
            f"cannot open the database {_shown_url(url)}: unknown database or driver "
            f"({_first_line(exc)})"
        ) from exc
    except sa.exc.SQLAlchemyError as exc:
        raise CliError(f"cannot use the database {_shown_url(url)}: {_first_line(exc)}") from exc


# -- options -----------------------------------------------------------------------


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


def store_options(f: F) -> F:
    """--db, and --table/--schema for an app's own messages table (retrofit)."""
    f = click.option(
        "--schema",
        default=None,
        help="The schema of a --table given by name (PostgreSQL).",
    )(f)
    f = click.option(
        "--table",
        default=None,
        metavar="NAME|MODULE:ATTR",
        help="Your app's messages table (retrofit): its name (default column names), "
        "or the import path of your MessagesTable, e.g. myapp.db:MESSAGES.",
    )(f)
    return db_option(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")(f)


def csv_option(f: F) -> F:
    return click.option("--csv", "as_csv", is_flag=True, help="CSV for spreadsheets.")(f)


def _check_base_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise usage_error(f"--base-url {value!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise usage_error(f"--base-url {value!r}: give an http:// or https:// URL")
    return value


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
            click.option(
                "--base-url",
                default=None,
                callback=_check_base_url,
                help="The provider's base URL.",
            ),
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


def resolve_table(table: str | None, schema: str | None) -> MessagesTable | None:
    """`--table`: None (chatpersist's own tables), a table name, or `module:attribute`
    naming the app's own `MessagesTable`."""
    if table is None:
        if schema is not None:
            raise usage_error("--schema needs --table")
        return None
    if ":" in table:
        if schema is not None:
            raise usage_error(
                f"--schema cannot be combined with --table {table!r}: "
                "your MessagesTable names its schema"
            )
        return import_table(table)
    try:
        return MessagesTable(table, schema=schema)
    except ValueError as exc:
        hint = "; to name your MessagesTable give module:attribute" if "." in table else ""
        raise usage_error(f"--table: {exc}{hint}") from exc


def import_table(path: str) -> MessagesTable:
    """The `MessagesTable` at `module:attribute`, imported as uvicorn imports an app
    (the current directory is importable)."""
    module_name, _, attr = path.partition(":")
    if not all(p.isidentifier() for p in module_name.split(".")) or not all(
        p.isidentifier() for p in attr.split(".")
    ):
        raise usage_error(
            f"--table {path!r}: an import path is module:attribute, e.g. myapp.db:MESSAGES"
        )
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise usage_error(
                f"--table {path!r}: no module named {exc.name!r} (looked in the current "
                "directory and the Python path)"
            ) from exc
        raise usage_error(
            f"--table {path!r}: importing {module_name!r} failed: ModuleNotFoundError: {exc}"
        ) from exc
    except Exception as exc:  # the app's module itself failed
        raise usage_error(
            f"--table {path!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise usage_error(
                f"--table {path!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not isinstance(obj, MessagesTable):
        raise usage_error(
            f"--table {path!r}: {attr} is a {type(obj).__name__}, "
            "not a chatpersist.retrofit.MessagesTable"
        )
    return obj


@contextmanager
def open_store(
    db: str | None, table: str | None = None, schema: str | None = None
) -> Iterator[ChatStore]:
    """A store for one command. Bad table names are usage errors (exit 2); bad URLs and
    databases that cannot be used are errors (exit 1); neither is a traceback."""
    target = resolve_table(table, schema)
    url = default_db() if db is None else db
    with database_errors(url):
        try:
            store = ChatStore(url, table=target)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        except ImportError as exc:  # the URL's driver is not installed
            raise CliError(
                f"cannot open the database {_shown_url(url)}: its driver is not installed ({exc})"
            ) from exc
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
        raise usage_error(f"--since {value!r}: use a number and a unit: 30m, 12h, 7d, 2w")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m[2]]
    try:
        delta = timedelta(**{unit: int(m[1])})
        datetime.now(UTC) - delta  # noqa: B018 - before the year 1?
    except (OverflowError, ValueError):
        raise usage_error(f"--since {value!r}: too far back") from None
    return delta


def with_group_options(ctx: click.Context, **values: Any) -> dict[str, Any]:
    """A subcommand's options, taking those given to its group (`audit --db X stats`)
    where it has none of its own; a group option it does not take is a usage error."""
    merged = dict(values)
    parent = ctx.parent
    if parent is None or parent.command is None:
        return merged
    for param in parent.command.params:
        name = param.name
        value = parent.params.get(name) if name else None
        if name is None or value is None or value is False:
            continue
        if name not in merged:
            raise usage_error(
                f"{param.opts[0]} does not apply to `{parent.info_name} {ctx.info_name}`"
            )
        if merged[name] is None or merged[name] is False:
            merged[name] = value
    return merged


# -- plain output ------------------------------------------------------------------


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
def history(
    session_id: str, db: str | None, table: str | None, schema: str | None, as_json: bool
) -> None:
    """Show a session's messages; interrupted answers are marked."""
    with open_store(db, table, schema) as store:
        messages = store.history(session_id)
    if as_json:
        click.echo(to_json([m.to_dict() for m in messages], indent=2))
        return
    for m in messages:
        show_message(m)


AUDIT_COLUMNS = ["session_id", "id", "length", "age", "reason", "model", "created_at"]


def audit_rows(
    store: ChatStore, since: timedelta | None, session: str | None, reason: str | None
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
        for m in store.interrupted(since=since, session_id=session, reason=reason)
    ]


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
@click.pass_context
def audit(
    ctx: click.Context, db: str | None, table: str | None, schema: str | None,
    since: str | None, session: str | None, reason: str | None, as_json: bool, as_csv: bool,
) -> None:  # fmt: skip
    """List interrupted answers (see also: audit stats, audit export)."""
    if ctx.invoked_subcommand is not None:
        return
    delta = parse_since(since)
    with open_store(db, table, schema) as store:
        rows = audit_rows(store, delta, session, reason)
    emit_rows(rows, as_json, as_csv, AUDIT_COLUMNS)


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
    with open_store(o["db"], o["table"], o["schema"]) as store:
        rows = audit_rows(store, delta, o["session"], o["reason"])
    try:
        out = open(file, "w", encoding="utf-8", newline="") if file != "-" else None
    except OSError as exc:
        raise CliError(f"cannot write {file!r}: {exc.strerror}") from exc
    stream = out or sys.stdout
    try:
        if fmt == "jsonl":
            for r in rows:
                stream.write(to_json(r) + "\n")
        else:
            write_csv(stream, rows, [*AUDIT_COLUMNS, "error", "content"])
    finally:
        if out is not None:
            out.close()
    if file != "-":
        click.echo(f"{len(rows)} interrupted answers written to {safe(file)}", err=True)


@cli.command()
@store_options
@json_option
def sweep(db: str | None, table: str | None, schema: str | None, as_json: bool) -> None:
    """Mark drafts whose writer is gone as abandoned (safe to run from cron)."""
    with open_store(db, table, schema) as store:
        n = store.sweep()
    click.echo(to_json({"abandoned": n}) if as_json else f"{n} abandoned drafts marked")


@cli.command()
@store_options
@click.option("--journal", type=click.Path(dir_okay=False, exists=True), required=True)
def recover(db: str | None, table: str | None, schema: str | None, journal: str) -> None:
    """Replay a journal of drafts written while the database was away."""
    with open_store(db, table, schema) as store:
        n = store.recover_from(journal)
    click.echo(f"{n} messages recovered from {safe(journal)}")


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
            final = store.continue_answer(message_id, p, on_text=_stream_out)
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
            final = store.regenerate(message_id, p, on_text=_stream_out)
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
    from .providers import FakeModelServer

    try:
        server = FakeModelServer(host=host, port=port)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    click.echo(f"fake model {server.model!r} at base URL {server.base_url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


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
