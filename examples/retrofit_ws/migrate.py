"""The app's alembic upgrade: `python -m examples.retrofit_ws.migrate [REVISION]`
(default head; `0001` is the app before chatpersist). The database is $CHAT_DB_URL."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")


def upgrade(revision: str = "head") -> None:
    command.upgrade(Config(str(ALEMBIC_INI)), revision)


if __name__ == "__main__":
    upgrade(*sys.argv[1:2])
