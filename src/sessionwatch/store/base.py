"""What a store holds, as interfaces: the node-local part, the shared part and
the event log. ``store/sqlite.py`` implements all three on one SQLite file;
the PostgreSQL store (``store/postgres.py``) implements the same three.

- :class:`NodeStore`: what only this machine can know and only it reads
  (each transcript file's offset and aggregate). With PostgreSQL it can stay
  in a local SQLite file: another machine's offsets mean nothing here.
- :class:`SharedStore`: what every server on the database shares: the
  sessions trackers report and their kills; the away switch, approvals and
  budget changes (sessionwatch/control). Later the sessions of processes
  sessionwatch runs and agents go here too (named tokens are shared too:
  :class:`TokenStore`). Every write names the columns it changes (never a row
  rewritten from a copy in memory: other servers and direct-mode trackers
  write the same rows), and is returned as :class:`Write` statements rather
  than run: the hub runs them with the change's events (below).
- :class:`EventLog`: where event ids come from. ``append(events, writes=…)``
  runs the writes of a change and inserts its events in one transaction and
  returns their ids, so an id is taken in the transaction that makes the
  change, and a failed write leaves neither the change nor its events. A
  follower reads ``since(last)`` (``id > last``); with PostgreSQL every
  replica follows the table this way (woken by ``NOTIFY``).

The event log's interface lives here, not in ``hub/``, because one backend
implements the three together and the writes ``append`` runs are made by
the same backend's :class:`SharedStore`; the hub depends on this module
only, never on a driver. ``hub/log.py`` keeps the hub's import names.

Importable without aiosqlite or any driver.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sessionwatch.errors import SessionwatchError

__all__ = [
    "KEEP_EVENTS",
    "KEEP_S",
    "START",
    "Actor",
    "Approval",
    "STORE_BYTES",
    "Database",
    "EventLog",
    "LoggedEvent",
    "NewEvent",
    "NodeStore",
    "PanelRow",
    "RowGone",
    "SharedStore",
    "TokenExists",
    "TokenRow",
    "TokenStore",
    "TranscriptRow",
    "Write",
]

#: The type of the row each server run logs when it starts; never sent to clients.
START = "start"
#: Retention of the event log (DESIGN.md, The stream): at least the last
#: KEEP_EVENTS events and KEEP_S seconds, within STORE_BYTES of ``data`` (the
#: byte bound wins).
KEEP_EVENTS = 1000
KEEP_S = 15 * 60.0
STORE_BYTES = 128 * 1024 * 1024


class RowGone(SessionwatchError):
    """A write that must change a row found none (another process deleted
    it): the transaction was rolled back, events included."""


class TokenExists(SessionwatchError):
    """A named token with this name exists already (revoked ones too: the audit refers to their names)."""


@dataclass(frozen=True, slots=True)
class Write:
    """One statement of a change, in its store's own SQL (the store that made
    it runs it): opaque to everyone else.

    ``must_change``: the change did not happen unless this statement changed
    a row; the whole transaction is rolled back and :class:`RowGone` raised.
    """

    sql: str
    params: tuple[Any, ...] = ()
    must_change: bool = False


@dataclass
class TranscriptRow:
    path: str
    kind: str
    session_id: str | None
    dev: int
    ino: int
    size: int
    mtime: float
    offset: int
    agg: bytes


@dataclass
class PanelRow:
    id: str
    app_name: str
    user_id: str | None
    host: str | None
    pid: int | None
    url: str | None
    status: str
    current_task: str | None
    started_at: float
    last_activity: float
    last_heartbeat: float
    kill_requested: bool


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something to a session, and from where (DESIGN.md, Security):
    the token's name ("admin" for ``--token``, "local" with no token), the
    client address, and the request's ``Origin`` / ``User-Agent`` if sent."""

    who: str
    address: str | None = None
    origin: str | None = None
    user_agent: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"who": self.who, "address": self.address, "origin": self.origin, "user_agent": self.user_agent}


