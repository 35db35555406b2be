"""The `chatpersist` command, a thin layer over the library: each command is one
library call, with `--json` (or CSV) output for scripts.

`main` is the console entry point; `cli` is the click group (for `CliRunner`).
"""

from ._commands import cli, main

__all__ = ["cli", "main"]
