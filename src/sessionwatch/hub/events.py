"""Events and their encoding: a subscriber's :class:`Filter`, an
:class:`Event` encoded once per distinct filter into its SSE message, and
:class:`Kept`, what the replay window holds of a published event (its
messages, not its sessions), also rebuilt from the event log's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from sessionwatch.model import Session, encode
from sessionwatch.store.base import LoggedEvent

RETRY_MS = 2000
#: What a kept event holds besides its messages, counted with them: the
#: record, per session the (source, project, host) a filtered replay selects
#: by, per cached filter its key.
RECORD_COST = 200
SESSION_COST = 80
FILTER_COST = 120
DELTAS = ("session-created", "session-updated", "session-deleted")


class _Key(msgspec.Struct):
    """What a replay filters a logged session by."""

    id: Any = None
    source: Any = None
    project: Any = None
    host: Any = None
    status: Any = None


#: (id, source, project, host, status) of a session in an event: what filters select by
Key = tuple[Any, Any, str, Any, Any]


class _Logged(msgspec.Struct):
    """An event's ``data:`` as read back: each session's bytes kept as they are."""

    sessions: list[msgspec.Raw]


class _LoggedKeys(msgspec.Struct):
    sessions: list[_Key]


_keys_of = msgspec.json.Decoder(_LoggedKeys)
_raw_of = msgspec.json.Decoder(_Logged)


@dataclass(frozen=True)
class Filter:
    """A subscriber's ``?source=``, ``?project=``, ``?host=`` and ``?status=`` choice.

    With ``status``, a session that changes to a status outside the choice
    leaves the subscriber's view: the update reaches it as a ``session-deleted``
    of that id (sent just before the event's own message, without an ``id:``,
    so a client that resumes gets both again)."""

    source: str | None = None
    project: str | None = None
    #: the machine (``Session.host``, exact)
    host: str | None = None
    #: the statuses shown (any of them)
    status: frozenset[str] | None = None

    def __bool__(self) -> bool:
        return self.source is not None or self.project is not None or self.host is not None or self.status is not None

    def match(self, session: Session) -> bool:
        return self.match_key(session.source, session.project or "", session.host, session.status)

    def match_key(self, source: Any, project: str, host: Any = None, status: Any = None) -> bool:
        if self.source is not None and source != self.source:
            return False
        if self.host is not None and host != self.host:
            return False
        if self.status is not None and status is not None and status not in self.status:
            return False
        if self.project is not None:
            return self.project.lower() in project.lower()
        return True

    def split(self, keys: Sequence[Key], kind: str) -> tuple[list[int], list[int]]:
        """Which sessions of an event of ``kind`` the subscriber gets, and which
        leave its view (an update to a status it does not show)."""
        shown: list[int] = []
        leaving: list[int] = []
        for i, (_, source, project, host, status) in enumerate(keys):
            if kind == "session-deleted":
                status = None  # a deletion of an id the client does not show is a no-op
            if self.match_key(source, project, host, status):
                shown.append(i)
            elif kind == "session-updated" and self.status is not None and self.match_key(source, project, host, None):
                leaving.append(i)
        return shown, leaving


def key_of(session: Session) -> Key:
    return (session.id, session.source, session.project or "", session.host, session.status)


NO_FILTER = Filter()


@dataclass
class Event:
    type: str
    sessions: list[Session]
    timestamp: float
    id: int | None = None
    _encoded: dict[Filter, bytes | None] = field(default_factory=dict, repr=False)
    _data: bytes | None = field(default=None, repr=False)

    def data(self) -> bytes:
        """The unfiltered ``data:`` JSON (what the event log stores), made once."""
        if self._data is None:
            self._data = _data(self.type, self.sessions, self.timestamp)
        return self._data

    def encode(self, flt: Filter = NO_FILTER, *, retry: bool = False) -> bytes | None:
        """The SSE message for subscribers with ``flt``; None if nothing matches."""
        if not retry and flt in self._encoded:
            return self._encoded[flt]
        message: bytes | None
        if not flt:
            message = _message(self.type, self.id, self.data(), retry=retry)
        else:
            shown, leaving = flt.split([key_of(s) for s in self.sessions], self.type)
            message = _filtered(
                self.type, self.id, self.timestamp, [self.sessions[i] for i in shown],
                [self.sessions[i].id for i in leaving], retry=retry,
            )  # fmt: skip
        if not retry:
            self._encoded[flt] = message
        return message


def _filtered(
    kind: str, event_id: int | None, timestamp: float, sessions: Sequence[Session | msgspec.Raw], leaving: Sequence[str],
    *, retry: bool = False,
) -> bytes | None:
    """A filtered event's message: the sessions it shows, after a deletion of
    those leaving the view (no ``id:``: the event's own message carries it)."""
    head = b""
    if leaving:
        head = _message("session-deleted", None, encode({"type": "session-deleted", "sessions": [{"id": i} for i in leaving], "timestamp": timestamp}), retry=retry)
    if not sessions and kind in DELTAS:
        return head or None
    return head + _message(kind, event_id, _data(kind, sessions, timestamp), retry=retry and not head)


def _data(kind: str, sessions: Sequence[Session | msgspec.Raw], timestamp: float) -> bytes:
    """An event's JSON; sessions read back from the log (``Raw``) go as they are."""
    shown: Sequence[object] = sessions
    if kind == "session-deleted":
        shown = [{"id": s.id} if isinstance(s, Session) else s for s in sessions]
    return encode({"type": kind, "sessions": shown, "timestamp": timestamp})


def _message(kind: str, event_id: int | None, data: bytes, *, retry: bool = False) -> bytes:
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

    def __init__(
        self,
        event_id: int,
        kind: str,
        timestamp: float,
        keys: list[Key] | None,
        messages: dict[Filter, bytes | None],
    ) -> None:
        self.id = event_id
        self.type = kind
        self.timestamp = timestamp
        #: what filters select by, per session; None when unknown (a deletion read
        #: back from the log names ids only): every filter then gets it whole.
        self.keys = keys
        self.messages = messages
        self.size = RECORD_COST + sum(SESSION_COST + len(k[2]) for k in keys or ())
        self.size += sum(_cost(f, m) for f, m in messages.items())

    @classmethod
    def published(cls, event: Event) -> Kept:
        """An event this hub just published."""
        assert event.id is not None
        assert event.encode() is not None  # the unfiltered message, always
        keys = [key_of(s) for s in event.sessions]
        return cls(event.id, event.type, event.timestamp, keys, dict(event._encoded))

    @classmethod
    def from_log(cls, row: LoggedEvent) -> Kept:
        """An event read back from the log (a resume older than the window)."""
        event = Event(row.type, [], row.at, row.id, _data=row.data)
        keys: list[Key] | None = None
        if row.type != "session-deleted":  # deleting an id a client does not show is a no-op
            keys = [(k.id, k.source, str(k.project or ""), k.host, k.status) for k in _keys_of.decode(row.data).sessions]
        return cls(row.id, row.type, row.at, keys, {NO_FILTER: event.encode()})

    def encode(self, flt: Filter) -> tuple[bytes | None, int]:
        """The message for ``flt`` and the bytes this added to the record."""
        if flt in self.messages:
            return self.messages[flt], 0
        full = self.messages[NO_FILTER]
        assert full is not None
        if self.keys is None:
            return full, 0
        shown, leaving = flt.split(self.keys, self.type)
        message: bytes | None
        if len(shown) == len(self.keys):
            message = full  # the same sessions: the same bytes
        elif not shown and not leaving and self.type in DELTAS:
            message = None
        else:
            sessions = _raw_of.decode(full[full.index(b"\ndata: ") + 7 : -2]).sessions
            message = _filtered(self.type, self.id, self.timestamp, [sessions[i] for i in shown], [self.keys[i][0] for i in leaving])
        self.messages[flt] = message
        cost = _cost(flt, None if message is full else message)
        self.size += cost
        return message, cost
