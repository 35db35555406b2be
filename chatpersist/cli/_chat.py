"""The interactive chat behind `chatpersist chat`."""

from __future__ import annotations

from typing import Any

import click

from .._history import format_of
from .._store import ChatStore
from ..providers import ProviderError, feed
from ._output import safe, show_message


def run_chat(store: ChatStore, provider: Any, session_id: str | None = None) -> None:
    if session_id:
        for m in store.history(session_id):
            show_message(m)
        sid = session_id
    else:
        sid = store.create_session("chat")
    click.echo(
        click.style(f"[session {sid}]", dim=True)
        + " Ctrl-C stops an answer and keeps it; Ctrl-C or Ctrl-D here exits."
    )
    while True:
        try:
            text = click.prompt("you", prompt_suffix="> ")
        except click.Abort:  # Ctrl-C or Ctrl-D at the prompt
            click.echo()
            return
        store.add_message(sid, "user", text)
        answer(store, provider, sid)


def answer(store: ChatStore, provider: Any, session_id: str) -> None:
    """Stream one answer into a draft; Ctrl-C stops it as the user's Stop."""

    shape = format_of(provider)
    stream = provider.stream(store.history_for_model(session_id, format=shape))
    click.echo(click.style("assistant> ", bold=True), nl=False)
    with store.draft(session_id) as d:
        try:
            for item in stream:
                click.echo(safe(feed(d, item)), nl=False)
        except KeyboardInterrupt:
            d.stop("stopped")
            click.echo(
                click.style("\n[stopped: the partial answer is kept]", fg="yellow"), nl=False
            )
        except ProviderError as exc:
            d.set_error(str(exc))
            d.stop("provider_error")
            click.echo(click.style(f"\n[provider error: {safe(str(exc))}]", fg="red"), nl=False)
        finally:
            stream.close()
    click.echo()
