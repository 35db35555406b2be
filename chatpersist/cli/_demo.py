"""The offline demo: a real local model server, a client that leaves halfway, the
partial answer found on return, and the answer continued to the end."""

from __future__ import annotations

import click

from .._store import ChatStore
from ..providers import FakeModelServer, OpenAICompatible, feed
from ..recovery import continue_answer

QUESTION = "Why should a chat app save an answer while it is still streaming?"


def step(n: int, text: str) -> None:
    click.echo(click.style(f"\n[{n}/5] {text}", fg="cyan", bold=True))


def run_demo(db_url: str, *, fast: bool = False) -> str:
    """Returns the id of the demo's answer."""
    delay = 0.002 if fast else 0.02
    with FakeModelServer(delay=delay) as server, ChatStore(db_url, every_chunks=10) as store:
        step(1, f"A local OpenAI-compatible model is streaming at {server.base_url}")
        store.migrate()
        sid = store.create_session("demo")
        store.add_message(sid, "user", QUESTION)
        provider = OpenAICompatible(server.base_url, "fake-model")
        click.echo(click.style("user> ", bold=True) + QUESTION)

        step(2, "The assistant answers; halfway through, the user switches conversation")
        click.echo(click.style("assistant> ", bold=True), nl=False)
        stream = provider.stream(store.history_for_model(sid, format=provider.history_format))
        with store.draft(sid) as d:
            for item in stream:
                click.echo(feed(d, item), nl=False)
                if len(d.text) >= len(server.answer) // 2:
                    stream.close()  # the client disconnects: generation stops
                    d.stop("disconnected")
                    break
        mid = d.message_id
        click.echo(click.style(f"\n[client gone after {len(d.text)} characters]", fg="yellow"))

        step(3, "The user comes back; the history is loaded from the database")
        for m in store.history(sid):
            _show(m.role, m.display_content)
        cut = store.get_message(mid)
        click.echo(
            click.style(f"(status={cut.status}, finish_reason={cut.finish_reason})", dim=True)
        )

        step(4, f"chatpersist continue {mid[:8]}...: the answer goes on where it stopped")
        click.echo(click.style("assistant> ", bold=True) + cut.content, nl=False)
        done = continue_answer(store, mid, provider, on_text=lambda t: click.echo(t, nl=False))
        click.echo()

        step(5, "The same message, now complete")
        for m in store.history(sid):
            _show(m.role, m.display_content)
        s = store.stats
        click.echo(
            click.style(
                f"(status={done.status}, {len(done.content)} characters, one row; "
                f"{s.flushes} flushes in {s.transactions} transactions)",
                dim=True,
            )
        )
        return mid


def _show(role: str, text: str) -> None:
    click.echo(click.style(f"{role}: ", bold=True) + text)
