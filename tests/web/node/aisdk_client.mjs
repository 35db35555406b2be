// The AI SDK's own client against a chatpersist.aisdk backend (tests/web/test_aisdk_node.py).
//
//     node aisdk_client.mjs BASE_URL SCENARIO
//
// Talks to BASE_URL/api/chat through `DefaultChatTransport` (`sendMessages`,
// `reconnectToStream`): its fetch, its SSE parsing and its validation of every chunk
// against the `ai` package's UI message chunk schema. `readUIMessageStream` turns the
// chunks into UIMessages, as `useChat` does. Prints one JSON object on stdout.
//
// Scenarios:
//   full       send a message, read the whole answer; then reconnect (answer finished).
//   reconnect  send, read a few chunks, abort, reconnectToStream and read it to the end;
//              then reconnect again (answer finished).
//   no-live    reconnectToStream for a chat with nothing live.
//   error      send a message whose answer fails (the test's model server breaks it).

import { randomUUID } from "node:crypto";
import { DefaultChatTransport, readUIMessageStream } from "ai";

const [base, scenario] = process.argv.slice(2);
if (!base || !scenario) {
  console.error("usage: node aisdk_client.mjs BASE_URL full|reconnect|no-live|error");
  process.exit(2);
}

const transport = new DefaultChatTransport({ api: `${base.replace(/\/$/, "")}/api/chat` });

function userMessage(text) {
  return { id: randomUUID(), role: "user", parts: [{ type: "text", text }] };
}

function send(chatId, text, abortSignal) {
  return transport.sendMessages({
    chatId,
    messages: [userMessage(text)],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal,
  });
}

const textOf = (message) =>
  (message?.parts ?? []).filter((p) => p.type === "text").map((p) => p.text).join("");

const describe = (error) => String(error?.message ?? error);

/** Reads a chunk stream into UIMessages; `until(message)` stops early. */
async function read(stream, until = () => false) {
  const chunks = [];
  const errors = []; // readUIMessageStream's onError: `error` chunks, rejected chunks, a broken stream
  const tapped = stream.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        chunks.push(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
  let message;
  let thrown = null;
  try {
    for await (const m of readUIMessageStream({
      stream: tapped,
      onError: (e) => errors.push(describe(e)),
    })) {
      message = m;
      if (until(m)) break;
    }
  } catch (e) {
    thrown = describe(e);
  }
  // The chunk types in order, runs of one type counted (["text-delta", 270] ...).
  const types = [];
  for (const c of chunks) {
    const last = types[types.length - 1];
    if (last && last[0] === c.type) last[1] += 1;
    else types.push([c.type, 1]);
  }
  const finish = chunks.find((c) => c.type === "finish");
  return {
    messageId: message?.id ?? null,
    role: message?.role ?? null,
    text: textOf(message),
    textParts: (message?.parts ?? []).filter((p) => p.type === "text").length,
    textState: (message?.parts ?? []).filter((p) => p.type === "text").map((p) => p.state),
    partTypes: (message?.parts ?? []).map((p) => p.type),
    reasoning: (message?.parts ?? [])
      .filter((p) => p.type === "reasoning")
      .map((p) => p.text)
      .join(""),
    metadata: message?.metadata ?? null,
    finishReason: finish ? (finish.finishReason ?? null) : null,
    chunkTypes: types.map(([t, n]) => (n > 1 ? `${t}*${n}` : t)),
    errorChunks: chunks.filter((c) => c.type === "error").map((c) => c.errorText),
    errors,
    thrown,
  };
}

/** reconnectToStream: null on a 204; else the stream read to its end. */
async function reconnect(chatId) {
  const stream = await transport.reconnectToStream({ chatId });
  return stream === null ? null : read(stream);
}

const scenarios = {
  async full() {
    const chatId = randomUUID();
    const answer = await read(await send(chatId, "Why save drafts?"));
    return { chatId, answer, afterFinish: await reconnect(chatId) };
  },

  async reconnect() {
    const chatId = randomUUID();
    const connection = new AbortController();
    // A few chunks, then the tab goes away mid-answer.
    const partial = await read(
      await send(chatId, "Why save drafts?", connection.signal),
      (m) => textOf(m).length >= 24,
    );
    connection.abort();
    const resumed = await reconnect(chatId);
    return {
      chatId,
      resumeStreamIsReplay: transport.resumeStreamIsReplay,
      partial,
      resumed,
      afterFinish: await reconnect(chatId),
    };
  },

  async "no-live"() {
    const chatId = randomUUID();
    return { chatId, result: await reconnect(chatId) };
  },

  async error() {
    const chatId = randomUUID();
    const answer = await read(await send(chatId, "Why save drafts?"));
    return { chatId, answer, afterFinish: await reconnect(chatId) };
  },
};

if (!(scenario in scenarios)) {
  console.error(`unknown scenario ${JSON.stringify(scenario)}`);
  process.exit(2);
}
try {
  const result = await scenarios[scenario]();
  process.stdout.write(`${JSON.stringify({ scenario, node: process.version, ...result })}\n`);
} catch (e) {
  // A failure of the transport itself (HTTP error, parse error): the test shows it.
  process.stdout.write(
    `${JSON.stringify({ scenario, failed: `${e?.name ?? "Error"}: ${describe(e)}` })}\n`,
  );
  process.exitCode = 1;
}
