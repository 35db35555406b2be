"""The README's "Retrofit onto your own table" section, run word for word."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import ROOT

from chatpersist import COMPLETE, ChatStore

README = ROOT / "README.md"


def section_blocks(kind: str) -> list[str]:
    text = README.read_text()
    section = text.split("## Retrofit onto your own table", 1)[1].split("\n## ", 1)[0]
    return [textwrap.dedent(b) for b in re.findall(rf"```{kind}\n(.*?)```", section, re.S)]


@pytest.fixture
def pg(db_url: str, backend: str) -> Iterator[tuple[sa.Engine, str]]:
    if backend != "postgresql":
        pytest.skip("the README's example names a PostgreSQL schema")
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS app CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA app")
        conn.exec_driver_sql(
            "CREATE TABLE messages (id VARCHAR(64) PRIMARY KEY, session_id VARCHAR(64) NOT NULL,"
            " role VARCHAR(16) NOT NULL, content TEXT NOT NULL, created_at TIMESTAMP NOT NULL)"
        )
        conn.exec_driver_sql(
            "CREATE TABLE app.chat_messages (id SERIAL PRIMARY KEY, conversation_id VARCHAR(64)"
            " NOT NULL, role VARCHAR(16) NOT NULL, content TEXT NOT NULL, sent_at TIMESTAMP"
            " NOT NULL, updated_at TIMESTAMP, tool_calls TEXT NOT NULL)"
        )
    yield engine, db_url
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA app CASCADE")
    engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_the_first_example_runs_as_written(pg) -> None:  # type: ignore[no-untyped-def]
    engine, _ = pg
    first = section_blocks("python")[0]
    scope: dict[str, object] = {"engine": engine}
    exec(compile(first, "README.md", "exec"), scope)
    store = scope["store"]
    assert isinstance(store, ChatStore)
    try:
        with store.draft("conv-1") as d:
            d.append("streamed into the app's own table")
        (m,) = store.history("conv-1")
        assert (type(m.id), m.content, m.status) == (int, "streamed into the app's own table", COMPLETE)
        with engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT tool_calls, updated_at FROM app.chat_messages"
            ).one()
        assert row[0] == "[]" and row[1] is not None  # insert_defaults, the reused heartbeat
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_one_definition_for_the_app_its_migration_and_the_cli(
    pg: tuple[sa.Engine, str], tmp_path: Path
) -> None:
    engine, url = pg
    definition = section_blocks("python")[1]
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "db.py").write_text(definition)
    with engine.begin() as conn:  # this definition's table: default names but one
        conn.exec_driver_sql("DROP TABLE app.chat_messages")
        conn.exec_driver_sql(
            "CREATE TABLE app.chat_messages (id VARCHAR(64) PRIMARY KEY, conversation_id"
            " VARCHAR(64) NOT NULL, role VARCHAR(16) NOT NULL, content TEXT NOT NULL,"
            " created_at TIMESTAMP NOT NULL)"
        )
    commands = [
        line[2:].replace("URL", shlex.quote(url))
        for line in section_blocks("console")[0].splitlines()
        if line.startswith("$ ")
    ]
    assert len(commands) == 2
    cli = [sys.executable, "-c", "from chatpersist.cli import main; main()"]
    for command in commands:
        args = shlex.split(command)
        assert args[0] == "chatpersist"
        done = subprocess.run(
            cli + args[1:], cwd=tmp_path, capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
        assert done.returncode == 0, (command, done.stderr)
    cols = {c["name"] for c in sa.inspect(engine).get_columns("chat_messages", schema="app")}
    assert {"status", "draft_seq", "draft_writer"} <= cols