@dataclass(frozen=True, slots=True)
class Approval:
    """One answer given to a permission prompt from a dashboard."""

    session_id: str
    pending_id: str
    decision: str
    message: str | None
    tool: str | None
    summary: str | None
    decided_at: float
    by: Actor


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A named token as the store keeps it: its hash, never the token."""

    name: str
    role: str
    hash: str
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """What ``token list --json`` shows: everything but the hash."""
        return {
            "name": self.name, "role": self.role, "created_at": self.created_at,
            "last_used_at": self.last_used_at, "revoked_at": self.revoked_at,
        }  # fmt: skip


#: A managed session's log levels, lowest first.
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warn", "error")
#: The columns of a managed session's record, in the table's order (store/schema.py, 0006_managed).
MANAGED_COLUMNS: tuple[str, ...] = (
    "id", "kind", "name", "user", "state", "status_reason", "current_task", "pid", "proc_start", "cwd",
    "model", "system_prompt", "permission_mode", "allowed_tools", "max_turns", "max_cost_usd", "cost_before",
    "total_cost_usd", "num_turns", "duration_ms", "message_count", "tool_calls", "exit_code", "log_path",
    "created_at", "updated_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LogQuery:
    """``GET /sessions/{id}/logs``: lines after ``after`` (a log id), at most ``limit``,
    of these levels (and above) and sources."""

    session_id: str
    after: int = 0
    limit: int = 200
    min_level: str | None = None
    sources: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()


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


class NodeStore(Protocol):
    """This machine's transcript files: where each was read to, and its aggregate."""

    async def load_transcripts(self) -> list[TranscriptRow]: ...

    async def save_transcripts(self, rows: Iterable[TranscriptRow], deleted: Iterable[str] = ()) -> None:
        """Upsert and delete transcript rows in one transaction."""
        ...


class SharedStore(Protocol):
    """The rows every server on the database shares: Panel sessions and kills.

    The ``panel_*`` methods return the statements of a write without running
    them: pass them to :meth:`EventLog.append` with the change's events (one
    transaction), or to :meth:`write` for a write without events.
    """

    async def load_panel(self) -> list[PanelRow]: ...

    def panel_register(self, row: PanelRow) -> list[Write]:
        """Insert ``row``, or refresh what registration says of an existing one
        (app, user, host, pid, url, heartbeat); its status, task, start and
        kill flag stay as the database has them."""
        ...

    def panel_status(self, session_id: str, status: str, current_task: str | None, now: float) -> list[Write]:
        """Status, task, activity and heartbeat; :class:`RowGone` if the row is gone."""
        ...

    def panel_kill(self, session_id: str, when: float, by: str | None) -> list[Write]:
        """Set the kill flag and record who asked."""
        ...

    def panel_delete(self, ids: Sequence[str]) -> list[Write]:
        """The rows and their kills."""
        ...

    async def touch_heartbeats(self, beats: dict[str, float]) -> None:
        """Move ``last_heartbeat`` of many rows, one transaction, no events."""
        ...

    async def write(self, writes: Sequence[Write]) -> None:
        """Run ``writes`` in one transaction (no events)."""
        ...

    async def kills(self, session_id: str) -> list[dict[str, Any]]: ...

    async def data_version(self) -> int:
        """A number that changes when another writer commits (direct-mode
        trackers, other servers); unchanged by this store's own writes."""
        ...

    # --- control (sessionwatch/control): the away switch, approvals, budgets ---------

    def set_flag(self, name: str, value: str, when: float, by: Actor) -> list[Write]:
        """Set a shared switch (``away``: "on"/"off") and who set it."""
        ...

    async def flags(self) -> dict[str, dict[str, Any]]:
        """Every switch: name → {"value", "changed_at", "by": Actor.to_json()}."""
        ...

    def record_approval(self, approval: Approval) -> list[Write]: ...

    async def record_approval_once(self, approval: Approval) -> bool:
        """Record ``approval`` unless its prompt (session, pending id) has an
        answer already, deciding once across replicas; whether it was recorded."""
        ...

    async def approvals(self, session_id: str) -> list[dict[str, Any]]:
        """A session's answered prompts, oldest first: {"pending_id", "decision",
        "message", "tool", "summary", "decided_at", "by": Actor.to_json()}."""
        ...

    def set_budget(self, session_id: str, max_cost_usd: float | None, when: float, by: Actor) -> list[Write]:
        """Record a budget change (None: the session's own cap is lifted and
        the server's default applies again)."""
        ...

    async def budgets(self) -> dict[str, float]:
        """Every session's own cap now (the latest change per session, when not None)."""
        ...

    async def budget_changes(self, session_id: str) -> list[dict[str, Any]]:
        """A session's budget changes, oldest first: {"max_cost_usd", "changed_at", "by"}."""
        ...

    # agents (sessionwatch/agents; tables of migrations 0008_agents, 0010_agents_shared)

    async def load_agents(self) -> list[tuple[str, str, int, float]]:
        """(agent, host, seq, last_seen) of every agent that ever pushed."""
        ...

    async def load_agent_sessions(self) -> list[tuple[str, str, str, bytes, int, float]]:
        """(id, agent, host, session JSON, seq, updated_at) of every session agents pushed."""
        ...

    def agent_seen(self, agent: str, host: str, seq: int, when: float) -> list[Write]:
        """An agent's sign of life and its last applied ``seq`` (never lowered); not stale."""
        ...

    def agent_applied(self, agent: str, host: str, seq: int, when: float) -> list[Write]:
        """Batch ``seq`` applied: the agent's seq moves to it, a sign of life, not
        stale. ``must_change``: a replica that applied ``seq`` (or a later one)
        first makes it :class:`RowGone` (the batch is applied once)."""
        ...

    def agent_stale(self, agent: str, stale: bool, cutoff: float) -> list[Write]:
        """The agent shown stale (``must_change``: only while its last sign of
        life is before ``cutoff``, else :class:`RowGone`), or fresh again."""
        ...

    async def agent_states(self, agents: Sequence[str] | None = None) -> list[tuple[str, str, int, float, bool]]:
        """(agent, host, seq, last_seen, stale) of ``agents`` (None: every agent)."""
        ...

    async def agent_rows(self, ids: Sequence[str]) -> list[tuple[str, str, str, bytes, int, float]]:
        """Like :meth:`load_agent_sessions`, for the sessions ``ids`` that agents pushed."""
        ...

    async def agent_row_seqs(self, agent: str) -> dict[str, int]:
        """Each session ``agent`` pushed, by id: the seq of the batch that wrote it last."""
        ...

    def agent_sessions_put(
        self, agent: str, host: str, seq: int, when: float, rows: Sequence[tuple[str, bytes]], deleted: Sequence[str]
    ) -> list[Write]:
        """Sessions an agent pushed (id, Session JSON), and ids it no longer has."""
        ...

    async def add_agent_command(self, agent: str, kind: str, body: bytes, when: float) -> int:
        """Something to send down to ``agent`` (an approval, a budget); its id."""
        ...

    async def agent_commands(self, agent: str, after: int) -> tuple[list[tuple[int, str, bytes]], int]:
        """``agent``'s commands after ``after`` (deleting those up to it: the agent has them),
        and the highest command id ever given (an agent past it follows another database)."""
        ...


