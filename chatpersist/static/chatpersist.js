/* chatpersist.js: save the answer a page is streaming, so it survives the page.
 *
 * For apps whose page receives the chunks and the server only stores them:
 *
 *   const saver = ChatPersist.partialSaver({
 *     url: `/api/messages/${messageId}/partial`, sessionId,
 *     everyChunks: 20, everyMs: 2000, headers: {"x-csrf-token": token},
 *   });
 *   saver.append(chunk);            // for every chunk received
 *   saver.finish();                 // the answer is complete
 *   saver.finish("stopped");        // the user pressed Stop (kept, marked interrupted)
 *
 * It PUTs {session_id, seq, content, done, finish_reason} every N chunks or T ms, and
 * once more on `pagehide` (tab closed, reload, navigation) with `fetch(..., {keepalive})`.
 * The server side is `ChatStreams.save_partial_endpoint`; it is seq-guarded, so late
 * or repeated requests change nothing. No dependencies.
 */
(function (global) {
  "use strict";

  function partialSaver(options) {
    const everyChunks = options.everyChunks || 20;
    const everyMs = options.everyMs || 2000;
    let text = "";
    let seq = 0;
    let pending = 0;
    let timer = null;
    let ended = false;

    function send(done, reason, keepalive) {
      seq += 1;
      pending = 0;
      if (timer !== null) { clearTimeout(timer); timer = null; }
      const body = JSON.stringify({
        session_id: options.sessionId, seq: seq, content: text,
        done: done, finish_reason: reason || null,
      });
      return fetch(options.url, {
        method: "PUT",
        headers: Object.assign({"content-type": "application/json"}, options.headers || {}),
        body: body,
        // Browsers cap keepalive bodies at 64 KiB; a larger final save is sent
        // normally and may not finish if the page is already gone.
        keepalive: keepalive && body.length < 60000,
      }).catch(function () { /* the next save carries the whole text again */ });
    }

    function onPageHide() {
      if (!ended) { ended = true; send(true, "disconnected", true); }
    }
    global.addEventListener("pagehide", onPageHide);

    return {
      get text() { return text; },
      get seq() { return seq; },
      append: function (chunk) {
        if (ended) return;
        text += chunk;
        pending += 1;
        if (pending >= everyChunks) { send(false); }
        else if (timer === null) { timer = setTimeout(function () { send(false); }, everyMs); }
      },
      flush: function () { return send(false); },
      finish: function (reason) {
        if (ended) return Promise.resolve();
        ended = true;
        global.removeEventListener("pagehide", onPageHide);
        return send(true, reason, true);
      },
    };
  }

  global.ChatPersist = { partialSaver: partialSaver };
})(typeof window !== "undefined" ? window : globalThis);
