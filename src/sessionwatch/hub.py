"""The hub: current sessions, their changes as events, and the subscribers.

- ``apply()`` diffs new session snapshots against the current ones and
  publishes at most one ``session-created``, one ``session-updated`` (only
  the sessions that changed) and one ``session-deleted`` per batch.
- Event ids increase by one per event. They start at the server's start time
  in milliseconds, so ids of a restarted server never collide with ids a
  client saw before the restart: such a client falls out of the replay buffer
  and gets a fresh ``init``.
- An event is encoded once per distinct filter and the same bytes go to every
  subscriber with that filter (unfiltered subscribers all share one encoding).
- Each subscriber has a bounded queue; one that falls behind is dropped (it
  reconnects and resumes with ``Last-Event-ID``), never buffered without limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from sessionwatch.metrics import Metrics

RETRY_MS = 2000

Session = dict[str, Any]


@dataclass(frozen=True)
class Filter:
    """A subscriber's ``?source=`` and ``?project=`` choice."""

    source: str | None = None
    project: str | None = None

    def __bool__(self) -> bool:
        return self.source is not None or self.project is not None

    def match(self, session: Session) -> bool:
        if self.source is not None and session.get("source") != self.source:
            return False
        if self.project is not None:
            return self.project.lower() in str(session.get("project") or "").lower()
        return True


NO_FILTER = Filter()


@dataclass
class Event:
    type: str
    sessions: list[Session]
    timestamp: float
    id: int | None = None
    _encoded: dict[Filter, bytes | None] = field(default_factory=dict, repr=False)

    def encode(self, flt: Filter = NO_FILTER, *, retry: bool = False) -> bytes | None:
        """The SSE message for subscribers with ``flt``; None if nothing matches."""
        if not retry and flt in self._encoded:
            return self._encoded[flt]
        sessions = self.sessions
        if flt:
            sessions = [s for s in sessions if flt.match(s)]
            if not sessions and self.type in ("session-created", "session-updated", "session-deleted"):
                self._encoded[flt] = None
                return None
        if self.type == "session-deleted":
            sessions = [{"id": s["id"]} for s in sessions]
        data = orjson.dumps({"type": self.type, "sessions": sessions, "timestamp": self.timestamp})
        head = b""
        if retry:
            head += b"retry: %d\n" % RETRY_MS
        if self.id is not None:
            head += b"id: %d\n" % self.id
        message = head + b"event: " + self.type.encode() + b"\ndata: " + data + b"\n\n"
        if not retry:
            self._encoded[flt] = message
        return message


