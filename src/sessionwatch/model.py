"""The Session contract (DESIGN.md, Session (JSON)) as one type.

``Session`` is what every client reads: the fields, their order and their
JSON are those of the contract. Statuses are spelled here and nowhere else
in Python: the sources build sessions with these names, the API validates
with them, the Panel dashboard lists them.

Encoding (:func:`encode`) is msgspec's, which writes what orjson wrote for
the dicts this type replaced, byte for byte, with one difference that no
real session reaches: a float of 1e16 or more is written ``1e16`` where
orjson wrote ``1e+16`` (the same number to every JSON reader; a cost of
$10^16 or a duration of 300 million years). tests/test_model.py pins both.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Final, Literal, get_args

import msgspec

Source = Literal["claude", "panel"]
#: Every status of DESIGN.md's Session, in the order the dashboards list and
#: sort them. ``needs_approval``, ``ended`` and ``failed`` come from the hooks
#: and managed-process sources; the Claude transcript and Panel give the others.
Status = Literal["running", "needs_approval", "waiting", "idle", "stale", "ended", "failed"]

#: What each source may show (DESIGN.md, Status).
CLAUDE_STATUSES: Final[tuple[Status, ...]] = ("running", "waiting", "idle")
PANEL_STATUSES: Final[tuple[Status, ...]] = ("idle", "running", "stale")
#: What a tracker may set (``PUT /sessions/{id}/status``); ``stale`` is the server's.
PANEL_SETTABLE: Final[tuple[Status, ...]] = ("idle", "running")
#: Every status, in the order the dashboards list them.
STATUSES: Final[tuple[Status, ...]] = get_args(Status)
SOURCES: Final[tuple[Source, ...]] = get_args(Source)


class Tokens(msgspec.Struct, frozen=True):
    input: int = 0
    output: int = 0
    cache_creation: int = 0
    cache_read: int = 0


NO_TOKENS: Final = Tokens()


#: What can be done to a session now (DESIGN.md, Session ``controls``).
Control = Literal["approve", "send", "interrupt", "stop", "resume", "kill", "delete"]
PendingKind = Literal["permission", "question"]
#: A Panel session's controls (the tracker API's kill and delete).
PANEL_CONTROLS: Final[tuple[Control, ...]] = ("kill", "delete")


class Pending(msgspec.Struct, frozen=True):
    """What a session waits for a person to answer (DESIGN.md, Session ``pending``)."""

    id: str
    kind: PendingKind
    tool: str | None
    #: one line: what the tool call wants to do, secrets masked
    summary: str
    #: when it was asked, ISO 8601 UTC like every session time
    since: str | None
    #: sessionwatch holds the hook open and can answer it now (away mode)
    answerable: bool


#: A managed session's own state (the session manager's words): its process is
#: starting, in a turn, waiting for a message, stopped (exited 0 or was stopped)
#: or in error (exited non-zero, crashed, could not start).
ManagedState = Literal["starting", "running", "waiting", "stopped", "error"]
MANAGED_STATES: Final[tuple[ManagedState, ...]] = get_args(ManagedState)
#: Who runs the process: the server (``POST /managed``) or a ``sessionwatch run`` in a terminal.
ManagedKind = Literal["server", "run"]


class Managed(msgspec.Struct, frozen=True):
    """A session sessionwatch started (DESIGN.md, Session ``managed``)."""

    name: str
    state: ManagedState
    pid: int | None
    max_cost_usd: float | None
    exit_code: int | None
    kind: ManagedKind = "server"
    #: the CLI's own figures, from its turns' ``result`` lines (the process's running total)
    total_cost_usd: float | None = None
    num_turns: int = 0
    duration_ms: int | None = None


class Session(msgspec.Struct, frozen=True):
    """One row: a session as clients see it. Frozen: a snapshot, compared
    field by field (``==``) by the hub to tell a change from none."""

    id: str
    source: Source
    project: str
    title: str | None
    status: Status
    current_task: str | None
    user: str | None
    host: str | None
    git_branch: str | None
    model: str | None
    version: str | None
    started_at: str | None
    last_activity: str | None
    duration_seconds: float
    message_count: int
    tool_calls: int
    tokens: Tokens
    cost_usd: float | None
    kill_requested: bool
    is_stale: bool
    # Issue 10's fields, after the ones above (clients read them by name).
    #: why the session has its status, in a few words ("permission: Bash", "turn ended", ...)
    status_reason: str | None = None
    pending: Pending | None = None
    controls: tuple[Control, ...] = ()
    #: a session started by sessionwatch (a managed session or a ``sessionwatch run``)
    managed: Managed | None = None
    #: the spend cap in force
    max_cost_usd: float | None = None


#: The field names in the contract's order.
FIELDS: Final[tuple[str, ...]] = Session.__struct_fields__

_encoder = msgspec.json.Encoder()


def before_transcript(
    sid: str,
    *,
    project: str | None,
    status: Status,
    started: float | None,
    last: float | None,
    model: str | None = None,
    version: str | None = None,
    **fields: Any,
) -> Session:
    """A Claude session known before its transcript has a timestamped line
    (from its hooks or the live registry): what the source knows, and no
    messages, tokens or cost yet. ``fields``: the other fields it gives
    (``status_reason``, ``pending``, ``controls``)."""
    return Session(
        id=sid,
        source="claude",
        project=project or "",
        title=None,
        status=status,
        current_task=None,
        user=None,
        host=None,
        git_branch=None,
        model=model,
        version=version,
        started_at=iso(started),
        last_activity=iso(last),
        duration_seconds=round(max(0.0, (last or 0.0) - (started or last or 0.0)), 3),
        message_count=0,
        tool_calls=0,
        tokens=NO_TOKENS,
        cost_usd=None,
        kill_requested=False,
        is_stale=False,
        **fields,
    )


def encode(obj: Any) -> bytes:
    """JSON of sessions and anything holding them (dicts, lists)."""
    return _encoder.encode(obj)


def to_dict(session: Session) -> dict[str, Any]:
    """The session as plain data (``scan --json``, detail responses)."""
    data: dict[str, Any] = msgspec.to_builtins(session)
    data["controls"] = list(session.controls)  # a JSON array, as encode() writes it
    return data


def iso(ts: float | None) -> str | None:
    """A Unix time as ISO 8601 UTC with ``Z``, as every session time is shown."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")
