"""The hub: current sessions, their changes as events, and the subscribers.

- ``update()`` diffs new session snapshots against the current ones and
  publishes at most one ``session-created``, one ``session-updated`` (only
  the sessions that changed) and one ``session-deleted`` per batch.
- Event ids come from the event log (``hub/log.py``),
  so they increase across restarts and across servers on one database. A
  batch is diffed, encoded once, appended to the log in one transaction
  together with the store writes of the change (``update(…, writes=…)``;
  ``await``), then applied and fanned out in one synchronous step with the
  ids the log gave: subscribers never see a state without its id. One batch
  at a time (``_order``), so ids reach clients in increasing order. A hub
  without a log (unit tests, ``apply()``) numbers events itself from
  ``first_id``.
- An event is encoded once per distinct filter and the same bytes go to every
  subscriber with that filter (unfiltered subscribers all share one encoding).
- Each subscriber has a bounded queue; one that falls behind is dropped (it
  reconnects and resumes with ``Last-Event-ID``), never buffered without limit.
- Sessions are ``model.Session`` structs: a diff compares them field by
  field, and they are encoded with ``model.encode`` (msgspec).
- The replay window keeps events as their encoded messages (the sessions
  are let go once an event is published), bounded in bytes as well as count:
  at least the last 1,000 events and 15 minutes while they fit in 64 MiB,
  counting every message kept, filtered ones included; the byte budget wins.
- Resuming (``resume()``): an id this server run issued is replayed from the
  window, or, once the window has let it go, from the log while it keeps it
  (its retention: hub/log.py). Any other id (another server's, a previous
  run's, one never given, one past the latest) gets ``init``.
- Replicas (a shared log, PostgreSQL): every replica applies every event of
  the log, in id order, whoever appended it. ``follow()`` reads ``id >
  last_id`` and applies the other replicas' rows as they are: the same ids,
  the same unfiltered bytes, their sessions into the current state and the
  replay window, never appended again (and never told to ``listeners``: the
  replica that made the change does that). An own append whose ids are not
  next reads the rows between first (they are committed: ids are given in
  commit order), so subscribers see ids in order. Any replica then resumes
  any id it holds or the log keeps, and an id it has not read yet is read
  first.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import msgspec

from sessionwatch.hub.events import NO_FILTER, RETRY_MS, Event, Filter, Kept
from sessionwatch.metrics import Metrics
from sessionwatch.model import Session
from sessionwatch.store.base import START, EventLog, LoggedEvent, NewEvent, Write

#: The replay window (DESIGN.md, The stream): events beyond ``buffer_size``
#: are dropped oldest first unless among the last KEEP_EVENTS or younger than
#: KEEP_S; whatever the count and age, all it keeps fits in REPLAY_BYTES.
REPLAY_BYTES = 64 * 1024 * 1024
KEEP_EVENTS = 1000
KEEP_S = 15 * 60.0
#: At most this many log rows are read to replay one resume; further behind
#: gets ``init``.
LOG_REPLAY_LIMIT = 10_000
#: Rows read per query while following a shared log.
FOLLOW_BATCH = 1000


class _Sessions(msgspec.Struct):
    """Another replica's event as read back from the log."""

    sessions: list[Session]


class _Ids(msgspec.Struct):
    id: str


class _Deleted(msgspec.Struct):
    sessions: list[_Ids]


