"""`chatpersist recover-worker`: completion after a crash as a process of its own."""

from __future__ import annotations

import threading
from typing import Any

import click

from ..recovery import Recoverer
from ._options import json_option, open_provider, open_store, provider_options, store_options
from ._output import safe, to_json


@click.command("recover-worker")
@store_options
@provider_options
@click.option(
    "--poll", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
    help="Seconds between two looks for answers to complete.",
)  # fmt: skip
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=4, show_default=True,
    help="Answers completed at the same time.",
)  # fmt: skip
@click.option("--once", is_flag=True, help="Complete what is due now, then exit.")
@json_option
def recover_worker(
    db: str | None, table: str | None, schema: str | None, poll: float, concurrency: int,
    once: bool, as_json: bool, **provider: Any,
) -> None:  # fmt: skip
    """Complete answers whose worker died (those started with `recover_with`, e.g.
    policy "finish" in chatpersist.asgi): each is claimed by one claimant only and
    continued from its text with the provider given here. Runs until Ctrl-C (or with
    --once, completes what is due now)."""
    with open_store(db, table, schema) as store, open_provider(**provider) as p:
        recoverer = Recoverer(store, lambda spec: p, poll=poll, concurrency=concurrency)
        if once:
            ids = recoverer.run_once()
            if as_json:
                click.echo(to_json({"claimed": ids, "completed": recoverer.completed,
                                    "failed": recoverer.failed}))  # fmt: skip
            else:
                for mid in ids:
                    click.echo(safe(f"recovered {mid}"))
            return
        click.echo("completing answers whose worker died (Ctrl-C to stop)", err=True)
        recoverer.start()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            click.echo("stopping", err=True)
        finally:
            recoverer.stop()
