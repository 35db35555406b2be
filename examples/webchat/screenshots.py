"""Makes the example's pictures, docs/webchat.png and docs/webchat-mobile.png: the page in
headless Chromium (Playwright), on a computer and on a phone, with a scripted fake model.

    python -m examples.webchat.screenshots        # CHATPERSIST_CHROMIUM: another Chromium

The scene: an answer in Markdown with a code block, a follow-up stopped by its user
(with Continue), and another conversation still generating after its page left it
("Keep generating when I leave").
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from chatpersist.providers import FakeModelServer

from .app import create_app

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHATPERSIST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

RESUME = """A dropped stream is resumed from the **last event id** the page saw:

1. every event carries an `id:` naming the text the page has;
2. after a drop, the page follows the answer from that id;
3. the server sends what was missed, then the rest as it comes.

```python
@app.get("/api/messages/{message_id}/follow")
async def follow(message_id: str) -> Response:
    return streams.follow(message_id)  # honours Last-Event-ID
```

Nothing arrives twice and nothing is lost, even if the answer finished meanwhile.
"""
IN_JS = """In the browser, `fetch` the follow URL with the id as a header:

```js
const res = await fetch(`/api/messages/${id}/follow`, {
  headers: {"last-event-id": lastId},
});
```

Then read the events as before: one `delta` with what was missed, then the rest live.
"""
GUARANTEES = (
    "## What survives\n\n"
    + "".join(
        f"- **{what}**: the text written so far is in the database, marked, and can be continued.\n"
        for what in ("A closed tab", "A reload", "A lost connection", "A crashed server", "A Stop")
    )
    + "\nDrafts are flushed every few chunks or seconds, batched with every other answer in "
    "flight, so the cost is a handful of small writes per answer. " * 12
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(db: str, model: FakeModelServer) -> tuple[uvicorn.Server, str]:
    port = free_port()
    app = create_app(db, provider="openai", base_url=model.base_url, model="fake-model")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the example did not start")
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def ask(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def written(page: Any, chars: int) -> None:
    page.wait_for_function(
        "(n) => { const a = document.querySelectorAll('.msg.assistant');"
        " return a.length && (a[a.length - 1].source || '').length >= n; }",
        arg=chars,
        timeout=60000,
    )


def finished(page: Any, answers: int) -> None:
    page.wait_for_function(
        "(n) => document.querySelectorAll('.msg.assistant').length >= n"
        " && !document.querySelector('.badge.live, .typing') && document.querySelector('#stop').hidden",
        arg=answers,
        timeout=60000,
    )


def main() -> None:
    from playwright.sync_api import sync_playwright

    docs = ROOT / "docs"
    with tempfile.TemporaryDirectory() as tmp, FakeModelServer(delay=0.02) as model:
        server, url = serve(f"sqlite:///{tmp}/shots.db", model)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1100, "height": 800})
                page.goto(url)
                page.get_by_label("Keep generating when I leave").check()
                model.then(GUARANTEES)
                ask(page, "What happens to an answer when I close the tab?")
                written(page, 80)
                page.click("#new")  # left mid-answer: it goes on, marked in the sidebar
                model.then(RESUME, IN_JS)
                ask(page, "How do I resume a dropped SSE stream?")
                finished(page, 1)
                ask(page, "And in JavaScript?")
                written(page, 120)
                page.click("#stop")
                page.wait_for_selector(".msg.assistant .badge.stopped")
                page.mouse.move(700, 400)
                page.wait_for_selector("#sessions li.generating")
                page.evaluate("() => document.activeElement.blur()")
                page.screenshot(path=str(docs / "webchat.png"))
                page.set_viewport_size({"width": 390, "height": 844})
                page.wait_for_timeout(300)
                page.evaluate(
                    "() => { const m = document.querySelector('#messages');"
                    " m.scrollTop = m.scrollHeight; }"
                )
                page.wait_for_timeout(200)
                page.screenshot(path=str(docs / "webchat-mobile.png"))
                browser.close()
        finally:
            server.should_exit = True
            time.sleep(0.5)
    print(f"wrote {docs / 'webchat.png'} and {docs / 'webchat-mobile.png'}")


if __name__ == "__main__":
    main()
