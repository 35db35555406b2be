"""Resumable answers measured: live deltas, resume, Stop across processes, connections.

    python -m benchmarks.live --quick   # 1 and 100 followers, short answers: under 2 minutes
    python -m benchmarks.live           # 1, 100 and 1,000 followers: about 5 minutes
    python -m benchmarks.live --show    # the table of the last full run again

An answer is generated as `ChatStreams.response()` generates it (a draft, and
`Hub.begin / append / end`), 30 pieces of 4 characters a second. Its followers run
`follow_events()` (what `ChatStreams.follow` serves), as asyncio tasks in the
generating process or in another process (a child with its own store, `Hub` and
PostgreSQL listener). Beside them, the baseline ("flush-granular", how `follow` worked
before): each follower reads the whole row with `get_message` when the writer's flush
NOTIFY wakes it (one LISTEN per process) or every 0.25 s, and sees what was committed.

Each case runs in its own process on a fresh database (a PostgreSQL schema, a SQLite
file). Times are `time.time()` in every process: one host, one clock. Results go to
benchmarks/results/live.json and live.md (a quick run: live-quick.*); docs/benchmarks.md
says what they mean.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from chatpersist import AsyncChatStore, AsyncDraft, ChatStore
from chatpersist._fanout import FLUSH_CHANNEL, Hub, Position, end_payload, follow_events

from .run import RESULTS, answer_chunks, fresh_db, pct

ROOT = Path(__file__).resolve().parent.parent
RATE = 30.0  # pieces per second, as a model streams tokens
POLL = 0.25  # ChatStreams' follow_poll
STOP_POLL = 0.5  # ChatStore's stop_poll
STOP_CAP = 60.0  # seconds a Stop-test draft streams before it gives up waiting
CORES = os.cpu_count() or 1
DB_NAMES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}

Arrivals = list[tuple[int, float]]  # (characters a follower has, when it had them)
Log = list[tuple[int, float]]  # (offset after an appended piece, when it was appended)


@dataclass(frozen=True)
class Plan:
    pieces: int  # per followed answer (pieces / 30 seconds long)
    followers: tuple[int, ...]
    resume_pieces: int  # the answer resuming clients follow
    resume_clients: int
    finished_resumes: int
    stops: int


PLANS = {
    "quick": Plan(60, (1, 100), 180, 5, 30, 8),
    "full": Plan(300, (1, 100, 1000), 600, 10, 100, 20),
}


def make_pieces(seed: int, n: int) -> list[str]:
    return answer_chunks(seed, 4 * n)[:n]


def with_app(url: str, app: str, driver: str | None = None) -> str:
    """`url` naming its connections `app`, so pg_stat_activity tells processes apart."""
    u = sa.make_url(url)
    if u.get_backend_name() != "postgresql":
        return url
    u = u.update_query_dict({"application_name": app})
    return (u.set(drivername=driver) if driver else u).render_as_string(hide_password=False)


def open_store(url: str, app: str) -> AsyncChatStore:
    return AsyncChatStore(ChatStore(with_app(url, app), stop_poll=STOP_POLL))


# -- the generating side --


class Answer:
    """An answer generated here as `ChatStreams.response()` does it: each piece into
    the draft and through the hub, logged with the time it was appended."""

    def __init__(self, draft: AsyncDraft, hub: Hub) -> None:
        self.draft, self.hub, self.mid = draft, hub, draft.message_id
        self.log: Log = []

    async def stream(self, pieces: list[str]) -> None:
        start, offset = time.perf_counter(), 0
        for k, piece in enumerate(pieces):
            delay = start + k / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t = time.time()
            self.draft.append(piece)
            self.hub.append(self.mid, piece)
            offset += len(piece)
            self.log.append((offset, t))


@contextlib.asynccontextmanager
async def live_answer(store: AsyncChatStore, hub: Hub, sid: str) -> AsyncIterator[Answer]:
    async with store.draft(sid) as d:
        hub.begin(d.message_id, "")
        try:
            yield Answer(d, hub)
        except BaseException:
            hub.end(d.message_id, {"message_id": d.message_id, "interrupted": True})
            raise
    # As ChatStreams does: the followers here get the end once it is committed.
    hub.end(d.message_id, end_payload(await store.get_message(d.message_id)))


# -- groups of followers, here or in a child process --


class Group(Protocol):
    async def ready(self) -> dict[str, Any]: ...
    async def finish(self, data: dict[str, Any]) -> dict[str, Any]: ...


class _Counted:
    """Signals once every member has had its first event (it is subscribed)."""

    def __init__(self, n: int) -> None:
        self._n, self._ready = n, asyncio.Event()

    def arrived(self) -> None:
        self._n -= 1
        if self._n == 0:
            self._ready.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self._ready.wait(), 300)


def latencies(log: Log, arrivals: Arrivals) -> list[float]:
    """For each appended piece, from its append to the first time the follower had it."""
    out, j = [], 0
    for end, appended in log:
        while j < len(arrivals) and arrivals[j][0] < end:
            j += 1
        if j == len(arrivals):
            break  # never had it: counted as missing
        out.append(arrivals[j][1] - appended)
    return out


class Followers:
    """`n` followers of one message: the new path (`follow_events`) or the baseline
    (whole-row reads on each flush notice or every 0.25 s)."""

    def __init__(self, store: AsyncChatStore, hub: Hub, cfg: dict[str, Any]) -> None:
        self.store, self.hub, self.mid = store, hub, cfg["mid"]
        self._counted = _Counted(cfg["n"])
        self.hub_connections = 0
        self._wakes: list[asyncio.Event] = []
        self._listening = asyncio.Event()
        self._aside: list[asyncio.Task[None]] = [asyncio.create_task(self._sample())]
        baseline = cfg["path"] == "baseline"
        if baseline and store.sync.engine.dialect.name == "postgresql":
            self._aside.append(asyncio.create_task(self._flush_notices()))
        else:
            self._listening.set()
        follow = self._read_rows if baseline else self._follow
        self._tasks = [asyncio.create_task(follow()) for _ in range(cfg["n"])]

    async def ready(self) -> dict[str, Any]:
        await asyncio.wait_for(self._listening.wait(), 30)
        await self._counted.wait()
        self._clocks = time.process_time(), time.perf_counter()
        return {}

    async def _follow(self) -> tuple[str, Arrivals]:
        text, arrivals = "", Arrivals()
        async for kind, payload, pos in follow_events(self.hub, self.mid, poll=POLL):
            now = time.time()
            if not arrivals:
                self._counted.arrived()
            if kind == "snapshot":
                text = payload["text"]
            elif kind == "delta":
                text += payload["text"]
            arrivals.append((pos.offset, now))
        return text, arrivals

    async def _read_rows(self) -> tuple[str, Arrivals]:
        wake = asyncio.Event()
        self._wakes.append(wake)
        text, arrivals, first = "", [], True
        while True:
            m = await self.store.get_message(self.mid)
            now = time.time()
            if first:
                self._counted.arrived()
                first = False
            if m.content != text:  # what the old `follow` compared
                text = m.content
                arrivals.append((len(text), now))
            if not m.live:
                return text, arrivals
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL)
            wake.clear()

    async def _flush_notices(self) -> None:
        import psycopg

        # The store's URL, with this process's application name, for psycopg.
        url = self.store.sync.engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await conn.execute(f"LISTEN {FLUSH_CHANNEL}")
            self._listening.set()
            async for note in conn.notifies():
                if self.mid in note.payload.split(","):
                    for wake in self._wakes:
                        wake.set()

    async def _sample(self) -> None:
        while True:
            self.hub_connections = max(self.hub_connections, self.hub.connections)
            await asyncio.sleep(0.05)

    async def finish(self, data: dict[str, Any]) -> dict[str, Any]:
        log: Log = [(int(o), float(t)) for o, t in data["log"]]
        done, hung = await asyncio.wait(self._tasks, timeout=60)
        # Cores this process used while the answer streamed (1.0: one core, saturated).
        cpu = time.process_time() - self._clocks[0]
        cores = cpu / (time.perf_counter() - self._clocks[1])
        for task in [*hung, *self._aside]:
            task.cancel()
        lat: list[float] = []
        wrong = missing = failed = 0
        for task in done:
            if task.exception() is not None:
                failed += 1
                continue
            text, arrivals = task.result()
            wrong += text != data["text"]
            mine = latencies(log, arrivals)
            missing += len(log) - len(mine)
            lat += mine
        return {
            "lat_us": [round(x * 1e6) for x in lat], "hung": len(hung), "wrong": wrong,
            "missing": missing, "failed": failed, "hub_connections": self.hub_connections,
            "cpu": cores, "cpu_s": cpu,
        }  # fmt: skip


class Resumers:
    """Clients of a live answer that drop their connection and reconnect with the
    position they had (as EventSource does with Last-Event-ID), until it ends; then
    resumes from random positions of the finished answer."""

    def __init__(self, store: AsyncChatStore, hub: Hub, cfg: dict[str, Any]) -> None:
        self.store, self.hub, self.mid = store, hub, cfg["mid"]
        self.finished = int(cfg["finished"])
        self._counted = _Counted(cfg["clients"])
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(cfg["clients"])]

    async def ready(self) -> dict[str, Any]:
        await self._counted.wait()
        return {}

    async def _client(self, seed: int) -> tuple[str, list[dict[str, Any]]]:
        rng = random.Random(seed)
        text, pos, ended = "", None, False
        resumes: list[dict[str, Any]] = []
        while not ended:
            t0, hold = time.time(), rng.uniform(0.8, 1.2)
            rec: dict[str, Any] = {"t0": t0, "from": pos.offset if pos else None, "kind": None}
            arrivals: Arrivals = []
            resume = (pos.offset, pos.crc) if pos else None
            events = follow_events(self.hub, self.mid, resume=resume, poll=POLL)
            try:
                async for kind, payload, p in events:
                    now = time.time()
                    if rec["kind"] is None:
                        rec["kind"] = kind
                        if pos is None:
                            self._counted.arrived()
                    if kind == "snapshot":
                        text = payload["text"]
                    elif kind == "delta":
                        text += payload["text"]
                    arrivals.append((p.offset, now))
                    pos = Position(p.offset, p.crc)  # a copy: follow_events advances its own
                    if kind == "end":
                        ended = True
                    if ended or now - t0 > hold:
                        break
            finally:
                await events.aclose()  # type: ignore[attr-defined]
            if rec["from"] is not None:
                resumes.append(rec | {"arrivals": arrivals})
            if not ended:
                await asyncio.sleep(rng.uniform(0.1, 0.5))  # disconnected: text is missed
        return text, resumes

    async def _resume_finished(self) -> tuple[list[float], int]:
        text = (await self.store.get_message(self.mid)).content
        rng, lat, wrong = random.Random(7), [], 0
        for _ in range(self.finished):
            offset = rng.randrange(len(text))
            t0 = time.time()
            resume = (offset, Position.of(text[:offset]).crc)
            events = follow_events(self.hub, self.mid, resume=resume, poll=POLL)
            try:
                kind, payload, _ = await anext(events)
                lat.append(time.time() - t0)
                wrong += kind != "delta" or payload["text"] != text[offset:]
                wrong += (await anext(events))[0] != "end"
            finally:
                await events.aclose()  # type: ignore[attr-defined]
        return lat, wrong

    async def finish(self, data: dict[str, Any]) -> dict[str, Any]:
        done, hung = await asyncio.wait(self._tasks, timeout=60)
        for task in hung:
            task.cancel()
        times = [t for _, t in data["log"]]
        first: list[float] = []
        caught: list[float] = []
        kinds: dict[str, list[float]] = {}  # first missed byte, by the first event's kind
        back: list[int] = []  # characters a first snapshot had fewer than the client
        wrong = idle = late = 0
        for task in done:
            text, resumes = task.result()
            wrong += text != data["text"]
            for r in resumes:
                # What the generator had appended when the client reconnected.
                i = bisect.bisect_right(times, r["t0"])
                target = data["log"][i - 1][0] if i else 0
                if target <= r["from"]:
                    idle += 1  # nothing was missed (not streaming yet)
                    continue
                if r["kind"] == "snapshot":
                    back.append(r["from"] - r["arrivals"][0][0])
                byte = next((t for o, t in r["arrivals"] if o > r["from"]), None)
                up = next((t for o, t in r["arrivals"] if o >= target), None)
                if byte is None or up is None:
                    late += 1  # disconnected again before it had it
                    continue
                first.append(byte - r["t0"])
                kinds.setdefault(r["kind"], []).append(byte - r["t0"])
                caught.append(up - r["t0"])
        finished, finished_wrong = await self._resume_finished() if self.finished else ([], 0)
        return {
            "first_byte": first, "caught_up": caught, "first_kinds": kinds, "back": back, "idle": idle,
            "late": late, "hung": len(hung), "wrong": wrong, "finished": finished,
            "finished_wrong": finished_wrong,
        }  # fmt: skip


class StopWriter:
    """Drafts streaming until a Stop reaches them, checking `draft.stop_requested`
    after each piece as ChatStreams does; when each saw it and when each ended."""

    def __init__(self, store: AsyncChatStore, hub: Hub, cfg: dict[str, Any]) -> None:
        self.store, self.sid, self.n = store, cfg["sid"], int(cfg["n"])
        self.drafts: dict[str, AsyncDraft] = {}
        self.seen: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self._opened = asyncio.Event()
        self._pieces = make_pieces(3, 200)
        self._tasks = [asyncio.create_task(self._write()) for _ in range(self.n)]
        self._watch = asyncio.create_task(self._watcher())

    async def ready(self) -> dict[str, Any]:
        await asyncio.wait_for(self._opened.wait(), 60)
        return {"ids": list(self.drafts)}

    async def _write(self) -> None:
        async with self.store.draft(self.sid) as d:
            self.drafts[d.message_id] = d
            if len(self.drafts) == self.n:
                self._opened.set()
            start = time.perf_counter()
            for k in range(int(STOP_CAP * RATE)):
                if d.stop_requested:
                    d.stop("stopped")
                    break
                delay = start + k / RATE - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                d.append(self._pieces[k % len(self._pieces)])
        self.ended[d.message_id] = time.time()

    async def _watcher(self) -> None:
        # The writer's thread sets the flag: look every 2 ms for when it turns True.
        while len(self.seen) < self.n:
            for mid, d in self.drafts.items():
                if mid not in self.seen and d.stop_requested:
                    self.seen[mid] = time.time()
            await asyncio.sleep(0.002)

    async def finish(self, data: dict[str, Any]) -> dict[str, Any]:
        await asyncio.wait(self._tasks, timeout=STOP_CAP + 30)
        self._watch.cancel()
        reasons = [(await self.store.get_message(m)).finish_reason for m in self.drafts]
        return {"seen": self.seen, "ended": self.ended, "stopped": reasons.count("stopped")}


ROLES: dict[str, Callable[[AsyncChatStore, Hub, dict[str, Any]], Group]] = {
    "follow": Followers,
    "resume": Resumers,
    "stop-writer": StopWriter,
}


class Child:
    """A group run in another process: it says `ready`, gets the generator's log on
    stdin once the answer is over, and answers its result as JSON."""

    def __init__(self, proc: asyncio.subprocess.Process, hello: dict[str, Any]) -> None:
        self.proc, self.hello = proc, hello

    @classmethod
    async def start(cls, role: str, cfg: dict[str, Any]) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.live", "--role", role, json.dumps(cfg),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 300)).decode()
        if not line.startswith("ready"):
            proc.kill()
            raise RuntimeError(f"{role} child did not start: {line!r}")
        return cls(proc, json.loads(line[len("ready") :]))

    async def ready(self) -> dict[str, Any]:
        return self.hello

    async def finish(self, data: dict[str, Any]) -> dict[str, Any]:
        out, _ = await asyncio.wait_for(
            self.proc.communicate(json.dumps(data).encode() + b"\n"), 300
        )
        if self.proc.returncode != 0:
            raise RuntimeError(f"child failed ({self.proc.returncode})")
        result: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
        return result


async def serve_role(role: str, raw: str) -> None:
    cfg = json.loads(raw)
    store = open_store(cfg["url"], cfg["app"])
    hub = Hub(store)
    try:
        group = ROLES[role](store, hub, cfg)
        print("ready", json.dumps(await group.ready()), flush=True)
        data = json.loads(await asyncio.to_thread(sys.stdin.readline))
        result = await group.finish(data)
    finally:
        await hub.close()
        await store.close()
    print(json.dumps(result), flush=True)


async def start_group(
    role: str, cfg: dict[str, Any], store: AsyncChatStore, hub: Hub, elsewhere: bool
) -> Group:
    group = await Child.start(role, cfg) if elsewhere else ROLES[role](store, hub, cfg)
    await group.ready()
    return group


class Probe:
    """The backends one application name (one process) holds, from pg_stat_activity,
    every 50 ms: all of them, and those whose last statement was a LISTEN."""

    QUERY = (
        "SELECT count(*), count(*) FILTER (WHERE query LIKE 'LISTEN%%') "
        "FROM pg_stat_activity WHERE application_name = %s"
    )

    def __init__(self, url: str, app: str) -> None:
        self.url, self.app = url, app
        self.peak = self.listening = 0

    async def __aenter__(self) -> Probe:
        import psycopg

        conninfo = with_app(self.url, "bench_probe", "postgresql")
        self._conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            cur = await self._conn.execute(self.QUERY, (self.app,))
            total, listening = await cur.fetchone() or (0, 0)
            self.peak, self.listening = max(self.peak, total), max(self.listening, listening)
            await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._conn.close()


# -- the cases (each in its own process) --


def row(
    metric: str, case: str, values: list[float] | None, target: float | None, **more: Any
) -> dict[str, Any]:
    p99 = pct(values, 99) if values else None
    return {
        "metric": metric, "case": case, "samples": len(values or ()),
        "p50": pct(values, 50) if values else None, "p99": p99,
        "max": max(values) if values else None, "target": target,
        "met": None if target is None or p99 is None else p99 <= target,
    } | more  # fmt: skip


async def setup(url: str, app: str) -> tuple[AsyncChatStore, Hub, str]:
    store = open_store(url, app)
    await store.migrate()
    return store, Hub(store), await store.create_session()


async def case_live(c: dict[str, Any], url: str) -> list[dict[str, Any]]:
    pg, elsewhere, new = c["db"] == "postgresql", c["where"] == "other", c["path"] == "new"
    tag = uuid.uuid4().hex[:8]
    gen_app, fol_app = f"live_gen_{tag}", f"live_fol_{tag}"
    store, hub, sid = await setup(url, gen_app)
    pieces = make_pieces(1, c["pieces"])
    async with contextlib.AsyncExitStack() as stack:
        probe = (
            await stack.enter_async_context(Probe(url, fol_app if elsewhere else gen_app))
            if pg
            else None
        )
        async with live_answer(store, hub, sid) as ans:
            cfg = {"url": url, "app": fol_app, "mid": ans.mid, "n": c["n"], "path": c["path"]}
            group = await start_group("follow", cfg, store, hub, elsewhere)
            await ans.stream(pieces)
            publisher = hub.connections
        r = await group.finish({"log": ans.log, "text": "".join(pieces)})
    await hub.close()
    await store.close()
    where = "other process" if elsewhere else "same process"
    followers = f"{c['n']:,} follower{'s' * (c['n'] > 1)}"
    baseline = "" if new else ", baseline (flush-granular)"
    target = (0.25 if elsewhere else 0.02) if new else None
    lat = [x / 1e6 for x in r["lat_us"]]
    pace = (len(ans.log) - 1) / (ans.log[-1][1] - ans.log[0][1]) / RATE
    faults = {k: r[k] for k in ("hung", "wrong", "missing", "failed")}
    case = f"{DB_NAMES[c['db']]}, {where}, {followers}"
    # CPU of the followers' process per piece delivered to one follower (the fan-out).
    per = r["cpu_s"] / max(1, len(lat))
    rows = [
        row("delta latency" + baseline, case, lat, target, faults=faults, pace=pace,
            cpu=r["cpu"], cpu_per_delivery=per, followers=c["n"])
    ]  # fmt: skip
    if probe is not None:
        # The backends of the followers' process (here: the generator's too), and
        # what its hub holds: the listener (other process) or the publisher (here).
        hub_holds = f"hub.connections {r['hub_connections'] if elsewhere else publisher}"
        hub_holds += " (listener)" if elsewhere else " (publisher)"
        rows.append(
            row("DB connections" + baseline, case, None, None, backends=probe.peak,
                listening=probe.listening, hub=hub_holds if new or not elsewhere else "",
                met=(probe.listening == 1 and r["hub_connections"] == 1) if elsewhere and new else None)
        )  # fmt: skip
    return rows


async def case_resume(c: dict[str, Any], url: str) -> list[dict[str, Any]]:
    elsewhere = c["where"] == "other"
    tag = uuid.uuid4().hex[:8]
    store, hub, sid = await setup(url, f"resume_gen_{tag}")
    pieces = make_pieces(2, c["resume_pieces"])
    async with live_answer(store, hub, sid) as ans:
        cfg = {"url": url, "app": f"resume_fol_{tag}", "mid": ans.mid,
               "clients": c["resume_clients"], "finished": c["finished_resumes"] if elsewhere else 0}  # fmt: skip
        group = await start_group("resume", cfg, store, hub, elsewhere)
        await ans.stream(pieces)
    r = await group.finish({"log": ans.log, "text": "".join(pieces)})
    await hub.close()
    await store.close()
    where = "another process" if elsewhere else "the same process"
    kinds = ", ".join(
        f"{len(v)} {k} (p99 {_time(pct(v, 99))})" for k, v in sorted(r["first_kinds"].items())
    )
    if r["back"]:  # a snapshot shorter than what the client had: its text went back
        kinds += f"; snapshots shorter than the client's text by up to {max(r['back'])} chars"
    faults = {k: r[k] for k in ("hung", "wrong", "late")}
    rows = [
        row("resume: first missed byte", f"PostgreSQL, live in {where}", r["first_byte"], 0.1,
            faults=faults, first_events=kinds),
        row("resume: caught up", f"PostgreSQL, live in {where}", r["caught_up"], None,
            faults=faults, first_events=kinds),
    ]  # fmt: skip
    if r["finished"]:
        rows.append(
            row("resume: first missed byte", "PostgreSQL, finished, another process",
                r["finished"], 0.1, faults={"wrong": r["finished_wrong"]})
        )  # fmt: skip
    return rows


async def case_stop(c: dict[str, Any], url: str) -> list[dict[str, Any]]:
    tag = uuid.uuid4().hex[:8]
    store, hub, sid = await setup(url, f"stopper_{tag}")
    cfg = {"url": url, "app": f"stop_writer_{tag}", "sid": sid, "n": c["stops"]}
    child = await Child.start("stop-writer", cfg)
    ids: list[str] = child.hello["ids"]
    rng = random.Random(5)
    # Spread over several stop_poll periods, at random phases of the writer's poll.
    delays = [0.5 + 0.35 * i + rng.uniform(0, 0.35) for i in range(len(ids))]
    asked: dict[str, tuple[float, bool]] = {}

    async def stop(mid: str, delay: float) -> None:
        await asyncio.sleep(delay)
        t = time.time()
        asked[mid] = (t, await store.request_stop(mid))

    await asyncio.gather(*(stop(m, d) for m, d in zip(ids, delays, strict=True)))
    r = await child.finish({})
    await hub.close()
    await store.close()
    seen = [r["seen"][m] - asked[m][0] for m in ids if m in r["seen"]]
    ended = [r["ended"][m] - asked[m][0] for m in ids if m in r["ended"]]
    faults = {"not live": sum(not live for _, live in asked.values()),
              "not stopped": len(ids) - r["stopped"]}  # fmt: skip
    case = f"PostgreSQL, request_stop in another process, {len(ids)} stops, stop_poll {STOP_POLL} s"
    return [
        row("Stop: stop_requested seen", case, seen, 1.0, faults=faults),
        row("Stop: generator ended", case, ended, 1.0, faults=faults),
    ]


CASES = {"live": case_live, "resume": case_resume, "stop": case_stop}


async def run_case(c: dict[str, Any]) -> list[dict[str, Any]]:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = fresh_db(c["db"], tmp)
        try:
            rows = await CASES[c["kind"]](c, url)
        finally:
            drop()
    # Other work on the machine competes for its cores: the 1-minute load average.
    load = max(load, os.getloadavg()[0])
    return [r | {"load": load} for r in rows]


def cases(plan: Plan) -> list[dict[str, Any]]:
    base = asdict(plan)
    out = []
    for db, where in (("postgresql", "same"), ("postgresql", "other"), ("sqlite", "same")):
        for n in plan.followers:
            for path in ("new", "baseline"):  # side by side
                out.append(base | {"kind": "live", "db": db, "where": where, "n": n, "path": path})
    for where in ("same", "other"):
        out.append(base | {"kind": "resume", "db": "postgresql", "where": where})
    out.append(base | {"kind": "stop", "db": "postgresql"})
    return out


def code_version() -> dict[str, str]:
    """The measured code (chatpersist changes under active work: figures name it)."""
    files = ("_fanout.py", "asgi.py", "_writer/_stops.py")
    pkg = ROOT / "chatpersist"
    return {f: hashlib.sha256((pkg / f).read_bytes()).hexdigest()[:12] for f in files}


def run_child(case: dict[str, Any]) -> list[dict[str, Any]]:
    name = " ".join(str(case.get(k, "")) for k in ("kind", "db", "where", "n", "path"))
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.live", "--case", json.dumps(case)],
            capture_output=True, text=True, timeout=900, cwd=ROOT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return [row("ERROR", name, None, None, error="timed out")]
    if out.returncode != 0:
        return [row("ERROR", name, None, None, error=out.stderr[-1500:])]
    rows: list[dict[str, Any]] = json.loads(out.stdout.splitlines()[-1])
    return rows


# -- the table --

HEAD = ["metric", "case", "p50", "p99", "target", "met?", "notes"]


def _time(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s"


def cells(r: dict[str, Any]) -> list[str]:
    met = {True: "yes", False: "NO", None: "-"}[r["met"]]
    notes = [f"{k} {v}" for k, v in r.get("faults", {}).items() if v]
    if r.get("load", 0) >= CORES:
        notes.append(f"load {r['load']:.1f}")
    if "backends" in r:  # counts, not latencies: LISTEN backends and all of them
        target = "1 listener" if r["met"] is not None else "-"
        p50, p99 = f"{r['listening']} LISTEN", f"{r['backends']} in all"
        return [
            r["metric"],
            r["case"],
            p50,
            p99,
            target,
            met,
            "; ".join(filter(None, [r["hub"], *notes])),
        ]
    if r.get("cpu"):
        notes.append(f"cpu {r['cpu']:.2f} core")
        if r["followers"] >= 100:  # with fewer, the writer's own work dominates
            notes[-1] += f", {r['cpu_per_delivery'] * 1e6:.0f} µs/delivery"
    if r.get("first_events"):
        notes.append(f"first event: {r['first_events']}")
    if r.get("pace") is not None and r["pace"] < 0.95:
        notes.append(f"generator at {r['pace']:.0%} of its pace")
    if r.get("error"):
        notes.append(r["error"].strip().splitlines()[-1][:200])
    if r["samples"]:
        notes.append(f"n={r['samples']:,}, max {_time(r['max'])}")
    target = f"p99 ≤ {_time(r['target'])}" if r["target"] is not None else "-"
    return [r["metric"], r["case"], _time(r["p50"]), _time(r["p99"]), target, met, "; ".join(notes)]


def table(rows: list[dict[str, Any]]) -> str:
    grid = [HEAD, *(cells(r) for r in rows)]
    widths = [max(len(g[i]) for g in grid) for i in range(len(HEAD) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(g, widths, strict=False)) + "  " + g[-1] for g in grid
    )


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer followers, shorter answers")
    ap.add_argument(
        "--show", action="store_true", help="the table of the last run (--quick: quick)"
    )
    ap.add_argument("--only", help="only the cases named with this (e.g. 'stop'); saves nothing")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--role", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        asyncio.run(serve_role(*args.role))
        return
    if args.case:
        print(json.dumps(asyncio.run(run_case(json.loads(args.case)))))
        return
    mode = "quick" if args.quick else "full"
    stem = RESULTS / ("live" if mode == "full" else "live-quick")  # a quick run keeps the full one
    if args.show:
        print(table(json.loads(stem.with_suffix(".json").read_text())["rows"]))
        return
    started, code = time.monotonic(), code_version()
    rows: list[dict[str, Any]] = []
    for case in cases(PLANS[mode]):
        name = " ".join(str(case.get(k, "")) for k in ("kind", "db", "where", "n", "path"))
        if args.only and args.only not in name:
            continue
        got = run_child(case)
        rows += got
        for r in got:
            print(" | ".join(cells(r)), flush=True)
    elapsed = time.monotonic() - started
    if code_version() != code:
        print("WARNING: chatpersist changed during the run; its figures mix two versions")
    print()
    print(table(rows))
    print(f"\n{mode} run: {elapsed:.0f} s")
    if args.only:
        return  # a partial run: the saved results stay those of the last whole run
    RESULTS.mkdir(exist_ok=True)
    payload = {"mode": mode, "plan": asdict(PLANS[mode]), "elapsed_s": elapsed,
               "cores": CORES, "code": code, "rows": rows}  # fmt: skip
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    stem.with_suffix(".md").write_text(markdown(rows))
    print(f"results: {stem}.json and {stem.name}.md")


if __name__ == "__main__":
    main()
