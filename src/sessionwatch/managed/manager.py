"""Managed sessions: Claude Code processes the server starts, drives and stops,
and the ``sessionwatch run``s that report to it.

:class:`Manager` is a source of facets (facets.py, source ``managed``): a
managed session is one row with its transcript and its hooks, under the id
the CLI itself uses (chosen up front with ``--session-id``, so ``POST
/managed`` answers at once and the transcript, when it appears, is the same
row). What the process says on stream-json is exact, so ``managed`` wins
``status``, ``pending`` and ``controls``; tokens and cost stay the
transcript's (final usage per response), and before there is a transcript
the row shows the CLI's own ``total_cost_usd``.

A managed session's life (``Managed.state``): ``starting`` (process
launched, first message sent) → ``running`` (a turn) ⇄ ``waiting`` (turn
ended, waiting for a message); a ``can_use_tool`` request makes it
``needs_approval`` until ``POST /sessions/{id}/approve`` answers (never by
itself: an unanswered request waits); ``stopped`` when the process exited 0
or was stopped (``ended``), ``error`` when it exited non-zero or could not
start (``failed``). A stopped session is resumed with the CLI's ``--resume``.

Limits: ``--max-managed`` live processes (429 beyond), a spend cap per
session (``max_cost_usd``, default ``--default-max-cost-usd``; ``PUT
/sessions/{id}/budget`` changes it): past it the process is interrupted and
stopped, ``status_reason`` "budget reached". ``--workspace-root`` bounds
``cwd``; ``bypassPermissions`` only with ``--allow-bypass-permissions``.

Lifecycle: each process runs in its own process group. Server shutdown stops
them all (interrupt, close stdin, SIGTERM, SIGKILL, each after a few seconds);
their records stay, ``stopped``, and can be resumed. A process an earlier
server left running (it was killed) is found by its recorded pid and start
time when the next server starts and killed, so no orphan survives a restart.

Logs: everything the process reads and writes, as readable, masked lines
(managed/protocol.py, :func:`~sessionwatch.managed.protocol.describe`), kept
``--log-retention-days`` (an hourly sweep on the engine's clock).

Replicas (PostgreSQL): a process is a child of the replica that started or
resumed it, and a run reports to one replica; the store's ``owners`` table
says which. An action reaching another replica (:meth:`Manager.act`) is
relayed there (relay.py); when that replica is gone, this one takes the
session over: its record from the store, a process it ran shown stopped
("its replica stopped", resumable here), a run's next report taken here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator, Iterable, Mapping
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from sessionwatch.errors import ApiError, ConfigError
from sessionwatch.managed.protocol import (
    ClaudeProcess,
    STOP_STEP_S,
    LogLine,
    ProcessGone,
    cut,
    describe,
    find_claude,
    kill_leftover,
    managed_command,
    new_session_id,
    proc_start_time,
    user_message,
)
from sessionwatch.model import Control, Managed, ManagedState, Pending, Session, before_transcript, iso
from sessionwatch.sources.hooks.events import QUESTION_TOOLS, summarize
from sessionwatch.sources.hooks.source import idle_status
from sessionwatch.relay import Gone
from sessionwatch.store.base import Actor, Approval, LogQuery
from sessionwatch.store.postgres import LOGS_CHANNEL

if TYPE_CHECKING:
    from sessionwatch.engine import Engine
    from sessionwatch.relay import Relay

log = logging.getLogger(__name__)

#: States with a process (or a run) alive.
LIVE: Final[frozenset[ManagedState]] = frozenset({"starting", "running", "waiting"})
#: How often budgets are checked against the transcript's cost, and runs for silence.
CHECK_S: Final = 1.0
#: How often old logs are deleted.
SWEEP_S: Final = 3600.0
#: A ``sessionwatch run`` that has not reported for this long is taken as gone.
RUN_SILENT_S: Final = 30.0
BUDGET_REACHED: Final = "budget reached"
#: Why a process is shown stopped when the replica that ran it is gone.
REPLICA_GONE: Final = "its replica stopped"
#: The actions :meth:`Manager.act` carries out here or relays (``managed.<kind>``).
ACTIONS: Final = ("messages", "interrupt", "stop", "resume", "delete", "report")
DENIED: Final = "sessionwatch: denied from the dashboard"


@dataclass
class Asked:
    """A ``can_use_tool`` request waiting for an answer."""

    request_id: str
    pending: Pending
    tool_input: dict[str, Any]


@dataclass
class Record:
    """One managed session: its stored record and, while it runs, its process."""

    id: str
    kind: str
    name: str
    cwd: str
    created_at: float
    state: ManagedState = "starting"
    user: str | None = None
    status_reason: str | None = None
    current_task: str | None = None
    pid: int | None = None
    proc_start: int | None = None
    model: str | None = None
    system_prompt: str | None = None
    permission_mode: str | None = None
    allowed_tools: list[str] = field(default_factory=list)
    max_turns: int | None = None
    max_cost_usd: float | None = None
    #: the cost of the session's earlier processes (a resumed session goes on from there)
    cost_before: float = 0.0
    total_cost_usd: float | None = None
    num_turns: int = 0
    duration_ms: int | None = None
    message_count: int = 0
    tool_calls: int = 0
    exit_code: int | None = None
    log_path: str | None = None
    updated_at: float = 0.0
    # --- in memory only --------------------------------------------------------------
    proc: ClaudeProcess | None = None
    task: asyncio.Task[None] | None = None
    asked: dict[str, Asked] = field(default_factory=dict)
    #: messages sent and not yet answered by a ``result``
    queued: int = 0
    #: why the process is being stopped (its end is then ``stopped``, not ``error``)
    stopping: str | None = None
    #: a run: a person asked it to stop (told in the answer to its next report)
    stop_asked: bool = False
    #: set once the process has started and had its first message (or failed to start):
    #: a message sent before then waits for it instead of finding no process
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    last_activity: float | None = None
    last_report: float | None = None
    #: what the CLI restores as its running total on ``--resume`` (the transcript's last
    #: ``cost-state``; 0 for a CLI that writes none): its results' totals start from there
    cost_restored: float = 0.0

    @property
    def live(self) -> bool:
        return self.state in LIVE

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "name": self.name, "user": self.user, "state": self.state,
            "status_reason": self.status_reason, "current_task": self.current_task, "pid": self.pid,
            "proc_start": self.proc_start, "cwd": self.cwd, "model": self.model, "system_prompt": self.system_prompt,
            "permission_mode": self.permission_mode,
            "allowed_tools": ",".join(self.allowed_tools) if self.allowed_tools else None,
            "max_turns": self.max_turns, "max_cost_usd": self.max_cost_usd, "cost_before": self.cost_before,
            "total_cost_usd": self.total_cost_usd, "num_turns": self.num_turns, "duration_ms": self.duration_ms,
            "message_count": self.message_count, "tool_calls": self.tool_calls, "exit_code": self.exit_code,
            "log_path": self.log_path, "created_at": self.created_at, "updated_at": self.updated_at,
        }  # fmt: skip

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> Record:
        tools = r.get("allowed_tools")
        return cls(
            id=r["id"], kind=r["kind"], name=r["name"], cwd=r["cwd"], created_at=r["created_at"], state=r["state"],
            user=r["user"], status_reason=r["status_reason"], current_task=r["current_task"], pid=r["pid"],
            proc_start=r["proc_start"], model=r["model"], system_prompt=r["system_prompt"],
            permission_mode=r["permission_mode"], allowed_tools=tools.split(",") if tools else [],
            max_turns=r["max_turns"], max_cost_usd=r["max_cost_usd"], cost_before=r["cost_before"] or 0.0,
            total_cost_usd=r["total_cost_usd"], num_turns=r["num_turns"], duration_ms=r["duration_ms"],
            message_count=r["message_count"], tool_calls=r["tool_calls"], exit_code=r["exit_code"],
            log_path=r["log_path"], updated_at=r["updated_at"], last_activity=r["updated_at"],
        )  # fmt: skip


@dataclass(frozen=True)
class StartRequest:
    """``POST /managed``'s body, checked (managed/api.py)."""

    prompt: str
    cwd: str
    name: str | None = None
    model: str | None = None
    system_prompt: str | None = None
    max_cost_usd: float | None = None
    permission_mode: str | None = None
    allowed_tools: tuple[str, ...] = ()
    max_turns: int | None = None


