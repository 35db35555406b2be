"""The `chatpersist` command: a thin layer over the library."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

from ._errors import ChatPersistError, NotMigrated, UnknownSession
from ._store import ChatStore

# Exit codes (documented in the README).
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_MIGRATED = 3
EXIT_NOT_FOUND = 4


def default_db() -> str:
    env = os.environ.get("CHATPERSIST_DB")
    if env:
        return env
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    path = base / "chatpersist" / "chat.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


db_option = click.option(
    "--db",
    "db",
    default=None,
    metavar="URL",
    help="SQLAlchemy database URL "
    "(default: $CHATPERSIST_DB, else a SQLite file in your data directory).",
)


def open_store(db: str | None) -> ChatStore:
    try:
        return ChatStore(db or default_db())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
@click.version_option(package_name="chatpersist")
def cli() -> None:
    """Keep streamed chat answers safe in your database."""


@cli.command()
@db_option
def migrate(db: str | None) -> None:
    """Create or upgrade chatpersist's tables."""
    store = open_store(db)
    try:
        store.migrate()
    finally:
        store.close()
    click.echo("database is at the latest chatpersist schema")


@cli.command()
@click.argument("session_id")
@db_option
@click.option("--json", "as_json", is_flag=True, help="One JSON array of messages.")
def history(session_id: str, db: str | None, as_json: bool) -> None:
    """Show a session's messages; interrupted answers are marked."""
    store = open_store(db)
    try:
        messages = store.history(session_id)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([m.to_dict() for m in messages], indent=2, ensure_ascii=False))
        return
    for m in messages:
        suffix = "  [still generating...]" if m.live else ""
        click.echo(f"{m.role}: {m.display_content}{suffix}")


@cli.command()
@db_option
@click.option("--fast", is_flag=True, help="Stream without pauses.")
def demo(db: str | None, fast: bool) -> None:
    """Offline demo: a client leaves mid-answer and the partial answer survives."""
    from ._demo import run_demo

    if db:
        run_demo(db, echo=_echo, delay=0 if fast else 0.01)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run_demo(f"sqlite:///{Path(tmp) / 'demo.db'}", echo=_echo, delay=0 if fast else 0.01)


def _echo(text: str) -> None:
    # Stream pieces on one line; full lines end with a newline.
    if text.endswith(" ") or not text.startswith(("user>", "\n", "  ", "History")):
        click.echo(text, nl=False)
    else:
        click.echo(text)


def main() -> None:
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
    except (UnknownSession, LookupError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    except ChatPersistError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
