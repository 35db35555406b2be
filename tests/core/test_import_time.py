"""`import chatpersist` stays light: alembic is imported only to migrate, and no model
SDK is imported by the core (checked in a fresh interpreter; modules, not time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import subprocess_env

#: Imported only when needed: alembic by `migrate()`, the SDKs by an app's own code.
HEAVY = ("alembic", "openai", "anthropic", "litellm", "langchain", "langchain_core")

PROBE = """
import json, sys
{code}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""


def loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
        check=True,
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_chatpersist_imports_no_alembic_and_no_sdk() -> None:
    loaded = loaded_after("import chatpersist")
    assert "chatpersist" in loaded
    assert not loaded & set(HEAVY)


def test_a_store_that_writes_and_reads_imports_no_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/chat.db"
    subprocess.run(
        [sys.executable, "-c", f"import chatpersist; chatpersist.ChatStore({url!r}).migrate()"],
        env=subprocess_env(),
        timeout=120,
        check=True,
    )
    loaded = loaded_after(
        "import chatpersist\n"
        f"store = chatpersist.ChatStore({url!r})\n"
        "sid = store.create_session()\n"
        "with store.draft(sid) as d:\n"
        "    d.append('text')\n"
        "assert store.history(sid)[-1].content == 'text'\n"
        "store.sessions(); store.audit_stats()\n"
        "store.close()"
    )
    assert not loaded & set(HEAVY)