class Manager:
    """Managed sessions and runs (see the module's docstring)."""

    #: This source's name in the facet rules (facets.py).
    name = "managed"

    def __init__(self, engine: Engine, *, budgets: Mapping[str, float] | None = None) -> None:
        self.engine = engine
        s = engine.settings
        self.max_managed = s.max_managed
        self.default_max_cost_usd = s.default_max_cost_usd
        self.retention_s = s.log_retention_days * 86400.0
        self.workspace_root = s.workspace_root
        self.allow_bypass = s.allow_bypass_permissions
        self.claude_bin = s.claude_bin
        #: the budgets set with PUT /sessions/{id}/budget (control/'s dict, shared)
        self.budgets: Mapping[str, float] = budgets if budgets is not None else {}
        self.records: dict[str, Record] = {}
        #: log lines not yet written, per session (written after each message the process sends)
        self._buffers: dict[str, list[LogLine]] = {}
        self._logs_changed: dict[str, asyncio.Event] = {}
        self._closing = False
        #: starts between their checks and their record being in ``records`` (their names):
        #: counted against --max-managed and the names, so concurrent starts keep the limits
        self._starting: set[str] = set()
        #: stops begun from a check (a reference each, so none is collected mid-way)
        self._stops: set[asyncio.Task[None]] = set()
        #: replicas (relay.py): actions for a session another replica runs go there
        self.relay: Relay | None = None

    # --- lifecycle -----------------------------------------------------------------------

    async def load(self) -> None:
        """The records from the store; a process an earlier server left behind is killed."""
        now = self.engine.clock.now()
        store = self.engine.store
        changed: list[Record] = []
        for row in await store.managed_load():
            rec = Record.from_row(row)
            if rec.live and self.engine.replicated:
                # Replicas share the table: a live record may be another
                # replica's process (shown through its events); never killed
                # or taken over here.
                continue
            self.records[rec.id] = rec
            if rec.kind == "server" and rec.live:
                if rec.pid is not None and await asyncio.to_thread(kill_leftover, rec.pid, rec.proc_start):
                    log.warning("stopped Claude Code process %d of managed session %s, left by an earlier server", rec.pid, rec.id)
                rec.state, rec.status_reason, rec.pid = "stopped", "server restarted", None
                rec.updated_at = now
                changed.append(rec)
            elif rec.kind == "run" and rec.live:
                rec.last_report = now  # a run may still be going: it has RUN_SILENT_S to say so
        if changed:
            await store.write([w for rec in changed for w in store.managed_save(rec.row())])
        if self.records:
            ids = list(self.records)
            await self.engine.changed("managed", lambda: ids)

    async def run(self) -> None:
        """Until cancelled: budgets against the transcript's cost and silent runs
        every :data:`CHECK_S`, old logs every :data:`SWEEP_S`."""
        clock = self.engine.clock
        next_sweep = clock.now()
        replicas = self.engine.replicas
        if replicas is not None:  # a follower here of a session another replica runs
            await replicas.subscribe(LOGS_CHANNEL, self._wake)
        while True:
            try:
                await self.check()
                if clock.now() >= next_sweep:
                    next_sweep = clock.now() + SWEEP_S
                    await self.sweep()
            except Exception:  # noqa: BLE001 - the next round may do better
                log.exception("managed sessions' check failed")
            await clock.sleep(CHECK_S)

    async def check(self) -> None:
        now = self.engine.clock.now()
        for rec in list(self.records.values()):
            if not rec.live:
                continue
            if rec.kind == "server" and rec.stopping is None and self._over_budget(rec):
                self._stop_soon(rec, BUDGET_REACHED)
            elif rec.kind == "run" and rec.last_report is not None and now - rec.last_report > RUN_SILENT_S:
                rec.state, rec.status_reason = "stopped", "run stopped reporting"
                await self._publish(rec)

    async def sweep(self) -> int:
        """Delete logs older than ``--log-retention-days``; how many went
        (replicas: on the one running the clock-driven changes)."""
        if not await self.engine.leading():
            return 0
        n = await self.engine.store.trim_logs(self.engine.clock.now() - self.retention_s)
        if n:
            log.info("deleted %d managed-session log lines older than %g days", n, self.retention_s / 86400)
        return n

    async def close(self) -> None:
        """Stop every process (server shutdown): their records stay, resumable."""
        self._closing = True
        live = [rec for rec in self.records.values() if rec.kind == "server" and rec.proc is not None and rec.live]
        for rec in live:
            rec.stopping = rec.stopping or "server shut down"
        await asyncio.gather(*(self._stop_process(rec) for rec in live), return_exceptions=True)
        tasks = [rec.task for rec in live if rec.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=15)
        for ev in self._logs_changed.values():
            ev.set()

    # --- the facet -------------------------------------------------------------------

    def ids(self) -> Iterable[str]:
        return list(self.records)

    def claims(self, sid: str) -> bool:
        return sid in self.records

    def cap(self, rec: Record) -> float | None:
        return self.budgets.get(rec.id, rec.max_cost_usd)

    def facet(self, sid: str, now: float) -> Session | Mapping[str, Any] | None:
        rec = self.records.get(sid)
        if rec is None:
            return None
        index = self.engine.index
        transcript_ts = index.last_ts(sid)
        status, reason = self._status(rec, now, transcript_ts)
        first = next(iter(rec.asked.values()), None)
        fields: dict[str, Any] = {
            "status": status,
            "status_reason": reason,
            "pending": first.pending if first is not None else None,
            "controls": self._controls(rec),
            "managed": Managed(
                name=rec.name, state=rec.state, pid=rec.pid if rec.live else None, max_cost_usd=self.cap(rec),
                exit_code=rec.exit_code, kind="run" if rec.kind == "run" else "server",
                total_cost_usd=rec.total_cost_usd, num_turns=rec.num_turns, duration_ms=rec.duration_ms,
            ),  # fmt: skip
            "max_cost_usd": self.cap(rec),
            "current_task": rec.current_task,
            "user": rec.user,
        }
        if rec.last_activity is not None and (transcript_ts is None or rec.last_activity > transcript_ts):
            fields["last_activity"] = iso(rec.last_activity)
        if index.shows(sid):
            return fields
        session = before_transcript(
            sid,
            project=rec.cwd,
            status=status,
            started=rec.created_at,
            last=rec.last_activity or rec.created_at,
            model=rec.model,
            status_reason=reason,
            pending=fields["pending"],
            controls=fields["controls"],
        )
        return msgspec.structs.replace(
            session,
            user=rec.user,
            managed=fields["managed"],
            max_cost_usd=fields["max_cost_usd"],
            current_task=rec.current_task,
            cost_usd=rec.total_cost_usd,
            message_count=rec.message_count,
            tool_calls=rec.tool_calls,
        )

    def _status(self, rec: Record, now: float, transcript_ts: float | None) -> tuple[Any, str | None]:
        if rec.asked:
            first = next(iter(rec.asked.values())).pending
            return "needs_approval", "question" if first.kind == "question" else f"permission: {first.tool}"
        if rec.state == "stopped":
            return "ended", rec.status_reason or "stopped"
        if rec.state == "error":
            return "failed", rec.status_reason or (f"process exited {rec.exit_code}" if rec.exit_code is not None else "error")
        if rec.state == "waiting":
            activity = max((t for t in (rec.last_activity, transcript_ts) if t is not None), default=None)
            return idle_status("waiting", rec.status_reason or "turn ended", activity, now, self.engine.settings.idle_after_s)
        return "running", rec.status_reason or ("starting" if rec.state == "starting" else "working")

    def _controls(self, rec: Record) -> tuple[Control, ...]:
        if rec.kind == "run":
            return ("stop",) if rec.live and not rec.stop_asked else () if rec.live else ("delete",)
        if not rec.live:
            return ("resume", "delete")
        controls: list[Control] = []
        if rec.asked:
            controls.append("approve")
        controls.append("send")
        if rec.state in ("starting", "running") or rec.asked:
            controls.append("interrupt")
        controls.append("stop")
        return tuple(controls)

    # --- what people do ---------------------------------------------------------------

    def live_count(self) -> int:
        live = [r for r in self.records.values() if r.kind == "server" and r.live]
        # a start being published is counted once: its record joins ``records`` before it leaves ``_starting``
        return len(live) + len(self._starting - {r.name for r in live})

    def _record(self, sid: str) -> Record:
        rec = self.records.get(sid)
        if rec is None:
            raise ApiError(404, f"no managed session with id {sid!r}")
        return rec

    def _server_record(self, sid: str) -> Record:
        rec = self._record(sid)
        if rec.kind != "server":
            raise ApiError(409, "this session is a `sessionwatch run` in a terminal: only stop reaches it")
        return rec

    def check_cwd(self, raw: str) -> str:
        """``cwd``: an existing directory, under ``--workspace-root`` when set (400 otherwise)."""
        if "\x00" in raw:
            raise ApiError(400, "cwd must not contain a NUL character")
        path = Path(raw).expanduser()
        if not path.is_absolute():
            raise ApiError(400, "cwd must be an absolute path")
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError, ValueError):
            raise ApiError(400, f"cwd {raw} does not exist") from None
        if not real.is_dir():
            raise ApiError(400, f"cwd {raw} is not a directory")
        root = self.workspace_root
        if root is not None and real != root and root not in real.parents:
            raise ApiError(400, f"cwd {raw} is outside the workspace root {root}")
        return str(real)

    def _free_name(self, base: str) -> str:
        """``base-N`` that no record has (N from the number of records up)."""
        taken = {r.name for r in self.records.values()} | self._starting
        n = len(self.records) + 1
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    async def start(self, req: StartRequest, by: Actor) -> Record:
        """``POST /managed``: launch a process; the record is shown at once."""
        if self._closing:
            raise ApiError(503, "the server is shutting down")
        cwd = self.check_cwd(req.cwd)
        mode = req.permission_mode
        if mode == "bypassPermissions" and not self.allow_bypass:
            raise ApiError(400, 'permission_mode "bypassPermissions" is refused: start the server with --allow-bypass-permissions to allow it')
        if self.live_count() >= self.max_managed:
            raise ApiError(429, f"{self.max_managed} managed sessions are running, the most --max-managed allows: stop one first")
        name = req.name or self._free_name(Path(cwd).name or "session")
        if name in self._starting or any(r.name == name and r.live for r in self.records.values()):
            raise ApiError(409, f"a running managed session is already named {name!r}")
        claude = self._claude()
        now = self.engine.clock.now()
        rec = Record(
            id=new_session_id(), kind="server", name=name, cwd=cwd, created_at=now, user=by.who,
            model=req.model, system_prompt=req.system_prompt, permission_mode=mode,
            allowed_tools=list(req.allowed_tools), max_turns=req.max_turns,
            max_cost_usd=req.max_cost_usd if req.max_cost_usd is not None else self.default_max_cost_usd,
            updated_at=now, last_activity=now, current_task=_task_of(req.prompt),
        )  # fmt: skip
        cmd = managed_command(
            claude, session_id=rec.id, model=req.model, system_prompt=req.system_prompt,
            permission_mode=mode, allowed_tools=req.allowed_tools, max_turns=req.max_turns,
        )  # fmt: skip
        self._starting.add(name)
        try:
            await self._publish(rec, extra=self.engine.store.record_action(rec.id, "start", name, now, by), new=True)
        finally:
            self._starting.discard(name)
        self._launch(rec, cmd, req.prompt)
        await self._own(rec.id)
        return rec

    async def resume(self, sid: str, text: str | None, by: Actor) -> Record:
        rec = self._server_record(sid)
        if rec.live:
            raise ApiError(409, "the session is running: only a stopped session can be resumed")
        if self._closing:
            raise ApiError(503, "the server is shutting down")
        if self.live_count() >= self.max_managed:
            raise ApiError(429, f"{self.max_managed} managed sessions are running, the most --max-managed allows: stop one first")
        if self._over_budget(rec):
            # a resumed process would spend on its first message before the check stops it again
            raise ApiError(409, f"the session has reached its budget (${self.cap(rec) or 0:.2f}): raise it with PUT /sessions/{sid}/budget first")
        claude = self._claude()
        now = self.engine.clock.now()
        rec.cost_before = rec.total_cost_usd or rec.cost_before
        # live from here, before any await: a second resume meanwhile is a 409
        rec.state, rec.status_reason, rec.exit_code, rec.stopping = "starting", None, None, None
        rec.cost_restored = await asyncio.to_thread(restored_cost, self._transcript_of(rec))
        rec.updated_at = rec.last_activity = now
        if text:
            rec.current_task = _task_of(text)
        cmd = managed_command(
            claude, resume=rec.id, model=rec.model, system_prompt=rec.system_prompt,
            permission_mode=rec.permission_mode, allowed_tools=rec.allowed_tools, max_turns=rec.max_turns,
        )  # fmt: skip
        await self._publish(rec, extra=self.engine.store.record_action(sid, "resume", None, now, by))
        self._launch(rec, cmd, text)
        await self._own(sid)
        return rec

    async def send(self, sid: str, text: str, by: Actor) -> Record:
        rec = self._server_record(sid)
        if rec.live and rec.proc is not None and not rec.ready.is_set():
            # just started: the process may not run yet, and its first message goes first
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(rec.ready.wait(), 30)
        if not rec.live or rec.proc is None:
            raise ApiError(409, "the session is not running: resume it first")
        if rec.stopping is not None:
            raise ApiError(409, f"the session is stopping ({rec.stopping})")
        # running before the message goes: a fast answer is folded while it is written
        # (the logs' flush), and its turn's end must not be overwritten by this
        before = (rec.state, rec.status_reason, rec.current_task)
        rec.state, rec.status_reason = "running", None
        rec.current_task = _task_of(text)
        try:
            await self._send_prompt(rec, text)
        except BaseException:
            rec.state, rec.status_reason, rec.current_task = before
            raise
        now = self.engine.clock.now()
        rec.updated_at = rec.last_activity = now
        await self._publish(rec, extra=self.engine.store.record_action(sid, "send", _task_of(text), now, by))
        return rec

    async def interrupt(self, sid: str, by: Actor) -> bool:
        rec = self._server_record(sid)
        if not rec.live or rec.proc is None:
            raise ApiError(409, "the session is not running")
        now = self.engine.clock.now()
        await self.engine.store.write(self.engine.store.record_action(sid, "interrupt", None, now, by))
        done = await rec.proc.interrupt()
        if rec.asked:  # the CLI drops the question with the turn
            rec.asked.clear()
            await self._publish(rec)
        return done

    async def stop(self, sid: str, by: Actor) -> Record:
        rec = self._record(sid)
        now = self.engine.clock.now()
        if rec.kind == "run":
            if not rec.live:
                raise ApiError(409, "the run has ended")
            rec.stop_asked = True
            await self._publish(rec, extra=self.engine.store.record_action(sid, "stop", "asked the run to stop", now, by))
            return rec
        if not rec.live or rec.proc is None:
            raise ApiError(409, "the session is not running")
        rec.stopping = rec.stopping or f"stopped by {by.who}"
        await self.engine.store.write(self.engine.store.record_action(sid, "stop", None, now, by))
        await self._stop_process(rec)
        if rec.task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(rec.task), 15)
        return rec

    async def delete(self, sid: str, by: Actor) -> None:
        rec = self._record(sid)
        if rec.live:
            raise ApiError(409, "the session is running: stop it first")
        store = self.engine.store
        now = self.engine.clock.now()

        async def change() -> list[str]:
            await store.write([*store.managed_delete(sid), *store.record_action(sid, "delete", None, now, by)])
            self.records.pop(sid, None)
            if self.engine.replicas is not None:
                await self.engine.replicas.owner_drop(sid)
            ev = self._logs_changed.pop(sid, None)
            if ev is not None:
                ev.set()
            return [sid]

        await self.engine.changed("managed", change)

    def has_pending(self, sid: str, pending_id: str) -> bool:
        rec = self.records.get(sid)
        return rec is not None and any(a.pending.id == pending_id for a in rec.asked.values())

    async def approve(self, sid: str, pending_id: str, decision: str, message: str | None, by: Actor) -> dict[str, Any]:
        """Answer a ``can_use_tool`` request (``POST /sessions/{id}/approve``)."""
        rec = self._record(sid)
        asked = next((a for a in rec.asked.values() if a.pending.id == pending_id), None)
        if asked is None or rec.proc is None:
            raise ApiError(409, "that prompt is no longer pending")
        now = self.engine.clock.now()
        p = asked.pending
        approval = Approval(sid, pending_id, decision, message, p.tool, p.summary, now, by)
        rec.asked.pop(asked.request_id, None)
        if decision == "allow":
            answer: dict[str, Any] = {"behavior": "allow", "updatedInput": asked.tool_input}
        else:
            answer = {"behavior": "deny", "message": message or DENIED}
        try:
            await rec.proc.respond(asked.request_id, answer)
        except ProcessGone:
            raise ApiError(409, "that prompt is no longer pending (the process has ended)") from None
        self._log(rec, [LogLine(ts=now, level="warn" if decision == "deny" else "info", source="stdin", kind="permission",
                                content=f"{'allowed' if decision == 'allow' else 'denied'} by {by.who}: {p.summary}", tool_name=p.tool)])  # fmt: skip
        rec.state, rec.status_reason = "running", None
        rec.last_activity = now
        await self._publish(rec, extra=self.engine.store.record_approval(approval))
        return {"session_id": sid, "pending_id": pending_id, "decision": decision, "message": message, "tool": p.tool,
                "summary": p.summary, "decided_at": now, "by": by.to_json()}  # fmt: skip

    # --- runs (``sessionwatch run`` reporting) ---------------------------------------------

    async def report(self, sid: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /runs``: a run's state, figures and new log lines (managed/api.py checked them)."""
        now = self.engine.clock.now()
        rec = self.records.get(sid)
        if rec is None:
            rec = Record(id=sid, kind="run", name=data.get("name") or "run", cwd=data.get("cwd") or "", created_at=now)
            rec.user = data.get("user")
            self.records[sid] = rec
            new = True
            await self._own(sid)
        elif rec.kind != "run":
            raise ApiError(409, f"session {sid!r} is a managed session of this server, not a run")
        else:
            new = False
        state = {"ended": "stopped", "failed": "error"}.get(data["state"], data["state"])
        if new or state != rec.state:
            rec.last_activity = now  # a heartbeat alone is not activity
        rec.state = state
        rec.status_reason = data.get("status_reason")
        rec.pid = data.get("pid")
        rec.model = data.get("model") or rec.model
        rec.exit_code = data.get("exit_code")
        if data.get("name"):
            rec.name = data["name"]
        if data.get("cwd"):
            rec.cwd = data["cwd"]
        if "max_cost_usd" in data:
            rec.max_cost_usd = data["max_cost_usd"]
        figures = data.get("figures") or {}
        rec.total_cost_usd = figures.get("total_cost_usd", rec.total_cost_usd)
        rec.num_turns = figures.get("num_turns") or rec.num_turns
        rec.duration_ms = figures.get("duration_ms", rec.duration_ms)
        if data.get("current_task"):
            rec.current_task = data["current_task"]
        rec.last_report = now
        lines = data.get("logs") or []
        if lines:
            rec.last_activity = now
            await self.engine.store.add_logs(sid, lines)
            self._wake(sid)
        rec.updated_at = now
        await self._publish(rec, new=new)
        return {"stop": rec.stop_asked, "max_cost_usd": self.cap(rec)}

    # --- here, or on the replica that runs the session ------------------------------------

    async def act(self, kind: str, sid: str, body: Mapping[str, Any], by: Actor) -> dict[str, Any]:
        """Carry out one of :data:`ACTIONS` for ``sid`` here, or on the replica
        that runs it (relay.py); that replica gone, this one takes it over."""
        for _ in range(3):
            owner = await self.owner_elsewhere(sid)
            if owner is None:
                return await self._act_here(kind, sid, body, by)
            assert self.relay is not None
            try:
                answer: dict[str, Any] = await self.relay.ask(owner, f"managed.{kind}", {**body, "session_id": sid}, by)
                return answer
            except Gone:
                if await self.take_over(sid, owner):
                    return await self._act_here(kind, sid, body, by)
        raise ApiError(503, "the replicas did not agree which of them runs this session: try again")

    def relay_to(self, relay: Relay) -> None:
        """Carry out the actions other replicas relay here."""
        self.relay = relay
        self.engine.followers.append(self)
        for kind in ACTIONS:

            async def handler(body: dict[str, Any], by: Actor, kind: str = kind) -> dict[str, Any]:
                sid = body.get("session_id")
                if not isinstance(sid, str):
                    raise ApiError(400, "a relayed action needs a session_id")
                return await self._act_here(kind, sid, body, by)

            relay.handle(f"managed.{kind}", handler)

    async def _act_here(self, kind: str, sid: str, body: Mapping[str, Any], by: Actor) -> dict[str, Any]:
        await self._ensure(sid)
        if kind == "messages":
            text = body.get("text")
            if not isinstance(text, str):
                raise ApiError(400, "text is required")
            rec = await self.send(sid, text, by)
            return {"session_id": sid, "queued": rec.queued}
        if kind == "interrupt":
            return {"session_id": sid, "interrupted": await self.interrupt(sid, by)}
        if kind == "stop":
            rec = await self.stop(sid, by)
            return {"session_id": sid, "state": rec.state, "status_reason": rec.status_reason, "exit_code": rec.exit_code}
        if kind == "resume":
            text = body.get("text")
            rec = await self.resume(sid, text if isinstance(text, str) and text else None, by)
            return {"session_id": sid, "name": rec.name, "state": rec.state}
        if kind == "delete":
            await self.delete(sid, by)
            return {"deleted": True}
        if kind == "report":
            return await self.report(sid, body)
        raise ApiError(400, f"no managed-session action {kind!r}")

    async def owner_elsewhere(self, sid: str) -> int | None:
        """Replicas: the other replica that runs ``sid``'s process or takes its
        run's reports; None when it is this one, or nobody (act here)."""
        relay = self.relay
        replicas = self.engine.replicas
        if relay is None or replicas is None:
            return None
        rec = self.records.get(sid)
        if rec is not None and rec.proc is not None:
            return None  # its process is this replica's child
        owner = await replicas.owner_of(sid)
        return owner if owner is not None and owner != relay.me else None

    def foreign(self, ids: set[str]) -> None:
        """Replicas (engine.Follower): another replica changed sessions; a
        record this one holds but does not run (a stopped session, another's
        run) is dropped, the events show it, and an action reads it again from
        the store (:meth:`_ensure`)."""
        for sid in ids:
            rec = self.records.get(sid)
            if rec is not None and rec.proc is None and not (rec.kind == "run" and rec.live):
                del self.records[sid]

    #: engine.Follower: nothing to read again (an action reads what it needs)
    dirty = False

    async def reload(self) -> None:
        """engine.Follower: nothing to do."""

    async def _ensure(self, sid: str) -> None:
        """Replicas: the record of ``sid`` from the store when this replica has
        no copy (another replica's, dropped by :meth:`_foreign`, or taken
        over): a process no replica runs any more shown stopped, resumable
        here (one left on this machine is killed); a run goes on, reporting here."""
        replicas = self.engine.replicas
        if sid in self.records or replicas is None:
            return
        row = await replicas.managed_row(sid)
        if row is None or sid in self.records:
            return
        rec = Record.from_row(row)
        now = self.engine.clock.now()
        changed = False
        if rec.kind == "server" and rec.live:
            if rec.pid is not None and await asyncio.to_thread(kill_leftover, rec.pid, rec.proc_start):
                log.warning("stopped Claude Code process %d of managed session %s, left by a replica that stopped", rec.pid, sid)
            rec.state, rec.status_reason, rec.pid = "stopped", REPLICA_GONE, None
            rec.updated_at = now
            changed = True
        elif rec.kind == "run" and rec.live:
            rec.last_report = now
        self.records[sid] = rec
        self.engine.remote.discard(sid)  # this replica's from now on, not shown as another's events say
        if changed:
            await self._publish(rec)

    async def _own(self, sid: str) -> None:
        """Replicas: this replica runs ``sid`` from now on."""
        if self.relay is not None and self.engine.replicas is not None:
            await self.engine.replicas.owner_set(sid, self.relay.me, self.engine.clock.now())

    async def take_over(self, sid: str, gone: int) -> bool:
        """The replica ``gone`` ran ``sid`` and has stopped: take the session
        here (False: another replica took it first). Its record is read from
        the store; a process it ran is shown stopped, resumable here (one left
        on this machine is killed); a run goes on, reporting here."""
        assert self.relay is not None
        replicas = self.engine.replicas
        assert replicas is not None
        now = self.engine.clock.now()
        if await replicas.owner_take(sid, self.relay.me, now, instead_of=gone) != self.relay.me:
            return False
        log.warning("took over managed session %s from a replica that stopped", sid)
        self.records.pop(sid, None)  # what the store says now, not an older copy
        await self._ensure(sid)
        return True

    # --- logs ------------------------------------------------------------------------

    def knows(self, sid: str) -> bool:
        """Whether ``sid`` is a managed session or run (replicas: another's too)."""
        if sid in self.records:
            return True
        if self.engine.replicas is None:
            return False
        s = self.engine.hub.sessions.get(sid)
        return s is not None and s.managed is not None

    def runs_process(self, sid: str) -> bool:
        """Whether the server runs ``sid``'s process (not a run in a terminal)."""
        rec = self.records.get(sid)
        return rec is not None and rec.kind == "server" and rec.live

    async def detail(self, sid: str) -> dict[str, Any]:
        """What ``GET /sessions/{id}`` adds for a managed session or run: how it
        was started (the system prompt as one masked line) and every action on it."""
        rec = self.records.get(sid)
        if rec is None and self.knows(sid):  # another replica's: its record from the store
            row = await self.engine.replicas.managed_row(sid) if self.engine.replicas is not None else None
            rec = Record.from_row(row) if row is not None else None
        if rec is None:
            return {}
        return {
            "managed_detail": {
                "kind": rec.kind, "cwd": rec.cwd, "model": rec.model, "permission_mode": rec.permission_mode,
                "allowed_tools": rec.allowed_tools, "max_turns": rec.max_turns,
                "system_prompt": _task_of(rec.system_prompt) if rec.system_prompt else None,
                "created_at": rec.created_at, "user": rec.user, "message_count": rec.message_count,
                "tool_calls": rec.tool_calls, "queued": rec.queued,
            },
            "actions": await self.engine.store.actions(sid),
        }  # fmt: skip

    async def logs(self, query: LogQuery) -> list[dict[str, Any]]:
        return await self.engine.store.logs(query)

    async def follow(self, query: LogQuery, keepalive_s: float) -> AsyncIterator[list[dict[str, Any]]]:
        """Log lines as they come (``?follow=1``): each batch after the last;
        an empty batch every ``keepalive_s`` of silence; ends when the session
        is deleted or the server stops."""
        after = query.after
        while True:
            ev = self._logs_changed.setdefault(query.session_id, asyncio.Event())
            lines = await self.engine.store.logs(dataclasses.replace(query, after=after))
            if lines:
                after = lines[-1]["id"]
                yield lines
                continue
            if self._closing or self.engine.stop_event.is_set() or not self.knows(query.session_id):
                return
            try:
                await asyncio.wait_for(ev.wait(), keepalive_s)
            except asyncio.TimeoutError:
                yield []
            ev.clear()

    def end_follows(self) -> None:
        """End every ``?follow=1`` stream (the server is shutting down: it
        waits for open responses before it stops the processes)."""
        self._closing = True
        for ev in self._logs_changed.values():
            ev.set()

    def _wake(self, sid: str) -> None:
        ev = self._logs_changed.get(sid)
        if ev is not None:
            ev.set()

    # --- the process ---------------------------------------------------------------------

    def _claude(self) -> str:
        try:
            return find_claude(self.claude_bin)
        except ConfigError as exc:
            raise ApiError(503, str(exc)) from None

    def _transcript_of(self, rec: Record) -> str | None:
        """The transcript the CLI reads on ``--resume`` (it runs with the server's
        environment), else the one the index knows, else None."""
        config = os.environ.get("CLAUDE_CONFIG_DIR") or os.path.join(os.path.expanduser("~"), ".claude")
        own = os.path.join(config, "projects", re.sub(r"[^A-Za-z0-9]", "-", rec.cwd), f"{rec.id}.jsonl")
        if os.path.isfile(own):
            return own
        return next((f.path for f in self.engine.index.files_of(rec.id) if f.kind == "main"), None)

    def _launch(self, rec: Record, cmd: list[str], prompt: str | None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "CLAUDECODE"}
        rec.proc = ClaudeProcess(cmd, rec.cwd, env, interactive=True)
        rec.ready = asyncio.Event()
        rec.task = asyncio.create_task(self._drive(rec, prompt), name=f"managed {rec.id}")

    async def _drive(self, rec: Record, prompt: str | None) -> None:
        """Run the process until it exits: every line logged and folded."""
        proc = rec.proc
        assert proc is not None
        sid = rec.id
        proc.on_stderr = lambda text: self._log(rec, [LogLine(ts=self.engine.clock.now(), level="warn", source="stderr", kind="raw", content=cut(text))])
        proc.on_stdin = lambda obj: self._log(rec, describe(obj, self.engine.clock.now(), source="stdin", cwd=rec.cwd))
        try:
            try:
                await proc.start()
            except OSError as exc:
                rec.state, rec.status_reason = "error", cut(f"could not start Claude Code: {exc.strerror or exc}", 120)
                self._log(rec, [LogLine(ts=self.engine.clock.now(), level="error", source="system", kind="system", content=rec.status_reason)])
                await self._publish(rec)
                return
            rec.pid, rec.proc_start = proc.pid, proc_start_time(proc.pid or 0)
            if rec.stopping is not None or self._closing:  # stopped, or the server shutting down, while it was being started
                rec.stopping = rec.stopping or "server shut down"
                raise ProcessGone(rec.stopping)
            self._log(rec, [LogLine(ts=self.engine.clock.now(), level="info", source="system", kind="system", content=cut(f"started: {' '.join(proc.cmd[1:])}"))])
            await self._publish(rec)
            await proc.initialize()
            if prompt:
                await self._send_prompt(rec, prompt)
            else:
                rec.state, rec.status_reason = "waiting", "resumed: waiting for a message"
                await self._publish(rec)
            rec.ready.set()
            async for msg in proc.lines():
                await self._fold(rec, msg)
        except ProcessGone:
            pass
        except Exception:  # noqa: BLE001 - the process is stopped below; the server goes on
            log.exception("managed session %s failed", sid)
            rec.stopping = rec.stopping or "sessionwatch error (see the server log)"
        finally:
            rec.ready.set()
            # stdout closed: the process is ending by itself; else (an error here) stop it
            code = await proc.wait(STOP_STEP_S if rec.stopping is None else 0.5)
            if code is None:
                code = await proc.stop()
            await proc.close()
            now = self.engine.clock.now()
            rec.exit_code = code
            rec.asked.clear()
            rec.queued = 0
            if rec.stopping is not None or code == 0:
                rec.state, rec.status_reason = "stopped", rec.stopping or "process exited 0"
            else:
                rec.state, rec.status_reason = "error", f"process exited {code}" if code is not None and code >= 0 else f"process killed by signal {-(code or 0)}"
            rec.pid = None
            rec.proc = None
            rec.updated_at = rec.last_activity = now
            self._log(rec, [LogLine(ts=now, level="info" if rec.state == "stopped" else "error", source="system", kind="system",
                                    content=f"process ended ({rec.status_reason}), exit status {code}")])  # fmt: skip
            with contextlib.suppress(Exception):
                await self._flush_logs(rec)
                await self._publish(rec)

    async def _send_prompt(self, rec: Record, text: str) -> None:
        assert rec.proc is not None
        rec.queued += 1
        rec.message_count += 1
        try:
            await rec.proc.send(user_message(text, rec.id))
        except ProcessGone:
            rec.queued -= 1
            raise ApiError(409, "the session's process has ended") from None
        if rec.state == "starting":
            rec.status_reason = "starting"
        await self._flush_logs(rec)

    async def _fold(self, rec: Record, msg: dict[str, Any]) -> None:
        now = self.engine.clock.now()
        kind = msg.get("type")
        self._log(rec, describe(msg, now, cwd=rec.cwd))
        publish = False
        if kind == "system" and msg.get("subtype") == "init":
            rec.model = msg.get("model") or rec.model
            if rec.state == "starting":
                rec.state, rec.status_reason = "running", None
                publish = True
        elif kind == "assistant":
            message = msg.get("message") or {}
            tools = [b for b in message.get("content") or [] if isinstance(b, dict) and b.get("type") == "tool_use"]
            rec.message_count += 1
            if tools:
                rec.tool_calls += len(tools)
                rec.status_reason = cut(f"tool: {tools[-1].get('name')}", 60)
                publish = True
            if rec.state != "running":
                rec.state = "running"
                publish = True
            rec.last_activity = now
        elif kind == "user":
            rec.last_activity = now
        elif kind == "control_request":
            req = msg.get("request") or {}
            if req.get("subtype") == "can_use_tool":
                tool = req.get("tool_name")
                raw_input = req.get("input")
                tool_input: dict[str, Any] = raw_input if isinstance(raw_input, dict) else {}
                rid = str(msg.get("request_id"))
                pid = req.get("tool_use_id") or rid
                pending = Pending(
                    id=str(pid), kind="question" if tool in QUESTION_TOOLS else "permission", tool=tool,
                    summary=summarize(tool, tool_input, rec.cwd), since=iso(now), answerable=True,
                )  # fmt: skip
                rec.asked[rid] = Asked(rid, pending, tool_input)
                rec.last_activity = now
                publish = True
            else:
                # a request sessionwatch does not serve: say so, so the CLI does not wait on it
                assert rec.proc is not None
                with contextlib.suppress(ProcessGone):
                    await rec.proc.send({"type": "control_response", "response": {"subtype": "error", "request_id": msg.get("request_id"), "error": f"unsupported: {req.get('subtype')}"}})
        elif kind == "control_cancel_request":
            if rec.asked.pop(str(msg.get("request_id")), None) is not None:
                publish = True
        elif kind == "result":
            cost = msg.get("total_cost_usd")
            if isinstance(cost, (int, float)):
                # a resumed CLI's total goes on from the transcript's last cost-state (2.1.3xx)
                rec.total_cost_usd = round(rec.cost_before + max(0.0, float(cost) - rec.cost_restored), 6)
            # num_turns and duration_ms are the message's own; total_cost_usd is the process's running total
            if isinstance(msg.get("num_turns"), int):
                rec.num_turns += msg["num_turns"]
            if isinstance(msg.get("duration_ms"), int):
                rec.duration_ms = (rec.duration_ms or 0) + msg["duration_ms"]
            rec.queued = max(0, rec.queued - 1)
            sub = msg.get("subtype")
            rec.asked.clear()
            if rec.queued == 0:
                rec.state = "waiting"
                rec.status_reason = "turn ended" if sub in (None, "success") else _result_reason(msg)
            rec.last_activity = now
            publish = True
            if rec.stopping is None and self._over_budget(rec):
                self._stop_soon(rec, BUDGET_REACHED)
        await self._flush_logs(rec)
        if publish:
            rec.updated_at = now
            await self._publish(rec)

    def _over_budget(self, rec: Record) -> bool:
        cap = self.cap(rec)
        if cap is None:
            return False
        costs = [rec.total_cost_usd]
        shown = self.engine.hub.sessions.get(rec.id)
        if shown is not None:
            costs.append(shown.cost_usd)
        return any(c is not None and c > cap for c in costs)

    def _stop_soon(self, rec: Record, why: str) -> None:
        rec.stopping = why
        self._log(rec, [LogLine(ts=self.engine.clock.now(), level="warn", source="system", kind="system", content=f"stopping: {why} (cap ${self.cap(rec) or 0:.2f})")])
        task = asyncio.get_running_loop().create_task(self._stop_process(rec))
        self._stops.add(task)
        task.add_done_callback(self._stops.discard)

    async def _stop_process(self, rec: Record) -> None:
        proc = rec.proc
        if proc is not None and proc.running:
            await proc.stop()

    # --- store and publishing --------------------------------------------------------------

    def _log(self, rec: Record, lines: list[LogLine]) -> None:
        buf = self._buffers.setdefault(rec.id, [])
        buf.extend(lines)

    async def _flush_logs(self, rec: Record) -> None:
        lines = self._buffers.pop(rec.id, None)
        if lines:
            await self.engine.store.add_logs(rec.id, [msgspec.to_builtins(x) for x in lines])
            self._wake(rec.id)

    async def _publish(self, rec: Record, *, extra: list[Any] | None = None, new: bool = False) -> None:
        store = self.engine.store
        writes = [*store.managed_save(rec.row()), *(extra or [])]

        async def change() -> list[str]:
            if new:
                self.records[rec.id] = rec
            await store.write(writes)
            return [rec.id]

        await self.engine.changed("managed", change)


def restored_cost(path: str | None, chunk: int = 1 << 20) -> float:
    """The ``totalCostUSD`` of a transcript's last ``cost-state`` line (what
    Claude Code 2.1.3xx restores as its running total on ``--resume``), 0 if
    none; read from the end."""
    marker = b'"type":"cost-state"'
    if path is None:
        return 0.0
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            tail = b""
            while end > 0:
                start = max(0, end - chunk)
                f.seek(start)
                data = f.read(end - start) + tail
                lines = data.split(b"\n")
                tail = lines[0] if start > 0 else b""
                for line in reversed(lines[1:] if start > 0 else lines):
                    if marker in line:
                        try:
                            value = msgspec.json.decode(line).get("totalCostUSD")
                        except (msgspec.DecodeError, AttributeError):
                            continue
                        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                            return float(value)
                end = start
    except OSError:
        pass
    return 0.0


def _task_of(text: str) -> str:
    return cut(" ".join(text.split()), 120)


def _result_reason(msg: Mapping[str, Any]) -> str:
    sub = str(msg.get("subtype") or "")
    if sub == "error_max_turns":
        return "max turns reached"
    if sub == "error_max_budget_usd":
        return BUDGET_REACHED
    if sub == "error_during_execution":
        return "turn interrupted"
    return cut(f"turn failed: {sub.replace('_', ' ')}", 60)
