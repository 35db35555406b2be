"""Live answers fanned out to their followers, and resumed by offset.

An answer generated in this process is followed from memory: every delta reaches its
followers here as it is appended, with no database read. Followers in other processes
get the deltas through PostgreSQL NOTIFY (one listening connection per process, one
publishing connection while answers are generated) and read what they miss from the
database by offset; SQLite and MariaDB followers poll. The database stays the source
of truth: a follower that falls behind, or sees a gap, resyncs from it.

Every event names the position it leaves the client at: `<offset>.<crc32>`, the
number of characters of the message's text the client has and a checksum of them, so
a client that reconnects with that id gets exactly the text after it, and a text that
was rewritten meanwhile (regenerated) is told apart and sent whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ._async_store import AsyncChatStore
from ._message import Message

log = logging.getLogger("chatpersist")

#: Channels: flush notices (ids, from the writer) and live deltas (JSON, from here).
FLUSH_CHANNEL = "chatpersist"
LIVE_CHANNEL = "chatpersist_live"
#: Bytes per notification: PostgreSQL refuses payloads of 8000 bytes or more.
_NOTIFY_BYTES = 7900
#: Events a follower may have queued before it is resynced instead (bounded memory).
QUEUE_LIMIT = 1000
#: Characters a follower re-reads before its offset to check the text is still its own.
_OVERLAP = 32


@dataclass
class Position:
    """How much of a message's text a client has: an offset in characters and the
    CRC-32 of those characters' UTF-8."""

    offset: int = 0
    crc: int = 0

    @classmethod
    def of(cls, text: str) -> Position:
        return cls(len(text), zlib.crc32(text.encode("utf-8", "surrogatepass")))

    def advance(self, piece: str) -> None:
        self.offset += len(piece)
        self.crc = zlib.crc32(piece.encode("utf-8", "surrogatepass"), self.crc)

    @property
    def event_id(self) -> str:
        return f"{self.offset}.{self.crc:08x}"


def parse_event_id(value: str | None) -> tuple[int, int | None] | None:
    """`<offset>.<crc>` (a `Last-Event-ID`) or a bare offset; None when malformed."""
    if not value:
        return None
    offset, _, crc = value.strip().partition(".")
    try:
        n = int(offset)
        checksum = int(crc, 16) if crc else None
    except ValueError:
        return None
    if n < 0 or (checksum is not None and not 0 <= checksum < 2**32):
        return None
    return n, checksum


def resume_from(text: str, resume: tuple[int, int | None] | None) -> str | None:
    """What a client at `resume` misses of `text`, or None when it must be sent whole
    (no position, past the end, or a text that is not the one it had)."""
    if resume is None:
        return None
    offset, crc = resume
    if offset > len(text):
        return None
    if crc is not None and Position.of(text[:offset]).crc != crc:
        return None
    return text[offset:]


@dataclass
class Event:
    """What a follower gets: ("delta", start offset, text), ("end", -1, payload),
    ("flushed", -1, None)."""

    kind: str
    start: int
    payload: Any


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    #: It fell behind and events were dropped: it must resync.
    lagging: bool = False

    def put(self, event: Event) -> None:
        if self.lagging:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagging = True
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(Event("lagging", -1, None))


@dataclass(eq=False)
class Live:
    """An answer being generated in this process."""

    parts: list[str]
    position: Position
    ended: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""