class Subscriber:
    """One ``/stream`` connection's queue."""

    def __init__(self, flt: Filter, limit: int) -> None:
        self.filter = flt
        self.limit = limit
        self.items: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.dropped = False
        self.closed = False
        self.last_sent = time.monotonic()

    def push(self, message: bytes) -> bool:
        """Queue a message; False (and dropped) if the subscriber fell behind."""
        if self.dropped or self.closed:
            return False
        if len(self.items) >= self.limit:
            self.dropped = True
            self.items.clear()
            self.wake.set()
            return False
        self.items.append(message)
        self.wake.set()
        return True

    async def next(self) -> bytes | None:
        """Everything queued so far as one chunk, or None once dropped or closed."""
        while not self.items:
            if self.dropped or self.closed:
                return None
            self.wake.clear()
            await self.wake.wait()
        if self.dropped:
            return None
        chunk = b"".join(self.items)
        self.items.clear()
        self.last_sent = time.monotonic()
        return chunk

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class Hub:
    def __init__(
        self,
        *,
        buffer_size: int = 4096,
        queue_size: int = 1024,
        metrics: Metrics | None = None,
        first_id: int | None = None,
    ) -> None:
        self.sessions: dict[str, Session] = {}
        self.last_id = int(time.time() * 1000) if first_id is None else first_id
        self.buffer: deque[Event] = deque(maxlen=buffer_size)
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()
        self.metrics = metrics or Metrics()
        #: init messages by filter, valid while last_id and the state are unchanged:
        #: clients connecting between two events share one bytes object.
        self._inits: dict[Filter, bytes] = {}
        self._inits_id = -1

    # --- state --------------------------------------------------------------------

    def load(self, sessions: Iterable[Session]) -> None:
        """Set the initial state without publishing anything."""
        self.sessions = {s["id"]: s for s in sessions}
        self._inits.clear()
        self._count()

    def apply(self, changes: dict[str, Session | None]) -> list[Event]:
        """Publish the difference between ``changes`` and the current state.

        ``changes`` maps a session id to its new snapshot, or None if it is gone.
        """
        created: list[Session] = []
        updated: list[Session] = []
        deleted: list[Session] = []
        for sid, new in changes.items():
            old = self.sessions.get(sid)
            if new is None:
                if old is not None:
                    deleted.append(self.sessions.pop(sid))
            elif old is None:
                self.sessions[sid] = new
                created.append(new)
            elif old != new:
                self.sessions[sid] = new
                updated.append(new)
        events = []
        for kind, sessions in (
            ("session-created", created),
            ("session-updated", updated),
            ("session-deleted", deleted),
        ):
            if sessions:
                events.append(self.publish(kind, sessions))
        if events:
            self._count()
        return events

    def refresh(self, sessions: Iterable[Session]) -> Event:
        """Replace the whole state and tell everyone (``POST /refresh``)."""
        self.sessions = {s["id"]: s for s in sessions}
        self._count()
        return self.publish("refresh", list(self.sessions.values()))

    def publish(self, kind: str, sessions: list[Session]) -> Event:
        self.last_id += 1
        event = Event(kind, sessions, time.time(), self.last_id)
        self.buffer.append(event)
        self.metrics.events.labels(kind).inc()
        for sub in list(self.subscribers):
            message = event.encode(sub.filter)
            if message is not None:
                self._push(sub, message)
        return event

    def snapshot(self, flt: Filter = NO_FILTER) -> list[Session]:
        return [s for s in self.sessions.values() if flt.match(s)]

    # --- subscribers ----------------------------------------------------------------

    def subscribe(self, flt: Filter = NO_FILTER, last_event_id: int | None = None) -> Subscriber:
        """Register a subscriber, queueing either the missed events or an ``init``.

        Registration and replay happen in one synchronous step, so no event can
        fall between them.
        """
        sub = Subscriber(flt, self.queue_size)
        replay = self._missed(last_event_id)
        if replay is None:
            sub.items.append(self._init(flt))
        else:
            sub.items.append(b"retry: %d\n\n" % RETRY_MS)
            for event in replay:
                message = event.encode(flt)
                if message is not None:
                    sub.items.append(message)
        self.subscribers.add(sub)
        self.metrics.subscribers.set(len(self.subscribers))
        return sub

    def _init(self, flt: Filter) -> bytes:
        if self._inits_id != self.last_id:
            self._inits.clear()
            self._inits_id = self.last_id
        message = self._inits.get(flt)
        if message is None:
            init = Event("init", self.snapshot(flt), time.time(), self.last_id)
            message = self._inits[flt] = init.encode(flt, retry=True) or b""
        return message

    def _missed(self, last_event_id: int | None) -> list[Event] | None:
        """Events after ``last_event_id``, or None if they cannot all be replayed."""
        if last_event_id is None or last_event_id > self.last_id:
            return None
        if last_event_id == self.last_id:
            return []
        if not self.buffer or self.buffer[0].id is None or self.buffer[0].id > last_event_id + 1:
            return None
        return [e for e in self.buffer if e.id is not None and e.id > last_event_id]

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.close()
        self.subscribers.discard(sub)
        self.metrics.subscribers.set(len(self.subscribers))

    def keepalive(self, period: float) -> int:
        """Send ``keepalive`` to subscribers silent for ``period``; returns how many."""
        cutoff = time.monotonic() - period
        event: Event | None = None
        sent = 0
        for sub in list(self.subscribers):
            if sub.last_sent <= cutoff and not sub.items:
                if event is None:
                    event = Event("keepalive", [], time.time())
                self._push(sub, event.encode() or b"")
                sub.last_sent = time.monotonic()
                sent += 1
        return sent

    def close_all(self) -> None:
        for sub in list(self.subscribers):
            self.unsubscribe(sub)

    def _push(self, sub: Subscriber, message: bytes) -> None:
        if sub.push(message):
            self.metrics.events_sent.inc()
        elif sub.dropped:
            self.metrics.dropped.inc()
            self.subscribers.discard(sub)
            self.metrics.subscribers.set(len(self.subscribers))

    def _count(self) -> None:
        counts: dict[tuple[str, str], int] = {}
        for s in self.sessions.values():
            key = (s["source"], s["status"])
            counts[key] = counts.get(key, 0) + 1
        self.metrics.sessions.clear()
        for (source, status), n in counts.items():
            self.metrics.sessions.labels(source, status).set(n)
