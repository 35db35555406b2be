"""Answers rendered as Markdown in Debian's Chromium (issue item 6), safely: the
model's HTML and scripts never run, whatever it writes, and code blocks have a copy
button. The model is a fake one run here, told what to answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web.webchat_ui import ANSWER, answers, browsing, send, shot, source, start_server, wait_ended
from web.webserver import Server

from chatpersist import COMPLETE
from chatpersist.providers import FakeModelServer

pytestmark = pytest.mark.slow  # a real server and browser

CODE = 'def greet(name):\n    return f"Hello, {name}!"'
MARKDOWN = f"""## Saving drafts

Drafts are **flushed** every few chunks, with `every_chunks=20`:

1. the answer streams
2. each flush is *one* `UPDATE`

```python
{CODE}
```

| store | writes |
|-------|--------|
| SQLite | batched |
| PostgreSQL | batched |

See [the docs](https://example.com/docs).
"""
# Everything a model could try, each setting a flag that must stay unset.
ATTACKS = """Here is some HTML: <img src=x onerror="window.__pwned = 'img'"> and
<script>window.__pwned = 'script'</script>

<svg onload="window.__pwned = 'svg'"><circle r="5"/></svg>
<iframe srcdoc="<script>parent.__pwned = 'iframe'</script>"></iframe>
<a href="javascript:window.__pwned = 'a'">a link</a> and [a markdown link](javascript:void(window.__pwned=7))

![a picture](x" onerror="window.__pwned = 'picture')
<div style="position:fixed;inset:0" onmouseover="window.__pwned = 'div'" class="notice">over</div>
<details open ontoggle="window.__pwned = 'details'">x</details>
"""


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModelServer]:
    with FakeModelServer(delay=0.002, chunk_chars=16) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(model: FakeModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = Path(tmp_path_factory.mktemp("webchat")) / "markdown.db"
    s = start_server(
        f"sqlite:///{db}", "--provider", "openai", "--base-url", model.base_url,
        "--model", "fake-model",
    )  # fmt: skip
    yield s
    s.stop()


def test_answers_are_markdown_with_copy_buttons(
    server: Server, model: FakeModelServer, browser: Any
) -> None:
    with browsing(browser, "markdown") as page:
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        page.goto(server.url)
        model.then(MARKDOWN)
        send(page, "How are drafts saved?")
        wait_ended(page)
        assert source(page) == MARKDOWN
        for _ in range(2):  # as it streamed, and as stored (after a reload)
            text = page.locator(f"{ANSWER} .text")
            assert text.locator("h2").inner_text() == "Saving drafts"
            assert text.locator("strong").inner_text() == "flushed"
            assert text.locator("ol > li").count() == 2
            assert text.locator("pre code").inner_text().rstrip("\n") == CODE
            assert text.locator("table tr").count() == 3
            assert text.locator("a").get_attribute("rel") == "noopener noreferrer nofollow"
            shown = text.inner_text()
            for raw in ("**", "```", "|---", "## "):
                assert raw not in shown
            page.click(f"{ANSWER} .code-block .copy")
            assert page.evaluate("() => navigator.clipboard.readText()") == CODE
            page.reload()
            page.wait_for_selector(f"{ANSWER} pre code")
        shot(page, "markdown_rendered")
        (m,) = answers(server)
        assert (m.content, m.status) == (MARKDOWN, COMPLETE)


def test_the_models_html_and_scripts_never_run(
    server: Server, model: FakeModelServer, browser: Any
) -> None:
    # The page's Content-Security-Policy would block inline scripts too: bypassed
    # here, so that the sanitiser alone is tested.
    with browsing(browser, "html_injection", bypass_csp=True) as page:
        page.goto(server.url)
        model.then(ATTACKS)
        send(page, "Show me some HTML")
        wait_ended(page)
        for _ in range(2):  # streamed, then from the database
            page.wait_for_timeout(300)  # time for anything that would run
            box = page.locator(f"{ANSWER} .text")
            page.hover(f"{ANSWER} .text")
            for link in box.locator("a").all():
                link.click(modifiers=["Alt"])  # would run a javascript: URL
            page.wait_for_timeout(200)
            assert page.evaluate("() => window.__pwned") is None
            found = page.locator(
                f"{ANSWER} :is(img, script, svg, iframe, [onerror], [onload], [style],"
                " [onmouseover], [ontoggle], a[href^='javascript'], [class='notice'])"
            )
            assert found.count() == 0
            assert "<img src=x onerror=" in box.inner_text()  # shown as the text it is
            assert "<script>" in box.inner_text()
            page.reload()
            page.wait_for_selector(f"{ANSWER} .text")
        shot(page, "html_injection_shown_as_text")
        assert page.errors == []
