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
- The replay window keeps events as their encoded messages (the session dicts
  are let go once an event is published), bounded in bytes as well as count:
  at least the last 1,000 events and 15 minutes while they fit in 64 MiB,
  counting every message kept, filtered ones included; the byte budget wins.
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
#: The replay window (DESIGN.md, The stream): events beyond ``buffer_size``
#: are dropped oldest first unless among the last KEEP_EVENTS or younger than
#: KEEP_S; whatever the count and age, all it keeps fits in REPLAY_BYTES.
REPLAY_BYTES = 64 * 1024 * 1024
KEEP_EVENTS = 1000
KEEP_S = 15 * 60.0
#: What a kept event holds besides its messages, counted with them: the
#: record, per session the (source, project) pair a filtered replay selects
#: by, per cached filter its key.
RECORD_COST = 200
SESSION_COST = 80
FILTER_COST = 120
DELTAS = ("session-created", "session-updated", "session-deleted")

Session = dict[str, Any]


@dataclass(frozen=True)
class Filter:
    """A subscriber's ``?source=`` and ``?project=`` choice."""

    source: str | None = None
    project: str | None = None

    def __bool__(self) -> bool:
        return self.source is not None or self.project is not None

    def match(self, session: Session) -> bool:
        return self.match_key(session.get("source"), str(session.get("project") or ""))

    def match_key(self, source: Any, project: str) -> bool:
        if self.source is not None and source != self.source:
            return False
        if self.project is not None:
            return self.project.lower() in project.lower()
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
            if not sessions and self.type in DELTAS:
                self._encoded[flt] = None
                return None
        if self.type == "session-deleted":
            sessions = [{"id": s["id"]} for s in sessions]
        message = _message(self.type, self.id, sessions, self.timestamp, retry=retry)
        if not retry:
            self._encoded[flt] = message
        return message


def _message(
    kind: str, event_id: int | None, sessions: list[Session], timestamp: float, *, retry: bool = False
) -> bytes:
    data = orjson.dumps({"type": kind, "sessions": sessions, "timestamp": timestamp})
    head = b""
    if retry:
        head += b"retry: %d\n" % RETRY_MS
    if event_id is not None:
        head += b"id: %d\n" % event_id
    return head + b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def _cost(flt: Filter, message: bytes | None) -> int:
    return FILTER_COST + len(flt.project or "") + (len(message) if message is not None else 0)