_sessions_of = msgspec.json.Decoder(_Sessions)
_deleted_of = msgspec.json.Decoder(_Deleted)


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
        first_id: int = 0,
    ) -> None:
        self.sessions: dict[str, Session] = {}
        #: The id of this hub's latest event (its log ``start`` row before any):
        #: the ``init``'s id and ``/all``'s ``last_event_id``.
        self.last_id = first_id
        #: Every event of this hub after ``floor`` is in the window.
        self.floor = first_id
        self.log: EventLog | None = None
        #: One batch at a time from diff to fan-out: ids reach clients in order.
        self._order = asyncio.Lock()
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
        #: Called with (previous, new) for each session an event creates or
        #: changes, as the event is applied (webhooks.py): synchronous, on the
        #: hub's loop; a listener must only note what it needs and return.
        self.listeners: list[Callable[[Session | None, Session], None]] = []
        #: Called with the events of other replicas as they are applied (a
        #: shared log): synchronous, on the hub's loop (engine.py reloads the
        #: shared rows they name).
        self.on_foreign: Callable[[list[Event]], None] | None = None

    async def attach(self, log: EventLog) -> None:
        """Take ids from ``log`` from now on: this run's ``start`` row first."""
        async with self._order:
            self.log = log
            self.last_id = self.floor = await log.start()
            self._inits.clear()

    # --- state --------------------------------------------------------------------

    def load(self, sessions: Iterable[Session]) -> None:
        """Set the initial state without publishing anything."""
        self.sessions = {s.id: s for s in sessions}
        self._inits.clear()
        self._count()

    async def update(self, changes: dict[str, Session | None], *, writes: Sequence[Write] = ()) -> list[Event]:
        """Publish the difference between ``changes`` and the current state.

        ``changes`` maps a session id to its new snapshot, or None if it is gone.
        ``writes``: the store statements of the change; the log runs them and
        appends the events in one transaction. If they fail, the error is
        raised and nothing is applied or sent.
        """
        async with self._order:
            events = self._diff(changes)
            await self._publish(events, writes)
            return events

    async def replace(self, sessions: Iterable[Session]) -> Event:
        """Replace the whole state and tell everyone (``POST /refresh``)."""
        async with self._order:
            event = Event("refresh", list({s.id: s for s in sessions}.values()), self.clock())
            await self._publish([event])
            return event

    def apply(self, changes: dict[str, Session | None]) -> list[Event]:
        """:meth:`update` for a hub without a log, numbering events itself."""
        assert self.log is None, "a hub with an event log publishes through update()"
        events = self._diff(changes)
        self._commit(events, range(self.last_id + 1, self.last_id + 1 + len(events)))
        return events

    def refresh(self, sessions: Iterable[Session]) -> Event:
        """:meth:`replace` for a hub without a log."""
        assert self.log is None, "a hub with an event log publishes through replace()"
        event = Event("refresh", list({s.id: s for s in sessions}.values()), self.clock())
        self._commit([event], [self.last_id + 1])
        return event

    def _diff(self, changes: dict[str, Session | None]) -> list[Event]:
        """The events ``changes`` make, without applying them yet."""
        created: list[Session] = []
        updated: list[Session] = []
        deleted: list[Session] = []
        for sid, new in changes.items():
            old = self.sessions.get(sid)
            if new is None:
                if old is not None:
                    deleted.append(old)
            elif old is None:
                created.append(new)
            elif old != new:
                updated.append(new)
        now = self.clock()
        return [
            Event(kind, sessions, now)
            for kind, sessions in (
                ("session-created", created),
                ("session-updated", updated),
                ("session-deleted", deleted),
            )
            if sessions
        ]

    async def _publish(self, events: list[Event], writes: Sequence[Write] = ()) -> None:
        if not events and not writes:
            return
        if self.log is None:
            assert not writes, "a hub without an event log cannot run store writes"
            ids: Sequence[int] = range(self.last_id + 1, self.last_id + 1 + len(events))
        else:
            # Encoded before the id is known: the id is a line of its own.
            ids = await self.log.append([NewEvent(e.type, e.data(), e.timestamp) for e in events], writes=writes)
            if self.log.shared and ids and ids[0] > self.last_id + 1:
                await self._catch_up(before=ids[0])  # other replicas' events came first
        self._commit(events, ids)

    # --- replicas: following a shared log ------------------------------------------------

    async def follow(self) -> list[Event]:
        """Apply every row of the shared log after ``last_id`` (other replicas'
        events), in order; the events applied."""
        if self.log is None or not self.log.shared:
            return []
        async with self._order:
            return await self._catch_up()

    async def _catch_up(self, before: int | None = None) -> list[Event]:
        """Under ``_order``: the log's rows after ``last_id`` (below ``before``)."""
        assert self.log is not None
        applied: list[Event] = []
        while True:
            limit = FOLLOW_BATCH if before is None else min(FOLLOW_BATCH, before - self.last_id - 1)
            if limit <= 0:
                break
            rows = await self.log.since(self.last_id, limit)
            for row in rows:
                event = self._foreign(row)
                if event is None:
                    self.last_id = row.id  # a replica's start row: never sent
                else:
                    self._commit([event], [row.id], foreign=True)
                    applied.append(event)
            if len(rows) < limit:
                break
        if applied and self.on_foreign is not None:
            self.on_foreign(applied)
        return applied

    def _foreign(self, row: LoggedEvent) -> Event | None:
        """A row of the log as an event of this hub: its bytes as they are."""
        if row.type == START:
            return None
        sessions: list[Session]
        if row.type == "session-deleted":
            # only ids in the log: the sessions as shown here (filters match on them)
            ids = [d.id for d in _deleted_of.decode(row.data).sessions]
            sessions = [s for s in (self.sessions.get(i) for i in ids) if s is not None]
        else:
            sessions = _sessions_of.decode(row.data).sessions
        return Event(row.type, sessions, row.at, row.id, _data=row.data)

    def _commit(self, events: list[Event], ids: Sequence[int], *, foreign: bool = False) -> None:
        """Apply ``events`` to the state and send them, in one synchronous step
        (``foreign``: another replica's, told to no listener)."""
        for event, event_id in zip(events, ids, strict=True):
            event.id = event_id
            self._change(event, tell=not foreign)
            self.last_id = event_id
            self.metrics.events.labels(event.type).inc()
            for sub in list(self.subscribers):
                message = event.encode(sub.filter)
                if message is not None:
                    self._push(sub, message)
            kept = Kept.published(event)
            self.buffer.append(kept)
            self.replay_bytes += kept.size
            self._trim()

    def _change(self, event: Event, *, tell: bool = True) -> None:
        sessions = self.sessions
        if tell and self.listeners and event.type != "session-deleted":
            self._tell(event)
        if event.type == "refresh":
            self.sessions = {s.id: s for s in event.sessions}
            self._count()
        elif event.type == "session-deleted":
            for s in event.sessions:
                old = sessions.pop(s.id, None)
                if old is not None:
                    self._recount(old, -1)
        else:
            for s in event.sessions:
                old = sessions.get(s.id)
                sessions[s.id] = s
                if old is not None:
                    self._recount(old, -1)
                self._recount(s, 1)

    def _tell(self, event: Event) -> None:
        for s in event.sessions:
            old = self.sessions.get(s.id)
            if old == s:
                continue
            for listener in self.listeners:
                try:
                    listener(old, s)
                except Exception:  # noqa: BLE001 - a listener never stops an event
                    logging.getLogger(__name__).exception("hub listener failed")

    def _trim(self) -> None:
        """Drop the oldest events the window may not keep."""
        buffer = self.buffer
        while self.replay_bytes > self.buffer_bytes and buffer:
            self._evict()
        if len(buffer) > max(self.buffer_size, self.keep_events):
            cutoff = self.clock() - self.keep_s
            while len(buffer) > max(self.buffer_size, self.keep_events) and buffer[0].timestamp < cutoff:
                self._evict()

    def _evict(self) -> None:
        kept = self.buffer.popleft()
        self.replay_bytes -= kept.size
        self.floor = kept.id

    def snapshot(self, flt: Filter = NO_FILTER) -> list[Session]:
        return [s for s in self.sessions.values() if flt.match(s)]

    # --- subscribers ----------------------------------------------------------------

    async def resume(self, flt: Filter = NO_FILTER, last_event_id: int | None = None) -> Subscriber:
        """:meth:`subscribe`, reading the log first when ``last_event_id`` is
        one of this run's ids that the window no longer holds."""
        older: list[Kept] | None = None
        if self.log is not None and self.log.shared and last_event_id is not None and last_event_id > self.last_id:
            await self.follow()  # an id another replica sent that this one has not read yet
        for _ in range(3):  # the window moving on while the log is read: again
            if self.log is None or last_event_id is None or last_event_id >= self.floor:
                break
            floor = self.floor
            older = await self._from_log(self.log, last_event_id, floor)
            if older is None or self.floor == floor:
                break
            older = None
        return self.subscribe(flt, last_event_id, older=older)

    async def _from_log(self, log: EventLog, last_event_id: int, floor: int) -> list[Kept] | None:
        """This run's events after ``last_event_id`` up to ``floor`` (where the
        window starts), read from the log; None if ``last_event_id`` is not one
        of this run's ids there, or is too far behind."""
        rows = await log.since(last_event_id - 1, LOG_REPLAY_LIMIT + 1)
        if not rows or rows[0].id != last_event_id or (rows[0].origin != log.origin and not log.shared):
            return None  # trimmed, never given, or another server's (or run's)
        if rows[-1].id < floor:
            return None  # more than LOG_REPLAY_LIMIT behind
        return [
            Kept.from_log(r)
            for r in rows[1:]
            if (log.shared or r.origin == log.origin) and r.type != START and r.id <= floor
        ]

    def subscribe(
        self, flt: Filter = NO_FILTER, last_event_id: int | None = None, *, older: list[Kept] | None = None
    ) -> Subscriber:
        """Register a subscriber, queueing either the missed events or an ``init``.

        Registration and replay happen in one synchronous step, so no event can
        fall between them. ``older`` are events the window no longer holds,
        read from the log by :meth:`resume`.
        """
        sub = Subscriber(flt, self.queue_size)
        replay = self._missed(last_event_id, older)
        if replay is None:
            sub.items.append(self._init(flt))
        else:
            sub.items.append(b"retry: %d\n\n" % RETRY_MS)
            added = 0
            for kept in replay:
                message, cost = kept.encode(flt)
                if kept.id > self.floor:
                    added += cost  # a record of the window grew
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

    def _missed(self, last_event_id: int | None, older: list[Kept] | None = None) -> list[Kept] | None:
        """This run's events after ``last_event_id``, or None if they cannot all
        be replayed (the id is not this run's, or it is too old)."""
        if last_event_id is None or last_event_id > self.last_id:
            return None
        if last_event_id == self.last_id:
            return []
        buffer = self.buffer
        if last_event_id >= self.floor and self.log is not None and self.log.shared:
            # Every event of the log is here in id order (start rows are not
            # events): whatever replica gave the id, the rest follows it.
            return list(itertools.islice(buffer, bisect.bisect_right(buffer, last_event_id, key=lambda k: k.id), None))
        if last_event_id >= self.floor:
            # Ids of other servers on the same log fall between ours: only an
            # id we gave (the floor is one) can be resumed.
            i = bisect.bisect_left(buffer, last_event_id, key=lambda k: k.id)
            if last_event_id != self.floor and (i == len(buffer) or buffer[i].id != last_event_id):
                return None
            return list(itertools.islice(buffer, i + (last_event_id != self.floor), None))
        if older is None:
            return None
        # ``older``: read from the log by resume(), up to the floor, which
        # has not moved since.
        return older + list(buffer)

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
            key = (s.source, s.status)
            counts[key] = counts.get(key, 0) + 1
        self._counts = counts
        self.metrics.sessions.clear()
        for (source, status), n in counts.items():
            self.metrics.sessions.labels(source, status).set(n)

    def _recount(self, session: Session, delta: int) -> None:
        key = (session.source, session.status)
        n = self._counts.get(key, 0) + delta
        if n > 0:
            self._counts[key] = n
            self.metrics.sessions.labels(*key).set(n)
        elif self._counts.pop(key, None) is not None:
            self.metrics.sessions.remove(*key)
