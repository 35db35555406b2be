"""The CLI's shared options, exit codes and the mapping of library errors to them."""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import click
import sqlalchemy as sa

from .._errors import (
    ChatPersistError,
    JournalLocked,
    NotAJournal,
    NotMigrated,
    UnknownMessage,
    UnknownSession,
)
from .._retrofit import MessagesTable
from .._store import ChatStore
from ._output import REASONING_MODES, safe

# Exit codes (documented in the README and in `chatpersist --help`).
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_MIGRATED = 3
EXIT_NOT_FOUND = 4
EXIT_PROVIDER = 5
EXIT_JOURNAL = 6
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


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
    from ..providers import ProviderError

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
        try:
            return super().invoke(ctx)
        except (ChatPersistError, ValueError) as exc:
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


def reasoning_option(f: F) -> F:
    return click.option(
        "--reasoning",
        type=click.Choice(REASONING_MODES),
        default=None,
        help="The model's reasoning: its first line (the default), all of it, or none.",
    )(f)


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
    from ..providers import Anthropic, FakeModelServer, OpenAICompatible

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


def parse_since(value: str | None, option: str = "--since") -> timedelta | None:
    if value is None:
        return None
    m = re.fullmatch(r"(\d+)\s*([smhdw])", value.strip())
    if not m:
        raise usage_error(f"{option} {value!r}: use a number and a unit: 30m, 12h, 7d, 2w")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m[2]]
    try:
        delta = timedelta(**{unit: int(m[1])})
        datetime.now(UTC) - delta  # noqa: B018 - before the year 1?
    except (OverflowError, ValueError):
        raise usage_error(f"{option} {value!r}: too far back") from None
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
