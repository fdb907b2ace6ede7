"""Prometheus metrics, one registry per running monitor (tests run several).

``prometheus_client`` is loaded when a :class:`Metrics` is made (the server),
not when this module is imported: ``sessionwatch scan`` exports nothing and
counts into a :class:`Tally` instead (70 ms of its start-up otherwise).
"""

from __future__ import annotations

from typing import Protocol

import msgspec


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions = Gauge(
            "sessionwatch_sessions", "Sessions by source and status", ["source", "status"], registry=r
        )
        self.subscribers = Gauge(
            "sessionwatch_subscribers", "Open /stream connections", registry=r
        )
        self.events = Counter(
            "sessionwatch_events", "Events published by the hub", ["type"], registry=r
        )
        self.events_sent = Counter(
            "sessionwatch_events_sent", "Event messages written to subscribers", registry=r
        )
        self.dropped = Counter(
            "sessionwatch_subscribers_dropped",
            "Subscribers disconnected because their queue filled",
            registry=r,
        )
        self.lines = Counter(
            "sessionwatch_transcript_lines", "Transcript lines parsed", registry=r
        )
        self.bad_lines = Counter(
            "sessionwatch_transcript_bad_lines", "Transcript lines skipped as malformed", registry=r
        )
        self.bad_files = Counter(
            "sessionwatch_transcript_bad_files",
            "Transcript files that could not be read",
            ["reason"],
            registry=r,
        )
        self.bytes_read = Counter(
            "sessionwatch_transcript_bytes", "Transcript bytes read", registry=r
        )
        self.parse_seconds = Histogram(
            "sessionwatch_parse_seconds",
            "Time spent reading and parsing one batch of transcript changes",
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
            registry=r,
        )
        self.heartbeats = Counter(
            "sessionwatch_heartbeats", "Tracker heartbeats received", registry=r
        )
        self.http_errors = Counter(
            "sessionwatch_http_client_errors", "4xx answers", ["status"], registry=r
        )


# --- what the Claude index counts, with or without Prometheus -------------------


class _Inc(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class _Labelled(Protocol):
    def labels(self, *labelvalues: str) -> _Inc: ...


class _Observe(Protocol):
    def observe(self, amount: float) -> None: ...


class IndexMetrics(Protocol):
    """The counters ``index.ClaudeIndex`` writes: a :class:`Metrics` or a :class:`Tally`."""

    @property
    def lines(self) -> _Inc: ...
    @property
    def bad_lines(self) -> _Inc: ...
    @property
    def bytes_read(self) -> _Inc: ...
    @property
    def bad_files(self) -> _Labelled: ...
    @property
    def parse_seconds(self) -> _Observe: ...


class Count:
    """A plain counter with prometheus_client's ``inc``."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class LabelledCount:
    """Counters by one label value, with prometheus_client's ``labels(...).inc``."""

    def __init__(self) -> None:
        self.children: dict[str, Count] = {}

    def labels(self, *labelvalues: str) -> Count:
        key = labelvalues[0]
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = Count()
        return child


class Seconds:
    """A running total of observed durations."""

    __slots__ = ("count", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.count += 1
        self.sum += amount


class IndexCounts(msgspec.Struct):
    """What one reader counted, as a value: a parallel scan's readers send it
    back (:meth:`Tally.counts`) and the scanning index adds it to its own
    counters (:func:`add_counts`)."""

    lines: float = 0.0
    bad_lines: float = 0.0
    bytes_read: float = 0.0
    bad_files: dict[str, float] = msgspec.field(default_factory=dict)


def add_counts(metrics: IndexMetrics, counts: IndexCounts) -> None:
    """Add a reader's counts to ``metrics`` (a :class:`Metrics` or a :class:`Tally`)."""
    metrics.lines.inc(counts.lines)
    metrics.bad_lines.inc(counts.bad_lines)
    metrics.bytes_read.inc(counts.bytes_read)
    for reason, count in counts.bad_files.items():
        metrics.bad_files.labels(reason).inc(count)


class Tally:
    """The index's counters as plain numbers: for ``scan`` and the workers of a
    parallel read, which export nothing (see :class:`IndexMetrics`)."""

    def __init__(self) -> None:
        self.lines = Count()
        self.bad_lines = Count()
        self.bytes_read = Count()
        self.bad_files = LabelledCount()
        self.parse_seconds = Seconds()

    def counts(self) -> IndexCounts:
        """The counts so far (``parse_seconds`` stays: durations of reads in
        another process are not this process's to observe)."""
        return IndexCounts(
            self.lines.value, self.bad_lines.value, self.bytes_read.value,
            {reason: count.value for reason, count in self.bad_files.children.items()},
        )