class Hub:
    """Per `ChatStreams` (one per process): the answers generated here and every
    follower of any answer, with the process's one listener and one publisher."""

    def __init__(self, store: AsyncChatStore) -> None:
        self.store = store
        self._live: dict[str, Live] = {}
        self._subs: dict[str, set[Subscriber]] = {}
        self._pg = store.sync.engine.dialect.name == "postgresql"
        self._listener: _Listener | None = None
        self._publisher: _Publisher | None = None

    # -- the generating side --

    def begin(self, message_id: str, text: str) -> Position:
        live = Live([text] if text else [], Position.of(text))
        self._live[message_id] = live
        return Position(live.position.offset, live.position.crc)

    def append(self, message_id: str, piece: str) -> None:
        live = self._live[message_id]
        start = live.position.offset
        live.parts.append(piece)
        live.position.advance(piece)
        self.deliver(message_id, Event("delta", start, piece))
        if self._pg:
            if self._publisher is None:
                self._publisher = _Publisher(self.store)
            self._publisher.publish(message_id, start, piece)

    def end(self, message_id: str, payload: dict[str, Any]) -> None:
        live = self._live.pop(message_id, None)
        if live is not None:
            live.ended = payload
        self.deliver(message_id, Event("end", -1, payload))
        if self._publisher is not None:  # after its deltas, on the same connection
            self._publisher.publish_end(message_id, payload)

    # -- the following side --

    def local(self, message_id: str) -> Live | None:
        return self._live.get(message_id)

    async def subscribe(self, message_id: str) -> Subscriber:
        sub = Subscriber()
        self._subs.setdefault(message_id, set()).add(sub)
        if self._pg and message_id not in self._live:
            if self._listener is None:
                self._listener = _Listener(self)
            await self._listener.started()
        return sub

    def unsubscribe(self, message_id: str, sub: Subscriber) -> None:
        subs = self._subs.get(message_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[message_id]

    def deliver(self, message_id: str, event: Event) -> None:
        for sub in self._subs.get(message_id, ()):
            sub.put(event)

    @property
    def listening(self) -> bool:
        """Whether deltas from other processes arrive (PostgreSQL's listener is up)."""
        return self._listener is not None and self._listener.up

    @property
    def connections(self) -> int:
        """Database connections this hub holds open (listener and publisher)."""
        listener = self._listener is not None and self._listener.up
        publisher = self._publisher is not None and self._publisher.conn is not None
        return int(listener) + int(publisher)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        if self._publisher is not None:
            await self._publisher.close()


async def follow_events(
    hub: Hub,
    message_id: str,
    *,
    resume: tuple[int, int | None] | None = None,
    poll: float = 0.25,
) -> AsyncIterator[tuple[str, dict[str, Any], Position]]:
    """The events of a message for one follower: ("snapshot", {text, ...}) or, resumed,
    ("delta", {text}) with what it missed; then ("delta", {text}) as the answer grows,
    and a final ("end", ...). Each comes with the position it leaves the client at."""
    f = _Follower(hub, message_id, poll)
    sub = await hub.subscribe(message_id)  # before reading: nothing published is missed
    f.sub = sub
    try:
        async for event in f.run(resume):
            yield event
    finally:
        hub.unsubscribe(message_id, f.sub)


class _Follower:
    """One follower's state: its position, the last characters it has (to check the
    stored text is still its own), and the deltas that arrived ahead of it."""

    def __init__(self, hub: Hub, message_id: str, poll: float) -> None:
        self.hub, self.store, self.mid, self.poll = hub, hub.store, message_id, poll
        self.sub = Subscriber()
        self.pos = Position()
        self.tail = ""
        self.ahead: dict[int, str] = {}
        # A live delta arrived since the database was last read.
        self.live_seen = False

    def _have(self, text: str) -> None:
        self.pos, self.tail = Position.of(text), text[-_OVERLAP:]

    def _advance(self, piece: str) -> tuple[str, dict[str, Any], Position]:
        self.pos.advance(piece)
        self.tail = (self.tail + piece)[-_OVERLAP:]
        return "delta", {"text": piece}, self.pos

    async def _next(self) -> Event:
        # With PostgreSQL's listener up, notices wake it; the poll is a safety net.
        queue = self.sub.queue
        if not queue.empty():
            return queue.get_nowait()
        wait = max(self.poll, 5.0) if self.hub.listening else self.poll
        try:
            return await asyncio.wait_for(queue.get(), wait)
        except TimeoutError:
            return Event("quiet", -1, None)

    async def _next_all(self) -> list[Event]:
        """What has arrived: at least one event ("quiet" after a poll with nothing)."""
        events = [await self._next()]
        queue = self.sub.queue
        while not queue.empty() and events[-1].kind != "lagging":
            events.append(queue.get_nowait())
        return events

    async def run(
        self, resume: tuple[int, int | None] | None
    ) -> AsyncIterator[tuple[str, dict[str, Any], Position]]:
        live = self.hub.local(self.mid)
        m: Message | None = None
        if live is not None:
            text, ended = live.text, live.ended
        else:
            m = await self.store.get_message(self.mid)
            text, ended = m.content, None
            if resume is not None and m.live and resume[0] > len(text):
                # The client is ahead of the last flush (it had the deltas from the
                # generating process): wait until this process has its text too.
                text, m = await self._catch_up(text, m, resume[0])
        missed = resume_from(text, resume)
        self._have(text)
        if missed is None:
            yield "snapshot", _snapshot(text, m), self.pos
        elif missed:
            self._have(text[: len(text) - len(missed)])
            yield self._advance(missed)
        if ended is not None:
            yield "end", ended, self.pos
            return
        if m is not None and not m.live:
            async for ended_event in self._finish():
                yield ended_event
            return
        while True:
            events = await self._next_all()
            flushed = False
            for event in events:
                if event.kind == "delta":
                    self.ahead[event.start] = event.payload
                    self.live_seen = True
                elif event.kind == "flushed":
                    flushed = True
                elif event.kind == "quiet":  # nothing came: read, whatever was seen
                    flushed, self.live_seen = True, False
                elif event.kind == "end":  # every delta of the answer came before it
                    piece = "".join(_chain(self.ahead, self.pos))
                    if piece:
                        yield self._advance(piece)
                    if self.pos.offset < _length(event):  # a gap: read it
                        rest = await self.store.read_from(self.mid, self.pos.offset)
                        if rest.content:
                            yield self._advance(rest.content)
                    yield "end", event.payload, self.pos
                    return
                elif event.kind == "lagging":
                    break
            if events[-1].kind == "lagging" or len(self.ahead) > QUEUE_LIMIT:
                async for e in self._resync():
                    yield e
                if self._ended:
                    return
                continue
            # All the pieces that continue this follower's text, as one delta: a
            # follower that falls behind catches up in fewer, larger events.
            piece = "".join(_chain(self.ahead, self.pos))
            if piece:
                yield self._advance(piece)
            # The database is read only when live deltas do not cover it: a gap, or
            # none came since the last read (no PostgreSQL, or a writer gone).
            if flushed and self.hub.local(self.mid) is None and (
                self.ahead or not self.live_seen
            ):
                self.live_seen = False
                done = False
                async for e in self._read_new():
                    if e[0] == "end":
                        done = True
                    yield e
                if done:
                    return
            elif flushed:
                self.live_seen = False

    _ended = False

    async def _catch_up(self, text: str, m: Message, offset: int) -> tuple[str, Message]:
        """The stored text (with the deltas seen since) once it reaches `offset`, or
        once the answer ended."""
        base = Position.of(text)
        while len(text) < offset and m.live:
            event = await self._next()
            if event.kind == "delta":
                self.ahead[event.start] = event.payload
                probe = Position(base.offset, base.crc)
                pieces = _chain(dict(self.ahead), probe)
                if len(text) + sum(map(len, pieces)) >= offset:
                    return text + "".join(pieces), m
            elif event.kind in ("flushed", "quiet", "end", "lagging"):
                m = await self.store.get_message(self.mid)
                text, base = m.content, Position.of(m.content)
        return text, m

    async def _read_new(self) -> AsyncIterator[tuple[str, dict[str, Any], Position]]:
        """After a flush or a quiet poll: the stored text past this follower's position,
        read by suffix, checked against the characters it has before it."""
        back = min(len(self.tail), self.pos.offset)
        m = await self.store.read_from(self.mid, self.pos.offset - back)
        have = self.tail[len(self.tail) - back :]
        if len(m.content) >= back:
            if not m.content.startswith(have):  # not this follower's text: rewritten
                async for e in self._resync():
                    yield e
                return
            new = m.content[back:]
            if new:
                yield self._advance(new)
            for piece in _chain(self.ahead, self.pos):
                yield self._advance(piece)
        elif not have.startswith(m.content):  # behind this follower, and different
            async for e in self._resync():
                yield e
            return
        if not m.live:
            async for e in self._finish():
                yield e

    async def _finish(self) -> AsyncIterator[tuple[str, dict[str, Any], Position]]:
        """The answer ended: make sure this follower has exactly the stored text (one
        full read), then its end."""
        full = await self.store.get_message(self.mid)
        had = full.content[: self.pos.offset]
        if len(had) < self.pos.offset or Position.of(had) != self.pos:
            self._have(full.content)
            yield "snapshot", _snapshot(full.content, full), self.pos
        elif len(full.content) > self.pos.offset:
            yield self._advance(full.content[self.pos.offset :])
        self._ended = True
        yield "end", end_payload(full), self.pos

    async def _resync(self) -> AsyncIterator[tuple[str, dict[str, Any], Position]]:
        """Start over from the database: a snapshot (a follower that fell behind, or
        a text rewritten under it)."""
        self.hub.unsubscribe(self.mid, self.sub)
        self.sub = await self.hub.subscribe(self.mid)
        self.ahead.clear()
        live = self.hub.local(self.mid)
        full = await self.store.get_message(self.mid)
        text = live.text if live is not None else full.content
        self._have(text)
        yield "snapshot", _snapshot(text, None if live is not None else full), self.pos
        if live is None and not full.live:
            self._ended = True
            yield "end", end_payload(full), self.pos


def _length(event: Event) -> int:
    length = event.payload.get("length") if isinstance(event.payload, dict) else None
    return int(length) if isinstance(length, int) else 0


def _chain(ahead: dict[int, str], pos: Position) -> list[str]:
    """The pieces that continue exactly from `pos` (dropping any already had)."""
    out = []
    offset = pos.offset
    for start in sorted(ahead):
        piece = ahead[start]
        if start + len(piece) <= offset:
            del ahead[start]  # already had
            continue
        if start > offset:
            break
        del ahead[start]
        piece = piece[offset - start :]
        out.append(piece)
        offset += len(piece)
    return out


def _snapshot(text: str, m: Message | None) -> dict[str, Any]:
    if m is None:
        return {"text": text, "status": "streaming", "live": True}
    return {"text": text, "status": m.status, "live": m.live}


def end_payload(m: Message) -> dict[str, Any]:
    return {
        "message_id": m.id,
        "status": m.status,
        "finish_reason": m.finish_reason,
        "interrupted": m.interrupted,
        "recovering": m.recovering,
        "length": len(m.content),
    }


def _notes(message_id: str, start: int, text: str) -> list[str]:
    """Notification payloads carrying `text` from `start`, each under the size limit."""
    note = json.dumps({"m": message_id, "o": start, "t": text}, ensure_ascii=False)
    if len(note.encode("utf-8", "surrogatepass")) < _NOTIFY_BYTES or len(text) < 2:
        return [note]
    half = len(text) // 2
    return _notes(message_id, start, text[:half]) + _notes(message_id, start + half, text[half:])


def _conninfo(store: AsyncChatStore) -> str:
    url = store.sync.engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class _Listener:
    """The process's one LISTEN connection: flush notices and live deltas, handed to
    the followers here. Reconnects after a failure; followers poll meanwhile."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.up = False
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def started(self) -> None:
        # Listening before the follower reads the row, so nothing falls in between;
        # without PostgreSQL's psycopg (or while it reconnects), polling stands in.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._ready.wait()), 2.0)

    async def _run(self) -> None:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - the PostgreSQL extra brings it
            self._ready.set()
            return
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    _conninfo(self.hub.store), autocommit=True
                )
                async with conn:
                    await conn.execute(f"LISTEN {FLUSH_CHANNEL}")
                    await conn.execute(f"LISTEN {LIVE_CHANNEL}")
                    self.up = True
                    self._ready.set()
                    async for note in conn.notifies():
                        self._dispatch(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - followers poll meanwhile
                log.warning("chatpersist: listener lost, reconnecting: %s", exc)
            finally:
                self.up = False
            self._ready.set()
            await asyncio.sleep(1.0)

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == FLUSH_CHANNEL:
            for mid in payload.split(","):
                if mid in self.hub._subs:
                    self.hub.deliver(mid, Event("flushed", -1, None))
            return
        try:
            note = json.loads(payload)
            mid = str(note["m"])
            if mid not in self.hub._subs or self.hub.local(mid) is not None:
                return
            if "e" in note:  # the answer ended (after all its deltas, in order)
                self.hub.deliver(mid, Event("end", -1, dict(note["e"])))
            else:
                self.hub.deliver(mid, Event("delta", int(note["o"]), str(note["t"])))
        except (ValueError, KeyError, TypeError):
            return

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


class _Publisher:
    """Sends this process's live deltas to other processes: batched every few ms
    into one round trip (`pg_notify` over an array), in order, on one connection."""

    def __init__(self, store: AsyncChatStore, every: float = 0.02) -> None:
        self.store = store
        self.every = every
        self.conn: Any = None
        # [message id, start offset, text], in the order appended; contiguous pieces
        # of one message are merged.
        self._pending: list[list[Any]] = []
        self._last: dict[str, list[Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._failed_at = -1e9

    def publish(self, message_id: str, start: int, piece: str) -> None:
        last = self._last.get(message_id)
        if last is not None and last[1] + len(last[2]) == start:
            last[2] += piece
        else:
            entry = [message_id, start, piece]
            self._pending.append(entry)
            self._last[message_id] = entry
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send_soon())

    def publish_end(self, message_id: str, payload: dict[str, Any]) -> None:
        self._pending.append([message_id, -1, payload])
        self._last.pop(message_id, None)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send_soon())

    async def _send_soon(self) -> None:
        await asyncio.sleep(self.every)
        pending, self._pending, self._last = self._pending, [], {}
        payloads = []
        for mid, start, text in pending:
            if start < 0:  # the answer's end
                payloads.append(json.dumps({"m": mid, "e": text}, default=str))
            else:
                payloads += _notes(mid, start, text)
        if payloads:
            await self._send(payloads)
        if self._pending:
            self._task = asyncio.get_running_loop().create_task(self._send_soon())

    async def _send(self, payloads: list[str]) -> None:
        loop = asyncio.get_running_loop()
        if self.conn is None and loop.time() - self._failed_at < 5.0:
            return  # followers elsewhere read the database meanwhile
        try:
            if self.conn is None:
                import psycopg

                self.conn = await psycopg.AsyncConnection.connect(
                    _conninfo(self.store), autocommit=True
                )
            await self.conn.execute(
                f"SELECT pg_notify('{LIVE_CHANNEL}', p) FROM unnest(%s::text[]) AS p",
                (payloads,),
            )
        except Exception as exc:  # noqa: BLE001 - live deltas are a bonus, never a fault
            log.warning("chatpersist: live deltas not sent: %s", exc)
            self._failed_at = loop.time()
            if self.conn is not None:
                with contextlib.suppress(Exception):
                    await self.conn.close()
                self.conn = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.conn is not None:
            await self.conn.close()
            self.conn = None


