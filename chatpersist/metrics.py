"""Metrics of a running store, through the OpenTelemetry metrics API.

    from chatpersist.metrics import instrument

    metrics = instrument(store)            # the global MeterProvider, or meter_provider=...
    ...
    metrics.close()                        # detach (or `with instrument(store): ...`)

`pip install "chatpersist[otel]"` brings the API (`opentelemetry-api`); your app sets
up the SDK and its exporter as usual. Without the API installed `instrument` does
nothing (`Instrumentation.enabled` is False), and `import chatpersist` never imports
OpenTelemetry.

The counters are observable: read from the writer's counters (`ChatStore.stats`) when
the SDK collects, costing nothing in between. The two histograms are recorded by the
writer thread once per group commit; nothing is done per appended chunk. Every
instrument is listed in `INSTRUMENTS` and documented in docs/operations.md.

Several stores may report to one meter provider: their values are added up, unless
each is given its own `attributes` (e.g. `{"chatpersist.store": "primary"}`).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from opentelemetry.metrics import (
        CallbackOptions,
        Histogram,
        Meter,
        MeterProvider,
        Observation,
    )

    from ._writer import Writer, WriterStats

__all__ = ["INSTRUMENTS", "Instrumentation", "Metric", "instrument"]

log = logging.getLogger("chatpersist")

#: Attribute values, as OpenTelemetry takes them.
_Attrs = Mapping[str, str | bool | int | float]
_Key = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Metric:
    """One instrument chatpersist reports (`INSTRUMENTS` lists them all)."""

    name: str
    #: "histogram", "counter" or "updowncounter" (the last two observable)
    kind: str
    unit: str
    description: str
    #: The attributes its data points carry (besides those given to `instrument`).
    attributes: tuple[str, ...] = ()


FLUSH_LAG = Metric(
    "chatpersist.flush.lag", "histogram", "s",
    "Time from a draft's first unflushed chunk to the commit that wrote it.",
)  # fmt: skip
COMMIT_DURATION = Metric(
    "chatpersist.commit.duration", "histogram", "s",
    "Duration of one group commit: the transaction that writes the due drafts together.",
)  # fmt: skip
FLUSHES = Metric(
    "chatpersist.flushes", "counter", "{flush}",
    "Draft writes committed (one per draft per group commit; heartbeats not included).",
)  # fmt: skip
TRANSACTIONS = Metric(
    "chatpersist.transactions", "counter", "{transaction}",
    "Group commits: transactions the writer committed.",
)  # fmt: skip
HEARTBEATS = Metric(
    "chatpersist.heartbeats", "counter", "{heartbeat}",
    "Leases refreshed of drafts that had no new text (a silent model).",
)  # fmt: skip
FAILURES = Metric(
    "chatpersist.flush.failures", "counter", "{failure}",
    "Failed write attempts that were retried (the database away or busy).",
)  # fmt: skip
REFUSALS = Metric(
    "chatpersist.flush.refusals", "counter", "{write}",
    "Writes the database refused for good (a value it cannot hold).",
)  # fmt: skip
SPILLS = Metric(
    "chatpersist.journal.spills", "counter", "{record}",
    "Drafts written to the journal because the database could not take them.",
)  # fmt: skip
REPLAYS = Metric(
    "chatpersist.journal.replays", "counter", "{record}",
    "Journal records replayed into the database.",
)  # fmt: skip
JOURNAL_ERRORS = Metric(
    "chatpersist.journal.errors", "counter", "{append}",
    "Appends to the journal that failed (disk full, read-only): kept in memory, retried.",
)  # fmt: skip
FENCED = Metric(
    "chatpersist.draft.fenced", "counter", "{draft}",
    "Drafts that stopped writing: taken over by another writer, or their row deleted.",
    ("reason",),
)  # fmt: skip
INTERRUPTED = Metric(
    "chatpersist.draft.interrupted", "counter", "{draft}",
    "Drafts whose end was written not complete, by finish_reason (stopped, "
    "disconnected, error, cancelled...).",
    ("reason",),
)  # fmt: skip
OPEN_DRAFTS = Metric(
    "chatpersist.draft.count", "updowncounter", "{draft}",
    "Drafts open now in this process (its writer holds them).",
)  # fmt: skip
JOURNAL_SIZE = Metric(
    "chatpersist.journal.size", "updowncounter", "By",
    "Bytes waiting in the journal to be replayed (0 when empty; only with a journal).",
)  # fmt: skip

#: Every instrument chatpersist reports, as documented in docs/operations.md.
INSTRUMENTS: tuple[Metric, ...] = (
    FLUSH_LAG, COMMIT_DURATION, FLUSHES, TRANSACTIONS, HEARTBEATS, FAILURES, REFUSALS,
    SPILLS, REPLAYS, JOURNAL_ERRORS, FENCED, INTERRUPTED, OPEN_DRAFTS, JOURNAL_SIZE,
)  # fmt: skip

# Bucket boundaries (seconds). Flush lag: from a few ms (every_chunks reached) to
# every_seconds (2 s by default) and beyond (an outage). A commit: sub-millisecond on
# SQLite to seconds under load.
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_COMMIT_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

#: Values of a store's counters: (attributes, value) pairs.
_Reading = Callable[["Writer"], Iterable[tuple[dict[str, str], float]]]


def _stat(name: str) -> _Reading:
    def read(writer: Writer) -> Iterable[tuple[dict[str, str], float]]:
        return [({}, getattr(writer.stats, name))]

    return read


def _fenced(writer: Writer) -> Iterable[tuple[dict[str, str], float]]:
    s: WriterStats = writer.stats
    return [({"reason": "superseded"}, s.superseded), ({"reason": "deleted"}, s.deleted)]


def _interrupted(writer: Writer) -> Iterable[tuple[dict[str, str], float]]:
    # dict() copies in one step: the writer thread may add a reason meanwhile.
    return [({"reason": r}, n) for r, n in dict(writer.stats.interrupted).items()]


def _open_drafts(writer: Writer) -> Iterable[tuple[dict[str, str], float]]:
    return [({}, len(writer._drafts))]


def _journal_size(writer: Writer) -> Iterable[tuple[dict[str, str], float]]:
    journal = writer._journal
    return [] if journal is None else [({}, journal.size())]


_COUNTERS: dict[Metric, _Reading] = {
    FLUSHES: _stat("flushes"),
    TRANSACTIONS: _stat("transactions"),
    HEARTBEATS: _stat("heartbeats"),
    FAILURES: _stat("failures"),
    REFUSALS: _stat("refused"),
    SPILLS: _stat("spilled"),
    REPLAYS: _stat("replayed"),
    JOURNAL_ERRORS: _stat("journal_errors"),
    FENCED: _fenced,
    INTERRUPTED: _interrupted,
}
_GAUGES: dict[Metric, _Reading] = {OPEN_DRAFTS: _open_drafts, JOURNAL_SIZE: _journal_size}


class _Store(Protocol):
    """What `instrument` needs of a store: `ChatStore` (or `AsyncChatStore.sync`)."""

    _writer: Writer


def instrument(
    store: Any,
    meter_provider: MeterProvider | None = None,
    *,
    attributes: _Attrs | None = None,
) -> Instrumentation:
    """Report the metrics of a running `ChatStore` (or `AsyncChatStore`) through
    OpenTelemetry: `meter_provider`, else the global one. `attributes` are added to
    every data point (to tell several stores apart). `close()` the result to detach.

    Without `opentelemetry-api` installed this does nothing (the result's `enabled`
    is False). Instrumenting one store twice on one meter provider is a ValueError."""
    target: _Store = getattr(store, "sync", store)
    try:
        from opentelemetry import metrics
    except ImportError:
        log.info("chatpersist: opentelemetry-api is not installed: metrics are off")
        return Instrumentation(target._writer, None, attributes)
    provider = meter_provider or metrics.get_meter_provider()
    with _REGISTRIES_LOCK:
        registry = _REGISTRIES.get(provider)
        if registry is None:
            registry = _REGISTRIES[provider] = _Registry(provider)
    return Instrumentation(target._writer, registry, attributes)


class Instrumentation:
    """A store reporting to one meter provider, until `close()` (also a context
    manager)."""

    def __init__(self, writer: Writer, registry: _Registry | None, attributes: _Attrs | None):
        self._writer = writer
        self._registry = registry
        self.attributes: dict[str, Any] = dict(attributes or {})
        self._closed = registry is None
        if registry is not None:
            registry.attach(self)
            _Fanout.add(writer, self)

    @property
    def enabled(self) -> bool:
        """Whether metrics are being reported (False without opentelemetry-api, or
        once closed)."""
        return not self._closed

    def _committed(self, seconds: float, lags: list[float]) -> None:
        """Record one group commit (called by the store's writer thread)."""
        registry = self._registry
        if registry is None or self._closed:
            return
        registry.commit.record(seconds, self.attributes)
        for lag in lags:
            registry.lag.record(lag, self.attributes)

    def close(self) -> None:
        """Stop reporting this store (idempotent). Its counters' last values stay in
        the reported sums, so counters never go back."""
        if self._closed:
            return
        self._closed = True
        _Fanout.remove(self._writer, self)
        assert self._registry is not None
        self._registry.detach(self)

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Fanout:
    """The writer's one hook (`Writer.hooks`): every instrumentation of its store."""

    def __init__(self) -> None:
        self.targets: tuple[Instrumentation, ...] = ()

    def committed(self, seconds: float, lags: list[float]) -> None:
        for target in self.targets:
            target._committed(seconds, lags)

    @staticmethod
    def add(writer: Writer, target: Instrumentation) -> None:
        with writer._cond:
            fanout = writer.hooks if isinstance(writer.hooks, _Fanout) else _Fanout()
            fanout.targets = (*fanout.targets, target)  # copied: the writer reads it unlocked
            writer.hooks = fanout

    @staticmethod
    def remove(writer: Writer, target: Instrumentation) -> None:
        with writer._cond:
            fanout = writer.hooks
            if not isinstance(fanout, _Fanout):
                return
            fanout.targets = tuple(t for t in fanout.targets if t is not target)
            if not fanout.targets:
                writer.hooks = None  # not instrumented: nothing more per commit


class _Registry:
    """The instruments of one meter provider, shared by every store reporting to it
    (OpenTelemetry keeps the first callbacks given for a name: one set per provider)."""

    def __init__(self, provider: MeterProvider) -> None:
        from opentelemetry.metrics import Observation

        from . import __version__

        self._observation = Observation
        self._lock = threading.Lock()
        self._attached: list[Instrumentation] = []
        # Last values of the counters of detached stores, so sums never go back.
        self._retired: dict[tuple[str, _Key], float] = {}
        meter = provider.get_meter("chatpersist", __version__)
        self.lag = _histogram(meter, FLUSH_LAG, _LAG_BUCKETS)
        self.commit = _histogram(meter, COMMIT_DURATION, _COMMIT_BUCKETS)
        for metric, read in _COUNTERS.items():
            meter.create_observable_counter(
                metric.name, [self._callback(metric, read, True)], metric.unit, metric.description
            )
        for metric, read in _GAUGES.items():
            meter.create_observable_up_down_counter(
                metric.name, [self._callback(metric, read, False)], metric.unit,
                metric.description,
            )  # fmt: skip

    def attach(self, inst: Instrumentation) -> None:
        with self._lock:
            if any(a._writer is inst._writer for a in self._attached):
                raise ValueError("this store already reports to this meter provider")
            self._attached.append(inst)

    def detach(self, inst: Instrumentation) -> None:
        with self._lock:
            self._attached.remove(inst)
            for metric, read in _COUNTERS.items():
                for key, value in _points([inst], read).items():
                    slot = (metric.name, key)
                    self._retired[slot] = self._retired.get(slot, 0) + value

    def _callback(
        self, metric: Metric, read: _Reading, monotonic: bool
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                points = _points(self._attached, read)
                if monotonic:
                    for (name, key), value in self._retired.items():
                        if name == metric.name:
                            points[key] = points.get(key, 0) + value
            return [self._observation(v, dict(k)) for k, v in points.items()]

        return observe


def _histogram(meter: Meter, metric: Metric, buckets: tuple[float, ...]) -> Histogram:
    try:
        return meter.create_histogram(
            metric.name, metric.unit, metric.description,
            explicit_bucket_boundaries_advisory=buckets,
        )  # fmt: skip
    except TypeError:  # opentelemetry-api before 1.30: the SDK's (or a View's) buckets
        return meter.create_histogram(metric.name, metric.unit, metric.description)


def _points(attached: Iterable[Instrumentation], read: _Reading) -> dict[_Key, float]:
    """Values by attribute set, added up over the stores."""
    out: dict[_Key, float] = {}
    for inst in attached:
        for attrs, value in read(inst._writer):
            key = tuple(sorted({**inst.attributes, **attrs}.items()))
            out[key] = out.get(key, 0) + value
    return out


_REGISTRIES: weakref.WeakKeyDictionary[Any, _Registry] = weakref.WeakKeyDictionary()
_REGISTRIES_LOCK = threading.Lock()
