"""The persistent event log: where event ids come from.

Every event the hub publishes is appended here first, and the id the log
gives it is the id clients see. In SQLite that is an ``events`` table
(migration ``0004_events`` in ``store/sqlite.py``) with ``id INTEGER PRIMARY KEY
AUTOINCREMENT``: ids increase across every process using the file and across
restarts, and never come back after a trim. SQLite has one writer at a time,
so commit order is id order.

What a row holds: the id, the ``origin`` (one random number per server run),
the event type, the encoded unfiltered ``data:`` of the message (bytes; the
``id:`` line is made from the id) and the time.

Resuming across servers (the choice, also in the README's event contract):
with SQLite each server derives its events from its own watcher, so two
servers on one file log two descriptions of the same world, each with its
own timing. A client's state is what the server that sent it its last id had
shown it, so only that server run (the row's ``origin``) can continue it: a
``Last-Event-ID`` is replayed by the run that issued it, exactly its own
events after that id (from memory while they are in its window, else from
this table while they are kept here); on any other server, or after a
restart, it gets a fresh ``init``. Never a replay of another run's events.
Each run logs a ``start`` row first (never sent): its id is the ``init``'s
id until the run's first event, so even that id names its origin.

The PostgreSQL store will implement :class:`EventLog` too: there each id is
taken in the transaction that makes the change, every replica follows the
table (``id > last``, woken by LISTEN/NOTIFY) and serves the one shared
sequence, so any replica can resume any id it still keeps.

Issue 9's layout puts this module at ``hub/log.py``; moving it there is a
rename with no change of interface.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sessionwatch.store.sqlite import Store

#: The type of the row each server run logs when it starts; never sent to clients.
START = "start"
#: Retention of the table (DESIGN.md, The stream): at least the last
#: KEEP_EVENTS events and KEEP_S seconds, within STORE_BYTES of ``data`` (the
#: byte bound wins).
KEEP_EVENTS = 1000
KEEP_S = 15 * 60.0
STORE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its type, its encoded unfiltered data, its time."""

    type: str
    data: bytes
    at: float


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    id: int
    origin: int
    type: str
    data: bytes
    at: float


class EventLog(Protocol):
    """Where a hub gets its event ids and finds the events it no longer holds."""

    #: This server run's mark on the rows it appends.
    origin: int

    async def start(self) -> int:
        """Log this run's ``start`` row; returns its id."""
        ...

    async def append(self, events: Sequence[NewEvent]) -> list[int]:
        """Append ``events`` in one transaction; their ids, in order."""
        ...

    async def since(self, last_id: int, limit: int) -> list[LoggedEvent]:
        """At most ``limit`` rows with an id above ``last_id``, oldest first."""
        ...

    async def latest_id(self) -> int:
        """The highest id ever given (0 if none)."""
        ...

    async def trim(
        self, now: float, *, keep_events: int = KEEP_EVENTS, keep_s: float = KEEP_S, max_bytes: int = STORE_BYTES
    ) -> int:
        """Delete what retention no longer asks for; returns how many rows."""
        ...


class SqliteEventLog:
    """:class:`EventLog` on the store's connection (one writer, WAL)."""

    def __init__(self, store: Store, origin: int | None = None) -> None:
        self.store = store
        self.origin = secrets.randbits(62) if origin is None else origin

    async def start(self) -> int:
        (first,) = await self.append([NewEvent(START, b"", time.time())])
        return first

    async def append(self, events: Sequence[NewEvent]) -> list[int]:
        if not events:
            return []
        # One statement in autocommit: one transaction and one trip to the
        # connection's thread whatever the batch (the hot path of every event).
        sql = "INSERT INTO events (origin, type, data, at) VALUES " + ", ".join(["(?, ?, ?, ?)"] * len(events))
        params: list[object] = []
        for e in events:
            params += (self.origin, e.type, e.data, e.at)
        async with self.store.write_lock:
            rows = await self.store.conn.execute_fetchall(sql + " RETURNING id", params)
        # One statement's rows get increasing ids in VALUES order.
        return sorted(int(r[0]) for r in rows)

    async def since(self, last_id: int, limit: int) -> list[LoggedEvent]:
        async with self.store.conn.execute(
            "SELECT id, origin, type, data, at FROM events WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit)
        ) as cur:
            return [LoggedEvent(int(r[0]), int(r[1]), r[2], bytes(r[3]), float(r[4])) for r in await cur.fetchall()]

    async def latest_id(self) -> int:
        # sqlite_sequence keeps the highest id ever given, trimmed rows included.
        async with self.store.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def trim(
        self, now: float, *, keep_events: int = KEEP_EVENTS, keep_s: float = KEEP_S, max_bytes: int = STORE_BYTES
    ) -> int:
        # One statement, one autocommit transaction; the store's write lock
        # keeps it out of another coroutine's open transaction.
        async with self.store.write_lock, self.store.conn.execute(
            "DELETE FROM events WHERE"
            # older than keep_s and not among the last keep_events...
            " (at < ? AND id < (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?))"
            # ...and, whatever the count and age, within max_bytes, newest first.
            " OR id <= (SELECT id FROM (SELECT id, SUM(length(data)) OVER (ORDER BY id DESC) AS total"
            " FROM events) WHERE total > ? ORDER BY id DESC LIMIT 1)",
            (now - keep_s, max(keep_events, 1) - 1, max_bytes),
        ) as cur:
            deleted = max(cur.rowcount, 0)
        return deleted
