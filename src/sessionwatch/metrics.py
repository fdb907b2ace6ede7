"""Prometheus metrics, one registry per running monitor (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
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
