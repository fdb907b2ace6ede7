"""The persistent event log: where event ids come from.

Every event the hub publishes is appended to the log first, with the
writes of the change it describes (one transaction), and the id the log
gives it is the id clients see. The interface (:class:`EventLog`) is a store
interface, in ``store/base.py``; the SQLite one (:class:`SqliteEventLog`, an
``events`` table with ``id INTEGER PRIMARY KEY AUTOINCREMENT``) is in
``store/sqlite.py``. This module keeps the names the hub and its callers
import, and the contract of resuming across servers.

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

The PostgreSQL store implements :class:`EventLog` too (``PgEventLog``,
``shared``): there each id is taken in the transaction that makes the change,
in commit order, every replica follows the table (``id > last``, woken by
LISTEN/NOTIFY, ``Hub.follow``) and serves the one shared sequence, so any
replica resumes any id it or the table still keeps.
"""

from __future__ import annotations

from sessionwatch.store.base import (
    KEEP_EVENTS as KEEP_EVENTS,
    KEEP_S as KEEP_S,
    START as START,
    STORE_BYTES as STORE_BYTES,
    EventLog as EventLog,
    LoggedEvent as LoggedEvent,
    NewEvent as NewEvent,
)
from sessionwatch.store.sqlite import SqliteEventLog as SqliteEventLog

__all__ = ["KEEP_EVENTS", "KEEP_S", "START", "STORE_BYTES", "EventLog", "LoggedEvent", "NewEvent", "SqliteEventLog"]