class Kept:
    """A published event as the replay window keeps it: its messages, not its
    sessions.

    It starts with the messages made while it was published (the unfiltered
    one always). A subscriber resuming with another filter gets a message cut
    from the unfiltered one, decoded again; it is kept for the next such
    subscriber and counted like the others. ``size`` is what the record holds.
    """

    __slots__ = ("id", "type", "timestamp", "keys", "messages", "size")

    def __init__(self, event: Event) -> None:
        assert event.id is not None
        full = event.encode()
        assert full is not None
        self.id: int = event.id
        self.type = event.type
        self.timestamp = event.timestamp
        self.keys = [(s.get("source"), str(s.get("project") or "")) for s in event.sessions]
        self.messages: dict[Filter, bytes | None] = dict(event._encoded)
        self.size = RECORD_COST + sum(SESSION_COST + len(p) for _, p in self.keys)
        self.size += sum(_cost(f, m) for f, m in self.messages.items())

    def encode(self, flt: Filter) -> tuple[bytes | None, int]:
        """The message for ``flt`` and the bytes this added to the record."""
        if flt in self.messages:
            return self.messages[flt], 0
        full = self.messages[NO_FILTER]
        assert full is not None
        picked = [i for i, (source, project) in enumerate(self.keys) if flt.match_key(source, project)]
        message: bytes | None
        if len(picked) == len(self.keys):
            message = full  # the same sessions: the same bytes
        elif not picked and self.type in DELTAS:
            message = None
        else:
            sessions = orjson.loads(full[full.index(b"\ndata: ") + 7 : -2])["sessions"]
            message = _message(self.type, self.id, [sessions[i] for i in picked], self.timestamp)
        self.messages[flt] = message
        cost = _cost(flt, None if message is full else message)
        self.size += cost
        return message, cost


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
        buffer_bytes: int = REPLAY_BYTES,
        keep_events: int = KEEP_EVENTS,
        keep_s: float = KEEP_S,
        queue_size: int = 1024,
        metrics: Metrics | None = None,
        first_id: int | None = None,
    ) -> None:
        self.sessions: dict[str, Session] = {}
        self.last_id = int(time.time() * 1000) if first_id is None else first_id
        #: The replay window, oldest first, and the bytes it holds.
        self.buffer: deque[Kept] = deque()
        self.replay_bytes = 0
        self.buffer_size = buffer_size
        self.buffer_bytes = buffer_bytes
        self.keep_events = keep_events
        self.keep_s = keep_s
        self.clock = time.time
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()
        self.metrics = metrics or Metrics()
        #: init messages by filter, valid while last_id and the state are unchanged:
        #: clients connecting between two events share one bytes object.
        self._inits: dict[Filter, bytes] = {}
        self._inits_id = -1
        #: sessions by (source, status), kept up to date change by change: a
        #: recount would cost every write time proportional to all sessions
        self._counts: dict[tuple[str, str], int] = {}

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
                    self._recount(old, -1)
            elif old is None:
                self.sessions[sid] = new
                created.append(new)
                self._recount(new, 1)
            elif old != new:
                self.sessions[sid] = new
                updated.append(new)
                self._recount(old, -1)
                self._recount(new, 1)
        events = []
        for kind, sessions in (
            ("session-created", created),
            ("session-updated", updated),
            ("session-deleted", deleted),
        ):
            if sessions:
                events.append(self.publish(kind, sessions))
        return events

    def refresh(self, sessions: Iterable[Session]) -> Event:
        """Replace the whole state and tell everyone (``POST /refresh``)."""
        self.sessions = {s["id"]: s for s in sessions}
        self._count()
        return self.publish("refresh", list(self.sessions.values()))

    def publish(self, kind: str, sessions: list[Session]) -> Event:
        self.last_id += 1
        event = Event(kind, sessions, self.clock(), self.last_id)
        self.metrics.events.labels(kind).inc()
        for sub in list(self.subscribers):
            message = event.encode(sub.filter)
            if message is not None:
                self._push(sub, message)
        kept = Kept(event)
        self.buffer.append(kept)
        self.replay_bytes += kept.size
        self._trim()
        return event

    def _trim(self) -> None:
        """Drop the oldest events the window may not keep."""
        buffer = self.buffer
        while self.replay_bytes > self.buffer_bytes and buffer:
            self.replay_bytes -= buffer.popleft().size
        if len(buffer) > max(self.buffer_size, self.keep_events):
            cutoff = self.clock() - self.keep_s
            while len(buffer) > max(self.buffer_size, self.keep_events) and buffer[0].timestamp < cutoff:
                self.replay_bytes -= buffer.popleft().size

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
            added = 0
            for kept in replay:
                message, cost = kept.encode(flt)
                added += cost
                if message is not None:
                    sub.items.append(message)
            if added:
                self.replay_bytes += added
                self._trim()
        self.subscribers.add(sub)
        self.metrics.subscribers.set(len(self.subscribers))
        return sub

    def _init(self, flt: Filter) -> bytes:
        if self._inits_id != self.last_id:
            self._inits.clear()
            self._inits_id = self.last_id
        message = self._inits.get(flt)
        if message is None:
            init = Event("init", self.snapshot(flt), self.clock(), self.last_id)
            message = self._inits[flt] = init.encode(flt, retry=True) or b""
        return message

    def _missed(self, last_event_id: int | None) -> list[Kept] | None:
        """Events after ``last_event_id``, or None if they cannot all be replayed."""
        if last_event_id is None or last_event_id > self.last_id:
            return None
        if last_event_id == self.last_id:
            return []
        if not self.buffer or self.buffer[0].id > last_event_id + 1:
            return None
        return [e for e in self.buffer if e.id > last_event_id]

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
        """Count every session again (load, refresh)."""
        counts: dict[tuple[str, str], int] = {}
        for s in self.sessions.values():
            key = (s["source"], s["status"])
            counts[key] = counts.get(key, 0) + 1
        self._counts = counts
        self.metrics.sessions.clear()
        for (source, status), n in counts.items():
            self.metrics.sessions.labels(source, status).set(n)

    def _recount(self, session: Session, delta: int) -> None:
        key = (session["source"], session["status"])
        n = self._counts.get(key, 0) + delta
        if n > 0:
            self._counts[key] = n
            self.metrics.sessions.labels(*key).set(n)
        elif self._counts.pop(key, None) is not None:
            self.metrics.sessions.remove(*key)