class ManagedStore(Protocol):
    """Managed sessions' records, logs and actions (sessionwatch/managed)."""

    def managed_save(self, row: dict[str, Any]) -> list[Write]:
        """Insert or replace one record (``row`` has every :data:`MANAGED_COLUMNS`)."""

    async def managed_load(self) -> list[dict[str, Any]]: ...

    def managed_delete(self, session_id: str) -> list[Write]:
        """Forget a record and its logs (the actions stay: they are the audit)."""

    async def add_logs(self, session_id: str, lines: Sequence[dict[str, Any]]) -> None:
        """Append log lines (``ts``, ``level``, ``source``, ``kind``, ``content``, ``tool_name``, ``cost_usd``)."""

    async def logs(self, query: LogQuery) -> list[dict[str, Any]]:
        """Lines with ``id > after`` in id order, filtered, at most ``limit``."""

    async def trim_logs(self, before: float) -> int:
        """Delete lines older than ``before``; how many went."""

    def record_action(self, session_id: str, action: str, detail: str | None, when: float, by: Actor) -> list[Write]: ...

    async def actions(self, session_id: str) -> list[dict[str, Any]]: ...


class TokenStore(Protocol):
    """Named tokens with roles (``sessionwatch token``, server/auth.py)."""

    async def token_create(self, row: TokenRow) -> None:
        """Add a token; :class:`TokenExists` if one has its name already."""

    async def tokens(self) -> list[TokenRow]:
        """Every token, revoked ones too, oldest first."""

    async def token_by_hash(self, token_hash: str) -> TokenRow | None:
        """The token with this hash (revoked or not), or None."""

    async def token_revoke(self, name: str, when: float) -> TokenRow | None:
        """Revoke the token named ``name`` (a revoked one stays as it was);
        the row as it is now, or None if there is no such token."""

    async def token_touch(self, uses: dict[str, float]) -> None:
        """Record when tokens were last used (hash → time), many at once:
        the server batches them, never a write per request."""


class EventLog(Protocol):
    """Where a hub gets its event ids and finds the events it no longer holds."""

    #: This server run's mark on the rows it appends.
    origin: int
    #: True when every server on the database follows this log and serves its
    #: one sequence of ids (PostgreSQL replicas); False when each server run
    #: logs its own view and resumes only its own ids (SQLite).
    shared: bool

    async def start(self) -> int:
        """Log this run's ``start`` row; returns its id."""
        ...

    async def append(self, events: Sequence[NewEvent], *, writes: Sequence[Write] = ()) -> list[int]:
        """Run ``writes``, then append ``events``, in one transaction; the
        events' ids, in order. If a write fails nothing is kept and the error
        is raised (:class:`RowGone` for a ``must_change`` write that changed
        nothing)."""
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


class Database(NodeStore, SharedStore, ManagedStore, TokenStore, Protocol):
    """One backend: the node-local part, the shared part, and its event log."""

    def event_log(self, origin: int | None = None) -> EventLog:
        """The event log on this database (``origin``: random per run if None)."""
        ...

    async def close(self) -> None: ...
