import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport, type UIMessage } from 'ai';
import { type FormEvent, useEffect, useState } from 'react';

// The metadata chatpersist.aisdk puts on each message (stored and streamed).
type Meta = {
  status?: string;
  finishReason?: string | null;
  interrupted?: boolean;
  live?: boolean;
};
type Msg = UIMessage<Meta>;

const transport = new DefaultChatTransport<Msg>({ api: '/api/chat' });
const CHATS = 'aisdk-chat:chats';
const CURRENT = 'aisdk-chat:current';

function storedChats(): string[] {
  try {
    const value: unknown = JSON.parse(localStorage.getItem(CHATS) ?? '[]');
    return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
  } catch {
    return [];
  }
}

async function fetchMessages(chatId: string): Promise<Msg[]> {
  const response = await fetch(`/api/chat/${chatId}/messages`);
  if (!response.ok) throw new Error(`loading the chat failed: ${response.status}`);
  return (await response.json()) as Msg[];
}

function post(chatId: string, messageId: string, action: 'stop' | 'continue') {
  return fetch(`/api/chat/${chatId}/messages/${messageId}/${action}`, { method: 'POST' });
}

export function App() {
  const [chats, setChats] = useState<string[]>(() => {
    const stored = storedChats();
    return stored.length ? stored : [crypto.randomUUID()];
  });
  const [current, setCurrent] = useState<string>(() => {
    const stored = localStorage.getItem(CURRENT);
    return stored && chats.includes(stored) ? stored : chats[0];
  });
  useEffect(() => {
    localStorage.setItem(CHATS, JSON.stringify(chats));
    localStorage.setItem(CURRENT, current);
  }, [chats, current]);

  function newChat() {
    const id = crypto.randomUUID(); // chat ids: 16 characters or more
    setChats([id, ...chats]);
    setCurrent(id);
  }

  return (
    <>
      <aside>
        <button data-testid="new-chat" onClick={newChat}>New chat</button>
        <ul>
          {chats.map(id => (
            <li key={id}>
              <button
                data-testid="chat-link"
                data-chat-id={id}
                className={id === current ? 'active' : ''}
                onClick={() => setCurrent(id)}
              >
                {id.slice(0, 8)}
              </button>
            </li>
          ))}
        </ul>
      </aside>
      <main>
        {/* keyed by chat id: switching conversations remounts the chat */}
        <Conversation key={current} chatId={current} />
      </main>
    </>
  );
}

/** Loads the chat's stored messages, then hands them to useChat. */
function Conversation({ chatId }: { chatId: string }) {
  const [initial, setInitial] = useState<Msg[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let mounted = true;
    fetchMessages(chatId).then(
      messages => mounted && setInitial(messages),
      (e: unknown) => mounted && setError(String(e)),
    );
    return () => {
      mounted = false;
    };
  }, [chatId]);
  if (error) return <p data-testid="error">{error}</p>;
  if (!initial) return <p>Loading…</p>;
  return <Chat chatId={chatId} initial={initial} />;
}

function Chat({ chatId, initial }: { chatId: string; initial: Msg[] }) {
  // resume: true: on mount, GET /api/chat/{id}/stream picks up an answer still
  // being written (after a switch, a reload or a lost connection).
  const { messages, sendMessage, status, stop, resumeStream, setMessages, error } =
    useChat<Msg>({ id: chatId, messages: initial, transport, resume: true });
  const [input, setInput] = useState('');
  const busy = status === 'submitted' || status === 'streaming';
  const last = messages.at(-1);
  const answering = busy && last?.role === 'assistant' ? last.id : undefined;

  function send(event: FormEvent) {
    event.preventDefault();
    if (!input.trim() || busy) return;
    void sendMessage({ text: input });
    setInput('');
  }

  async function onStop() {
    // Closing the stream alone would not stop the answer (the server finishes it
    // for when the user comes back): Stop says so, then stops reading.
    if (answering) await post(chatId, answering, 'stop');
    await stop();
    if (answering) {
      // The stored answer as it ended: its text and its "interrupted" mark.
      for (let i = 0; i < 50; i++) {
        const stored = await fetchMessages(chatId);
        if (!stored.find(m => m.id === answering)?.metadata?.live) {
          setMessages(stored);
          break;
        }
        await new Promise(resolve => setTimeout(resolve, 100));
      }
    }
  }

  async function onContinue(messageId: string) {
    const response = await post(chatId, messageId, 'continue');
    if (response.status === 202) await resumeStream(); // the answer goes on: follow it
  }

  return (
    <div className="chat" data-testid="chat" data-chat-id={chatId} data-status={status}>
      <div className="messages">
        {messages.map(m => {
          const text = m.parts.map(p => (p.type === 'text' ? p.text : '')).join('');
          const streaming = busy && m.id === last?.id;
          const cut = m.role === 'assistant' && !streaming && m.metadata?.interrupted;
          return (
            <div
              key={m.id}
              className={`msg ${m.role}`}
              data-testid="message"
              data-role={m.role}
              data-message-id={m.id}
            >
              <div className="text" data-testid="message-text">{text}</div>
              {cut && (
                <div className="interrupted">
                  <span data-testid="interrupted">(response interrupted)</span>{' '}
                  {!busy && (
                    <button data-testid="continue" onClick={() => void onContinue(m.id)}>
                      Continue
                    </button>
                  )}
                </div>
              )}
            </div>
          );
        })}
      </div>
      {error && <p data-testid="error">{error.message}</p>}
      <form onSubmit={send}>
        <input
          data-testid="input"
          value={input}
          onChange={e => setInput(e.target.value)}
          placeholder="Ask something long…"
        />
        {busy ? (
          <button type="button" data-testid="stop" onClick={() => void onStop()}>
            Stop
          </button>
        ) : (
          <button type="submit" data-testid="send">Send</button>
        )}
      </form>
    </div>
  );
}
