"""Running chatpersist's alembic migrations from a checkout or an installed wheel."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

VERSION_TABLE = "chatpersist_alembic_version"


def script_location() -> str:
    # In a wheel the migrations are packaged as chatpersist/migrations; in a
    # checkout (or an editable install) they are the repository's top-level folder.
    packaged = resources.files("chatpersist") / "migrations"
    if packaged.is_dir():
        return str(packaged)
    checkout = Path(__file__).resolve().parent.parent / "migrations"
    if (checkout / "env.py").is_file():
        return str(checkout)
    raise RuntimeError("chatpersist's migrations are missing from this installation")


def config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", script_location())
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    command.downgrade(config(engine), revision)


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()
