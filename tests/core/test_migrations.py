"""The shipped migrations: they match the models, go down and up, and work from a wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from support import ROOT

from chatpersist import ChatStore, _migrate
from chatpersist._schema import metadata

OURS = {"chatpersist_sessions", "chatpersist_messages"}


def _diff(engine: sa.Engine) -> list[object]:
    def ours(obj: object, name: str | None, type_: str, *_: object) -> bool:
        return type_ != "table" or name in OURS

    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"include_object": ours, "compare_server_default": True}
        )
        return list(compare_metadata(ctx, metadata))


def test_models_and_migrations_agree(db_url: str) -> None:
    with ChatStore(db_url) as store:
        store.migrate()
        assert _diff(store.engine) == []
        assert _migrate.current(store.engine) is not None


def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    with ChatStore(db_url) as store:
        store.migrate()
        sid = store.create_session()
        store.add_message(sid, "user", "hi")
        _migrate.downgrade(store.engine, "base")
        tables = set(sa.inspect(store.engine).get_table_names())
        assert not tables & OURS
        # Our version table is our own; the host's alembic_version is never created.
        assert "alembic_version" not in tables
        store.migrate()
        assert _diff(store.engine) == []
        assert store.history(store.create_session()) == []


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("chatpersist-*.whl")
    return whl


def test_migrations_from_the_built_wheel(wheel: Path, db_url: str, tmp_path: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "chatpersist/migrations/env.py" in names
    assert any(n.startswith("chatpersist/migrations/versions/0001") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Only the unpacked wheel provides chatpersist; dependencies come from this environment.
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
    code = (
        "import chatpersist, chatpersist._migrate as m, sys;"
        f"assert chatpersist.__file__.startswith({str(site)!r}), chatpersist.__file__;"
        f"assert m.script_location().startswith({str(site)!r});"
        "from chatpersist.cli import main;"
        "sys.argv = ['chatpersist', 'migrate', '--db', sys.argv[1]]; main()"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, db_url], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    with ChatStore(db_url) as store:
        assert _diff(store.engine) == []
