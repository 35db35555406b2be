/* The chat page. Answers stream over SSE (POST /api/sessions/{id}/messages, or
   /api/messages/{id}/continue); an answer still being written elsewhere (another tab,
   a page that left with "Keep generating when I leave" on) is followed with
   GET /api/messages/{id}/follow, which resumes from the last event id after a lost
   connection. What the page shows comes from the server: "Generating…" only while the
   answer's writer is alive, and why an answer ended from its finish_reason. */
"use strict";

(() => {
  const $ = (selector) => document.querySelector(selector);
  const ui = {
    sidebar: $("#sidebar"), sessions: $("#sessions"), newChat: $("#new"), keep: $("#keep"),
    keepHelp: $("#keep-help"), menu: $("#menu"), closeSidebar: $("#close-sidebar"),
    scrim: $("#scrim"), title: $("#title"), messages: $("#messages"), thread: $("#thread"),
    jump: $("#jump"), notice: $("#notice"), noticeText: $("#notice-text"),
    noticeAction: $("#notice-action"), noticeClose: $("#notice-close"), form: $("#form"),
    input: $("#input"), send: $("#send"), stop: $("#stop"), announcer: $("#announce"),
  };
  const KEEP = "webchat.keepGenerating";
  const NARROW = window.matchMedia("(max-width: 760px)");
  const enc = encodeURIComponent;

  const state = {
    current: null, // the open conversation (null: a new chat, created by its first message)
    sessions: [], // the sidebar's list, as the server gave it
    answer: null, // the answer streamed or followed in the open conversation
    sending: false, // a question is on its way
    stick: true, // the reader is at the bottom: new text scrolls into view
    opening: 0, // drops the result of a conversation that was left while it loaded
    lastEnd: 0, // when this page's last answer ended (older "generating" news is stale)
  };

  // -- talking to the server ------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, detail) {
      super(detail || `HTTP ${status}`);
      this.status = status;
    }
  }

  async function failure(res) {
    let detail = "";
    try {
      const body = await res.json();
      detail = body.error || body.detail || "";
    } catch {
      // not JSON
    }
    return new HttpError(res.status, typeof detail === "string" ? detail : "");
  }

  async function api(path, { method = "GET", body } = {}) {
    const options = { method, headers: {} };
    if (body !== undefined) {
      options.headers["content-type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const res = await fetch(path, options);
    if (!res.ok) throw await failure(res);
    return res.json();
  }

  const sleep = (ms, signal) => new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });

  function newId() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // -- notices and announcements -----------------------------------------------------------

  let noticeRun = null;

  function notify(text, action) {
    ui.noticeText.textContent = text;
    noticeRun = action ? action.run : null;
    ui.noticeAction.hidden = !action;
    ui.noticeAction.textContent = action ? action.label : "";
    ui.notice.hidden = false;
  }

  function clearNotice() {
    ui.notice.hidden = true;
    noticeRun = null;
  }

  ui.noticeAction.addEventListener("click", () => {
    const run = noticeRun;
    clearNotice();
    ui.input.focus();
    if (run) run();
  });
  ui.noticeClose.addEventListener("click", () => { clearNotice(); ui.input.focus(); });

  /** Says `text` to screen readers (the page's aria-live region). */
  function announce(text) {
    ui.announcer.textContent = "";
    setTimeout(() => { ui.announcer.textContent = text; }, 60);
  }

  function identityLost() {
    notify("This browser's identity is no longer valid (the server restarted with a new key). Reload to start again.",
      { label: "Reload", run: () => location.reload() });
  }

  // -- "Keep generating when I leave" -----------------------------------------------------

  function remember(value) {
    try { localStorage.setItem(KEEP, value ? "1" : "0"); } catch { /* storage refused */ }
  }

  function setupKeep() {
    const asked = new URLSearchParams(location.search).get("policy");
    if (asked === "finish" || asked === "cancel") remember(asked === "finish");
    let kept = null;
    try { kept = localStorage.getItem(KEEP); } catch { /* storage refused */ }
    ui.keep.checked = kept === "1";
    showKeepHelp();
    ui.keep.addEventListener("change", () => { remember(ui.keep.checked); showKeepHelp(); });
  }

  function showKeepHelp() {
    ui.keepHelp.textContent = ui.keep.checked
      ? "On: answers finish on the server while you are away."
      : "Off: leaving or reloading stops the answer; what was written is kept.";
  }

  const policy = () => (ui.keep.checked ? "finish" : "cancel");

  // -- Markdown, sanitised ---------------------------------------------------------------

  const escapeHtml = (s) => String(s).replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  // What a model's answer may never bring into the page: markup of its own (its raw
  // HTML is shown as text), images (a model-chosen URL loaded by the page could leak the
  // conversation), forms, frames, styles and ids or classes of the page's own.
  const PURIFY = {
    FORBID_TAGS: ["style", "img", "svg", "math", "form", "input", "button", "textarea", "select",
      "iframe", "object", "embed", "video", "audio"],
    FORBID_ATTR: ["style", "class", "id"],
  };
  let markdown = null;

  function markdownParser() {
    if (markdown || !window.marked || !window.DOMPurify) return markdown;
    markdown = new window.marked.Marked({ gfm: true, breaks: false, async: false });
    markdown.use({
      renderer: {
        html: ({ text }) => escapeHtml(text),
        image: ({ href, text }) => `<a href="${escapeHtml(href || "")}">${escapeHtml(text || "image")}</a>`,
      },
    });
    window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A") {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
    });
    return markdown;
  }

  function renderMarkdown(box, source) {
    const parser = markdownParser();
    if (!parser) { // the libraries did not load: plain text, never HTML
      box.classList.add("plain");
      box.textContent = source;
      return;
    }
    box.innerHTML = window.DOMPurify.sanitize(parser.parse(source), PURIFY);
    for (const table of box.querySelectorAll("table")) {
      const wrap = document.createElement("div");
      wrap.className = "table-wrap";
      wrap.tabIndex = 0;
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", "Table");
      table.replaceWith(wrap);
      wrap.append(table);
    }
    for (const pre of box.querySelectorAll("pre")) { // the button stays put when the code scrolls
      const block = document.createElement("div");
      block.className = "code-block";
      pre.replaceWith(block);
      block.append(pre, copyButton(pre));
    }
  }

  function copyButton(pre) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy code");
    button.addEventListener("click", async () => {
      const code = (pre.querySelector("code") || pre).textContent.replace(/\n$/, "");
      try {
        await navigator.clipboard.writeText(code);
        button.textContent = "Copied";
        announce("Code copied.");
      } catch {
        button.textContent = "Copy failed";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
    return button;
  }

  // Answers are rendered at most every 30 ms however fast the text comes.
  const dirty = new Set();
  let renderTimer = 0;

  function scheduleRender(el) {
    dirty.add(el);
    if (!renderTimer) renderTimer = setTimeout(renderDirty, 30);
  }

  function renderDirty() {
    renderTimer = 0;
    for (const el of dirty) if (el.isConnected) renderMarkdown(el.querySelector(".text"), el.source);
    dirty.clear();
    followBottom();
  }

  // -- messages ------------------------------------------------------------------------

  function addMessage(role, text, id) {
    document.querySelector("#thread .empty")?.remove();
    const el = document.createElement("article");
    el.className = `msg ${role === "user" ? "user" : "assistant"}`;
    el.setAttribute("aria-label", role === "user" ? "You" : "Answer");
    if (id) el.dataset.id = id;
    const body = document.createElement("div");
    body.className = role === "user" ? "text" : "text md";
    const meta = document.createElement("div");
    meta.className = "meta";
    el.append(body, meta);
    ui.thread.append(el);
    setText(el, text || "");
    return el;
  }

  /** The message's text; `el.source` keeps it as written (Markdown for answers). */
  function setText(el, text) {
    el.source = text;
    const body = el.querySelector(".text");
    if (el.classList.contains("user")) body.textContent = text;
    else if (!text) body.replaceChildren();
    else scheduleRender(el);
    if (el.classList.contains("user")) followBottom();
  }

  /** An answer as a screen reader should hear it: rendered, without the copy buttons. */
  function plainText(el) {
    if (dirty.has(el)) {
      dirty.delete(el);
      renderMarkdown(el.querySelector(".text"), el.source);
    }
    const copy = el.querySelector(".text").cloneNode(true);
    for (const b of copy.querySelectorAll(".copy")) b.remove();
    return copy.textContent.replace(/\s+/g, " ").trim();
  }

  /** Why an answer ended, in plain words (from its finish_reason). */
  function outcome(view) {
    if (!view.interrupted) return null;
    switch (view.finish_reason) {
      case "stopped":
        return { kind: "stopped", label: "Stopped by you", why: "You stopped this answer. Continue picks it up where it stopped." };
      case "provider_error":
        return { kind: "error" };
      case "disconnected":
      case "cancelled":
        return { kind: "cut", label: "Answer cut off", why: "The page left, or lost its connection, before the answer was finished." };
      default:
        return { kind: "cut", label: "Answer cut off", why: "The server stopped before the answer was finished." };
    }
  }

  function badge(kind, label, why) {
    const b = document.createElement("span");
    b.className = `badge ${kind}`;
    b.textContent = label;
    if (why) b.title = why;
    return b;
  }

  function actionButton(kind, label, el) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = kind;
    b.textContent = label;
    b.disabled = busy();
    b.addEventListener("click", () => continueAnswer(el));
    return b;
  }

  /** Shows an answer's state: waiting, live, reconnecting, or how it ended. */
  function paint(el, view) {
    el.view = view;
    const meta = el.querySelector(".meta");
    meta.replaceChildren();
    if (view.phase === "waiting" && !el.source) {
      const dots = document.createElement("span");
      dots.className = "typing";
      for (let i = 0; i < 3; i++) dots.append(document.createElement("i"));
      const sr = document.createElement("span");
      sr.className = "sr-only";
      sr.textContent = "Waiting for the answer";
      dots.append(sr);
      meta.append(dots);
    } else if (view.phase === "waiting" || view.phase === "live") {
      meta.append(badge("live", "Generating…"));
    } else if (view.phase === "reconnecting") {
      meta.append(badge("reconnecting", "Connection lost, reconnecting…"));
    } else {
      const end = outcome(view);
      if (end && end.kind === "error") {
        const box = document.createElement("div");
        box.className = "answer-error";
        const p = document.createElement("p");
        p.textContent = el.source
          ? "The model stopped answering. It may be down or busy."
          : "The model didn't answer. It may be down or busy.";
        box.append(p, actionButton("retry", "Retry", el));
        if (view.error) {
          const details = document.createElement("details");
          const summary = document.createElement("summary");
          summary.textContent = "Details";
          const code = document.createElement("code");
          code.textContent = view.error;
          details.append(summary, code);
          box.append(details);
        }
        meta.append(box);
      } else if (end) {
        meta.append(badge(`interrupted ${end.kind}`, end.label, end.why), actionButton("continue", "Continue", el));
      }
    }
    followBottom();
  }

  function viewOf(m) {
    if (m.live) return { phase: m.content ? "live" : "waiting" };
    return { phase: "done", interrupted: m.interrupted, finish_reason: m.finish_reason, error: m.error };
  }

  // -- scrolling: only while the reader is at the bottom -------------------------------

  function atBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 32;
  }

  ui.messages.addEventListener("scroll", () => {
    state.stick = atBottom();
    ui.jump.hidden = state.stick;
  }, { passive: true });

  function followBottom() {
    if (state.stick) ui.messages.scrollTop = ui.messages.scrollHeight;
    else ui.jump.hidden = atBottom();
  }

  function toBottom() {
    state.stick = true;
    ui.messages.scrollTop = ui.messages.scrollHeight;
    ui.jump.hidden = true;
  }

  ui.jump.addEventListener("click", () => { toBottom(); ui.input.focus(); });

  // -- answers: streamed, followed, resumed ---------------------------------------------

  const busy = () => Boolean(state.answer) || state.sending;

  function updateControls() {
    const answering = Boolean(state.answer);
    const stopHadFocus = document.activeElement === ui.stop;
    ui.stop.hidden = !answering;
    ui.send.hidden = answering;
    ui.send.disabled = state.sending;
    for (const b of ui.thread.querySelectorAll(".meta button")) b.disabled = busy();
    if (stopHadFocus && !answering) ui.input.focus();
    markGenerating();
  }

  /** An answer of the open conversation: `mode` is how the page holds it ("cancel" or
      "finish": its own stream, with that policy; "follow": written elsewhere). */
  function begin(el, messageId, mode) {
    const answer = {
      el, messageId, mode, session: state.current, lastId: null, ended: null, error: null,
      stopWanted: false, controller: new AbortController(),
    };
    state.answer = answer;
    updateControls();
    return answer;
  }

  function done(answer) {
    if (state.answer === answer) state.answer = null;
    state.lastEnd = Date.now();
    updateControls();
  }

  /** Reads an answer's events from `res` into `answer` until its end or a break. */
  async function readEvents(res, answer) {
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done: finished } = await reader.read();
      if (finished) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        let data = "";
        let id = null;
        for (const line of frame.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
          else if (line.startsWith("id:")) id = line.slice(3).trim();
        }
        if (data) handle(answer, event, JSON.parse(data));
        if (id !== null) answer.lastId = id; // the text this page now has
        if (answer.ended) {
          reader.cancel().catch(() => {});
          return;
        }
      }
    }
  }

  function handle(answer, event, data) {
    const el = answer.el;
    if (event === "start") {
      answer.messageId = data.message_id;
      el.dataset.id = data.message_id;
      if (answer.stopWanted) stopAnswer();
    } else if (event === "snapshot") {
      setText(el, data.text);
      if (el.view.phase !== "live" && data.text) paint(el, { phase: "live" });
    } else if (event === "delta") {
      setText(el, el.source + data.text);
      if (el.view.phase !== "live") paint(el, { phase: "live" });
    } else if (event === "error") {
      answer.error = data.message;
    } else if (event === "end") {
      answer.ended = data;
    }
  }

  /** Runs an answer from its first response; a broken connection is resumed with a
      follow from the last event id, retried until the server answers again. */
  async function run(answer, first) {
    const { signal } = answer.controller;
    let connect = first;
    for (let attempt = 0; ;) {
      try {
        const res = await connect(signal);
        if (!res.ok) throw await failure(res);
        if (answer.el.view.phase === "reconnecting") {
          paint(answer.el, { phase: answer.el.source ? "live" : "waiting" });
          announce("Reconnected.");
        }
        attempt = 0;
        await readEvents(res, answer);
      } catch (err) {
        if (signal.aborted) return;
        // A proxy's 502-504 while the server restarts: as good as no connection.
        if (err instanceof HttpError && ![502, 503, 504].includes(err.status)) return failed(answer, err);
      }
      if (signal.aborted) return;
      if (answer.ended) return ended(answer);
      if (!answer.messageId) return lostBeforeStart(answer);
      if (attempt === 0) announce("Connection lost. Reconnecting…");
      paint(answer.el, { phase: "reconnecting" });
      await sleep(Math.min(400 * 2 ** attempt, 3000), signal);
      attempt += 1;
      connect = (s) => fetch(`/api/messages/${enc(answer.messageId)}/follow`,
        { signal: s, headers: answer.lastId ? { "last-event-id": answer.lastId } : {} });
    }
  }

  function ended(answer) {
    const end = answer.ended;
    const view = {
      phase: "done", interrupted: Boolean(end.interrupted),
      finish_reason: end.finish_reason ?? null, error: answer.error,
    };
    if (view.interrupted && view.finish_reason === null && answer.error) view.finish_reason = "provider_error";
    paint(answer.el, view);
    done(answer);
    const kind = outcome(view)?.kind;
    const text = plainText(answer.el);
    if (!kind) announce(`Answer: ${text}`);
    else if (kind === "stopped") announce("Answer stopped.");
    else if (kind === "error") announce("The model didn't answer. Retry is below the message.");
    else announce("The answer was cut off. Continue is below it.");
    refreshSessions();
  }

  function failed(answer, err) {
    done(answer);
    if (err.status === 401) return identityLost();
    if (err.status === 404 || err.status === 403) {
      notify("This conversation no longer exists.");
      refreshSessions();
      return newChat();
    }
    if (err.status === 409) notify("An answer is still being written in this conversation.");
    else notify(`The server refused: ${err.message}`);
    return reopen();
  }

  /** The stream broke before the server named the answer: show the conversation as
      stored once the server is back. */
  async function lostBeforeStart(answer) {
    const { signal } = answer.controller;
    paint(answer.el, { phase: "reconnecting" });
    announce("Connection lost. Reconnecting…");
    for (let attempt = 0; !signal.aborted; attempt++) {
      await sleep(Math.min(400 * 2 ** attempt, 3000), signal);
      try {
        await api("/api/sessions");
        break;
      } catch (err) {
        if (err instanceof HttpError) break;
      }
    }
    if (signal.aborted) return;
    done(answer);
    reopen();
  }

  function follow(el, messageId) {
    const answer = begin(el, messageId, "follow");
    run(answer, (signal) => fetch(`/api/messages/${enc(messageId)}/follow`, { signal }));
  }

  async function stopAnswer() {
    const answer = state.answer;
    if (!answer) return;
    if (!answer.messageId) { // not named yet: stopped as soon as it is
      answer.stopWanted = true;
      return;
    }
    ui.stop.disabled = true;
    try {
      await api(`/api/messages/${enc(answer.messageId)}/stop`, { method: "POST" });
    } catch (err) {
      if (err instanceof HttpError && err.status === 401) identityLost();
      else notify("Couldn't stop the answer: no connection to the server.", { label: "Try again", run: stopAnswer });
    } finally {
      ui.stop.disabled = false;
    }
  }

  // -- sending ---------------------------------------------------------------------------

  function titleOf(text) {
    const line = text.split("\n").find((l) => l.trim()) || text;
    const flat = line.replace(/\s+/g, " ").trim();
    if (flat.length <= 40) return flat;
    const cut = flat.slice(0, 40);
    const space = cut.lastIndexOf(" ");
    return `${(space > 20 ? cut.slice(0, space) : cut).replace(/[\s,;:.-]+$/, "")}…`;
  }

  function submit() {
    const text = ui.input.value.trim();
    if (!text) return;
    if (busy()) {
      if (state.answer) notify("An answer is being written: wait for it, or stop it, before you send the next message.");
      return;
    }
    ui.input.value = "";
    autosize();
    send(text, newId());
  }

  /** Sends a question: stored first on the server; if it cannot be sent, it goes back
      into the input and a notice offers to send it again (same id: never stored twice). */
  async function send(text, questionId) {
    clearNotice();
    state.sending = true;
    updateControls();
    let sid = state.current;
    if (!sid) {
      const ticket = state.opening;
      try {
        sid = (await api("/api/sessions", { method: "POST", body: { title: titleOf(text) } })).id;
      } catch (err) {
        state.sending = false;
        updateControls();
        return notSent(text, questionId, err);
      }
      if (ticket !== state.opening) { // another conversation was opened meanwhile
        if (!ui.input.value.trim()) ui.input.value = text;
        return refreshSessions();
      }
      state.current = sid;
      updateUrl();
      refreshSessions();
    }
    const question = addMessage("user", text);
    const el = addMessage("assistant", "");
    paint(el, { phase: "waiting" });
    toBottom();
    const mode = policy();
    const answer = begin(el, null, mode);
    let res;
    try {
      res = await fetch(`/api/sessions/${enc(sid)}/messages?policy=${mode}`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ text, id: questionId }), signal: answer.controller.signal,
      });
      if (!res.ok) throw await failure(res);
    } catch (err) {
      state.sending = false;
      if (answer.controller.signal.aborted) return;
      question.remove();
      el.remove();
      done(answer);
      if (err instanceof HttpError && err.status === 409) {
        notify("An answer is still being written in this conversation.");
        return reopen();
      }
      return notSent(text, questionId, err);
    }
    state.sending = false;
    updateControls();
    refreshSessions();
    await run(answer, async () => res);
  }

  function notSent(text, questionId, err) {
    if (!ui.input.value.trim()) {
      ui.input.value = text;
      autosize();
    }
    if (err instanceof HttpError && err.status === 401) return identityLost();
    if (err instanceof HttpError && (err.status === 404 || err.status === 403)) {
      newChat(); // the conversation was deleted (in another tab): the message starts a new one
      ui.input.value = text;
      autosize();
      refreshSessions();
      notify("This conversation no longer exists. Your message is kept: send it to start a new one.");
      return;
    }
    const why = err instanceof HttpError ? `The server refused it: ${err.message}.` : "No connection to the server.";
    notify(`Your message wasn't sent. ${why}`, {
      label: "Retry",
      run: () => {
        if (busy()) return;
        if (ui.input.value.trim() === text) {
          ui.input.value = "";
          autosize();
        }
        send(text, questionId);
      },
    });
    ui.input.focus();
  }

  /** Continue (or Retry) an answer that ended: new text goes into the same message. */
  async function continueAnswer(el) {
    if (busy() || !el.dataset.id) return;
    clearNotice();
    const before = el.view;
    paint(el, { phase: el.source ? "live" : "waiting" });
    const mode = policy();
    const answer = begin(el, el.dataset.id, mode);
    ui.input.focus(); // the button is gone: focus goes to the input, not to the page
    let res;
    try {
      res = await fetch(`/api/messages/${enc(el.dataset.id)}/continue?policy=${mode}`,
        { method: "POST", signal: answer.controller.signal });
      if (!res.ok) throw await failure(res);
    } catch (err) {
      if (answer.controller.signal.aborted) return;
      done(answer);
      paint(el, before);
      if (!(err instanceof HttpError)) {
        notify("Couldn't reach the server to continue the answer.", { label: "Try again", run: () => continueAnswer(el) });
      } else if (err.status === 401) {
        identityLost();
      } else {
        notify(err.status === 409 ? "An answer is still being written in this conversation." : `The server refused: ${err.message}`);
        reopen();
      }
      return;
    }
    await run(answer, async () => res);
  }

  // -- conversations -----------------------------------------------------------------------

  function updateUrl() {
    const url = state.current ? `?session=${enc(state.current)}` : location.pathname;
    history.replaceState(null, "", url);
  }

  function showTitle() {
    const s = state.sessions.find((x) => x.id === state.current);
    const title = state.current ? (s ? s.title || "New chat" : ui.title.textContent) : "New chat";
    ui.title.textContent = title;
    document.title = `${title} · chatpersist`;
  }

  function showEmpty() {
    const box = document.createElement("div");
    box.className = "empty";
    const strong = document.createElement("strong");
    strong.textContent = "Ask anything";
    box.append(strong, "Answers are saved while they stream: switch conversations, reload or lose the connection, and they are still here.");
    ui.thread.replaceChildren(box);
  }

  /** Leaves the open conversation's answer: a stream this page holds is closed (the
      server then stops it, or lets it finish with "Keep generating when I leave"). */
  function leave() {
    const answer = state.answer;
    if (answer) {
      answer.controller.abort();
      state.answer = null;
      if (answer.mode !== "cancel") { // it goes on without this page: say so in the sidebar
        const li = [...ui.sessions.children].find((x) => x.dataset.id === answer.session);
        if (li) li.dataset.generating = "1";
      }
    }
    state.sending = false;
    clearNotice();
    updateControls();
    if (answer) refreshSessions();
  }

  async function openSession(id, { force = false, focusInput = false } = {}) {
    if (id === state.current && !force) { // already open: nothing to leave
      closeDrawer(focusInput);
      return;
    }
    leave();
    state.current = id;
    updateUrl();
    markActive();
    showTitle();
    const ticket = ++state.opening;
    let list;
    try {
      list = await api(`/api/sessions/${enc(id)}/messages`);
    } catch (err) {
      if (ticket !== state.opening) return;
      if (err instanceof HttpError && err.status === 401) return identityLost();
      if (err instanceof HttpError) {
        notify("This conversation no longer exists.");
        refreshSessions();
        return newChat();
      }
      ui.thread.replaceChildren();
      notify("Couldn't load this conversation: no connection to the server.",
        { label: "Retry", run: () => openSession(id, { force: true }) });
      return;
    }
    if (ticket !== state.opening) return;
    ui.thread.replaceChildren();
    for (const m of list) {
      const el = addMessage(m.role, m.content, m.id);
      if (m.role === "user") continue;
      paint(el, viewOf(m));
      if (m.live && !state.answer) follow(el, m.id);
    }
    if (!list.length) showEmpty();
    toBottom();
    updateControls();
    closeDrawer(focusInput);
  }

  function reopen() {
    if (state.current) openSession(state.current, { force: true });
  }

  function newChat() {
    leave();
    state.current = null;
    state.opening++;
    updateUrl();
    markActive();
    showTitle();
    showEmpty();
    closeDrawer(true);
    ui.input.focus();
  }

  // -- the sidebar -----------------------------------------------------------------------

  const ICONS = {
    rename: "M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4",
    delete: "M5 7h14M10 11v6M14 11v6M7 7l1 13h8l1-13M9 7V4h6v3",
  };

  function icon(path) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    const p = document.createElementNS("http://www.w3.org/2000/svg", "path");
    p.setAttribute("d", path);
    svg.append(p);
    return svg;
  }

  async function refreshSessions() {
    const asked = Date.now();
    let list;
    try {
      list = await api("/api/sessions");
    } catch (err) {
      if (err instanceof HttpError && err.status === 401) identityLost();
      return null;
    }
    state.sessions = list;
    renderSessions();
    showTitle();
    // An answer started elsewhere (another tab) in the open conversation: follow it,
    // so that this tab shows it and its Stop too.
    const open = list.find((s) => s.id === state.current);
    if (open && open.generating && !busy() && asked > state.lastEnd) reopen();
    return list;
  }

  function renderSessions() {
    const ul = ui.sessions;
    if (ul.querySelector(".rename-input, .confirm")) return; // the user is editing an item
    const have = new Map([...ul.children].map((li) => [li.dataset.id, li]));
    state.sessions.forEach((s, i) => {
      let li = have.get(s.id);
      have.delete(s.id);
      if (!li) li = sessionItem(s.id);
      updateItem(li, s);
      if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);
    });
    for (const li of have.values()) li.remove();
    markActive();
  }

  function sessionItem(id) {
    const li = document.createElement("li");
    li.dataset.id = id;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    const label = document.createElement("span");
    label.className = "label";
    open.append(label);
    open.addEventListener("click", () => openSession(id, { focusInput: NARROW.matches }));
    const actions = document.createElement("span");
    actions.className = "item-actions";
    for (const [kind, act] of [["rename", startRename], ["delete", askDelete]]) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = `icon-button ${kind}`;
      b.append(icon(ICONS[kind]));
      b.addEventListener("click", () => act(li));
      actions.append(b);
    }
    li.append(open, actions);
    return li;
  }

  function updateItem(li, s) {
    const title = s.title || "New chat";
    const label = li.querySelector(".label");
    if (label.textContent !== title) label.textContent = title;
    li.querySelector(".open").title = title;
    li.querySelector(".rename").setAttribute("aria-label", `Rename “${title}”`);
    li.querySelector(".delete").setAttribute("aria-label", `Delete “${title}”`);
    li.dataset.generating = s.generating ? "1" : "";
    showMarker(li);
  }

  function showMarker(li) {
    const mine = state.answer && state.answer.session === li.dataset.id;
    const on = Boolean(li.dataset.generating) || Boolean(mine);
    const open = li.querySelector(".open");
    let marker = open.querySelector(".marker");
    if (on && !marker) {
      marker = document.createElement("span");
      marker.className = "marker";
      marker.title = "An answer is being written";
      const sr = document.createElement("span");
      sr.className = "sr-only";
      sr.textContent = "(generating)";
      marker.append(sr);
      open.append(marker);
    } else if (!on && marker) {
      marker.remove();
    }
    li.classList.toggle("generating", on);
  }

  function markGenerating() {
    for (const li of ui.sessions.children) showMarker(li);
  }

  function markActive() {
    for (const li of ui.sessions.children) {
      const active = li.dataset.id === state.current;
      li.classList.toggle("active", active);
      const open = li.querySelector(".open");
      if (open) {
        if (active) open.setAttribute("aria-current", "page");
        else open.removeAttribute("aria-current");
      }
    }
  }

  function titleOfItem(li) {
    const s = state.sessions.find((x) => x.id === li.dataset.id);
    return (s && s.title) || "New chat";
  }

  function editing(li, on) {
    li.querySelector(".open").hidden = on;
    li.querySelector(".item-actions").hidden = on;
  }

  function startRename(li) {
    const id = li.dataset.id;
    const old = titleOfItem(li);
    const input = document.createElement("input");
    input.className = "rename-input";
    input.value = old;
    input.maxLength = 200;
    input.setAttribute("aria-label", "Conversation title");
    editing(li, true);
    li.prepend(input);
    input.focus();
    input.select();
    let finished = false;
    const finish = async (save) => {
      if (finished) return;
      finished = true;
      const title = input.value.replace(/\s+/g, " ").trim();
      input.remove();
      editing(li, false);
      li.querySelector(".open").focus();
      if (!save || !title || title === old) return;
      li.querySelector(".label").textContent = title;
      try {
        await api(`/api/sessions/${enc(id)}`, { method: "PATCH", body: { title } });
        announce(`Renamed to ${title}.`);
      } catch (err) {
        if (err instanceof HttpError && err.status === 401) identityLost();
        else notify("Couldn't rename the conversation.");
      }
      refreshSessions();
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); finish(true); }
      if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); finish(false); }
    });
    input.addEventListener("blur", () => finish(true));
  }

  function askDelete(li) {
    const id = li.dataset.id;
    const title = titleOfItem(li);
    const box = document.createElement("div");
    box.className = "confirm";
    const question = document.createElement("span");
    question.textContent = `Delete “${title}”?`;
    const really = document.createElement("button");
    really.type = "button";
    really.className = "really";
    really.textContent = "Delete";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.textContent = "Cancel";
    box.append(question, really, cancel);
    editing(li, true);
    li.append(box);
    cancel.focus();
    const back = () => {
      box.remove();
      editing(li, false);
      li.querySelector(".delete").focus();
    };
    cancel.addEventListener("click", back);
    box.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); back(); }
    });
    really.addEventListener("click", async () => {
      really.disabled = true;
      const wasOpen = id === state.current;
      if (wasOpen) leave();
      try {
        await api(`/api/sessions/${enc(id)}`, { method: "DELETE" });
      } catch (err) {
        back();
        if (err instanceof HttpError && err.status === 401) identityLost();
        else notify("Couldn't delete the conversation.");
        return;
      }
      const next = li.nextElementSibling || li.previousElementSibling;
      li.remove();
      state.sessions = state.sessions.filter((s) => s.id !== id);
      announce(`Deleted “${title}”.`);
      if (wasOpen) newChat();
      else (next ? next.querySelector(".open") : ui.newChat).focus();
      refreshSessions();
    });
  }

  // Arrow keys move between conversations (Tab leaves the list).
  ui.sessions.addEventListener("keydown", (e) => {
    if (!["ArrowDown", "ArrowUp", "Home", "End"].includes(e.key)) return;
    if (!e.target.classList || !e.target.classList.contains("open")) return;
    const items = [...ui.sessions.querySelectorAll(".open:not([hidden])")];
    let i = items.indexOf(e.target);
    if (e.key === "Home") i = 0;
    else if (e.key === "End") i = items.length - 1;
    else i += e.key === "ArrowDown" ? 1 : -1;
    if (items[i]) {
      e.preventDefault();
      items[i].focus();
    }
  });

  // -- the drawer (narrow screens) ----------------------------------------------------------

  const drawerOpen = () => ui.sidebar.classList.contains("open");

  function openDrawer() {
    ui.sidebar.classList.add("open");
    ui.scrim.hidden = false;
    ui.menu.setAttribute("aria-expanded", "true");
    (ui.sessions.querySelector("li.active .open") || ui.newChat).focus();
  }

  function closeDrawer(focusInput) {
    if (!drawerOpen()) return;
    ui.sidebar.classList.remove("open");
    ui.scrim.hidden = true;
    ui.menu.setAttribute("aria-expanded", "false");
    (focusInput ? ui.input : ui.menu).focus();
  }

  ui.menu.addEventListener("click", openDrawer);
  ui.closeSidebar.addEventListener("click", () => closeDrawer(false));
  ui.scrim.addEventListener("click", () => closeDrawer(false));
  NARROW.addEventListener("change", () => {
    if (!NARROW.matches && drawerOpen()) closeDrawer(false);
  });

  // -- the composer and the keyboard ------------------------------------------------------

  function autosize() {
    ui.input.style.height = "auto";
    ui.input.style.height = `${Math.min(ui.input.scrollHeight + 2, Math.round(window.innerHeight * 0.4))}px`;
  }

  ui.input.addEventListener("input", autosize);
  ui.input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { // Shift+Enter: a new line
      e.preventDefault();
      submit();
    }
  });
  ui.form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  ui.stop.addEventListener("click", stopAnswer);
  ui.newChat.addEventListener("click", newChat);
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || e.defaultPrevented) return;
    if (drawerOpen()) {
      closeDrawer(false);
    } else if (state.answer) {
      e.preventDefault();
      stopAnswer();
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshSessions();
  });
  // The sidebar's "generating" markers, and answers started in another tab.
  setInterval(() => { if (!document.hidden) refreshSessions(); }, 2000);

  // -- start -------------------------------------------------------------------------------

  async function start() {
    setupKeep();
    ui.input.focus(); // before anything loads: the page is for typing
    const wanted = new URLSearchParams(location.search).get("session");
    const list = (await refreshSessions()) || [];
    if (state.current || state.sending) return; // the user began meanwhile
    if (wanted && list.some((s) => s.id === wanted)) await openSession(wanted);
    else if (list.length) await openSession(list[0].id);
    else showEmpty();
    if (document.activeElement === document.body) ui.input.focus();
  }

  start();
})();
