"""Claude Code's live registry: which sessions have a running process right now.

While a CLI process runs (interactive or ``-p``), it keeps
``~/.claude/sessions/<pid>.json`` (observed with 2.1.330)::

    {"pid": 23169, "sessionId": "1266b4a9-...", "cwd": "/home/me/work",
     "startedAt": 1795333222306, "procStart": "956552", "version": "2.1.330",
     "kind": "interactive", "entrypoint": "cli", "name": "work-cf",
     "pidDomain": "linux:<machine-id>:pid:[4026531836]",
     "status": "idle" | "busy", "updatedAt": ..., "statusUpdatedAt": ..., ...}

and removes it when the process exits. The file appears at start, before the
first prompt (so before any transcript), with the session id. ``status`` is
``busy`` while a turn runs, ``waiting`` with ``"waitingFor": "permission
prompt"`` while a permission dialog is shown (interactive), and ``idle``
otherwise, also right after a dialog is rejected with Escape, which sends no
hook event at all (observed with 2.1.330 in tmux; see tests/test_live.py).
The very first write of the file has no ``status`` yet (None here).
:func:`registry_status` maps these to sessionwatch's statuses.

A file can outlive its process (the CLI was killed), and a pid can be reused
by another process later: a process counts as alive only if
``/proc/<pid>/stat`` exists *and* its start time (field 22, clock ticks since
boot) equals the file's ``procStart``. A file written in another machine's or
another pid namespace's registry (``pidDomain``) cannot be checked here; it
counts as alive, marked ``verified=False``.

The CLI rewrites the file in place (``open`` without ``O_TRUNC``, ``write``,
``ftruncate``; seen with strace), so a reader can catch it half-written or
with the old content's tail still behind the new: a file that does not parse
is read again a few times, and if it still does not, its pid is listed in
``unreadable`` so that a caller keeps what it knew rather than taking the
process for gone.

The folder also holds ``<pid>.<hash>.key`` files with a peer token: they are
never opened.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec

from sessionwatch.model import Session, before_transcript

#: ``<pid>.json`` only; ``<pid>.<hash>.key`` and anything else is not ours to read.
_ENTRY: Final = re.compile(r"^(\d{1,10})\.json$")
#: a registry file is a few hundred bytes; anything much larger is not one
MAX_BYTES: Final = 64 * 1024
#: reads of a file that does not parse before it counts as bad (it may be mid-rewrite)
READ_TRIES: Final = 3


class _Entry(msgspec.Struct, kw_only=True):
    pid: int
    sessionId: str
    cwd: str | None = None
    startedAt: float | None = None
    procStart: str | int | None = None
    version: str | None = None
    kind: str | None = None
    entrypoint: str | None = None
    name: str | None = None
    pidDomain: str | None = None
    status: str | None = None
    waitingFor: str | None = None
    updatedAt: float | None = None
    statusUpdatedAt: float | None = None


_decoder = msgspec.json.Decoder(_Entry)


class LiveProcess(msgspec.Struct, frozen=True, kw_only=True):
    """One registry entry (times in unix seconds)."""

    pid: int
    session_id: str
    cwd: str | None
    started_at: float | None
    version: str | None
    kind: str | None
    entrypoint: str | None
    name: str | None
    #: "busy" while a turn runs, "waiting" while a dialog waits, "idle" between turns (as the CLI writes it)
    status: str | None
    status_updated_at: float | None
    updated_at: float | None
    proc_start: str | None
    #: False when the file comes from another machine or pid namespace (liveness not checkable here)
    verified: bool = True
    #: with status "waiting": what for ("permission prompt")
    waiting_for: str | None = None


@dataclass
class LiveScan:
    """What one read of the registry found."""

    #: session id → its live process (the newest by ``started_at`` if two claim one session)
    live: dict[str, LiveProcess] = field(default_factory=dict)
    #: entries whose process is gone: dead pid, or the pid now belongs to another process
    gone: list[LiveProcess] = field(default_factory=list)
    #: files that could not be used (unreadable, not JSON, wrong shape, pid ≠ file name)
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    #: pids (from the file names) of the skipped files: their sessions' liveness is unknown this time
    unreadable: list[int] = field(default_factory=list)


def _ms(value: float | None) -> float | None:
    return value / 1000.0 if value is not None else None


def process_start(pid: int, proc: Path = Path("/proc")) -> str | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks), or None if there is no such process."""
    try:
        raw = (proc / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # comm (field 2) is in parentheses and may hold spaces or ')': fields resume after the last ')'
    rest = raw[raw.rfind(b")") + 1 :].split()
    # rest[0] is field 3 (state), so field 22 is rest[19]
    return rest[19].decode("ascii", "replace") if len(rest) > 19 else None


def pid_domain(proc: Path = Path("/proc"), machine_id: Path = Path("/etc/machine-id")) -> str | None:
    """This process's ``pidDomain`` as Claude Code spells it, or None if it cannot be told."""
    try:
        mid = machine_id.read_text().strip()
        ns = os.readlink(proc / "self" / "ns" / "pid")
    except OSError:
        return None
    return f"linux:{mid}:{ns}"


def is_alive(entry: LiveProcess, proc: Path = Path("/proc")) -> bool:
    """The entry's process still runs: its pid exists and started when the entry says."""
    started = process_start(entry.pid, proc)
    if started is None:
        return False
    return entry.proc_start is None or entry.proc_start == started


def read_entry(path: Path, domain: str | None = None) -> LiveProcess:
    """One ``<pid>.json`` file; raises ``OSError`` or ``ValueError`` when it is not usable."""
    m = _ENTRY.match(path.name)
    if m is None:
        raise ValueError("not a <pid>.json file")
    with path.open("rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise ValueError("too large for a registry entry")
    try:
        e = _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(str(exc)) from None
    if e.pid != int(m.group(1)) or e.pid <= 0:
        raise ValueError(f"pid {e.pid} does not match the file name")
    if not e.sessionId:
        raise ValueError("no sessionId")
    return LiveProcess(
        pid=e.pid,
        session_id=e.sessionId,
        cwd=e.cwd,
        started_at=_ms(e.startedAt),
        version=e.version,
        kind=e.kind,
        entrypoint=e.entrypoint,
        name=e.name,
        status=e.status,
        status_updated_at=_ms(e.statusUpdatedAt),
        updated_at=_ms(e.updatedAt),
        proc_start=str(e.procStart) if e.procStart is not None else None,
        verified=e.pidDomain is None or domain is None or e.pidDomain == domain,
        waiting_for=e.waitingFor,
    )


def registry_status(entry: LiveProcess) -> tuple[str, str] | None:
    """(status, status_reason) the entry's own ``status`` says, or None for a value not known here.

    ``busy`` → running; ``waiting`` → needs_approval ("waiting for permission prompt");
    ``idle`` → waiting. Hooks say more (which tool, what for); this works without them.
    """
    if entry.status == "busy":
        return "running", "busy"
    if entry.status == "waiting":
        return "needs_approval", f"waiting for {entry.waiting_for}" if entry.waiting_for else "waiting"
    if entry.status == "idle":
        return "waiting", "idle"
    return None


def read_live(sessions_dir: Path, *, proc: Path = Path("/proc"), domain: str | None = None) -> LiveScan:
    """Read ``sessions_dir`` (``~/.claude/sessions``): which sessions have a live process.

    Never raises for the folder's content: a missing folder is an empty scan,
    a bad file is counted in ``skipped``. ``domain`` defaults to this
    process's :func:`pid_domain`.
    """
    scan = LiveScan()
    here = domain if domain is not None else pid_domain(proc)
    try:
        names = sorted(os.listdir(sessions_dir))
    except OSError:
        return scan
    for name in names:
        if _ENTRY.match(name) is None:
            continue
        path = sessions_dir / name
        entry: LiveProcess | None = None
        problem = ""
        for _ in range(READ_TRIES):
            try:
                entry = read_entry(path, here)
                break
            except FileNotFoundError:
                break  # its process exited between listing and reading: not a bad file
            except (OSError, ValueError) as exc:
                problem = str(exc)[:200]
        if entry is None:
            if problem:
                scan.skipped += 1
                scan.problems.append(f"{name}: {problem}")
                scan.unreadable.append(int(name.split(".", 1)[0]))
            continue
        if entry.verified and not is_alive(entry, proc):
            scan.gone.append(entry)
            continue
        current = scan.live.get(entry.session_id)
        if current is None or (entry.started_at or 0) > (current.started_at or 0):
            scan.live[entry.session_id] = entry
    return scan


# --- the live source: the registry as facets (facets.py, source "live") ------------------

#: ``status_reason`` of a session whose process is gone without a SessionEnd the hooks saw
EXITED_REASON: Final = "process exited"


class _Transcripts(Protocol):
    def shows(self, sid: str) -> bool: ...

    def last_ts(self, sid: str) -> float | None: ...


class _Hooks(Protocol):
    def claims(self, sid: str) -> bool: ...

    def status(self, sid: str) -> str | None: ...

    def registry_idle(self, sid: str, idle_since: float) -> bool: ...


class LiveSource:
    """Which sessions have a live Claude Code process, polled on the engine's clock.

    Owner after ``claude`` and ``hooks`` (facets.RULES): a process that has
    not written a transcript yet and sends no hooks (none installed) is still
    listed, as a Claude row with ``project`` = its ``cwd``. Its facet says:

    - ``ended`` ("process exited", no ``pending``, no controls) once the
      process is gone: its file removed, or left behind by a dead or reused
      pid; unless the hooks already said ``ended`` or ``failed`` (their
      reason is the better one). This wins over the hooks' status: a killed
      CLI sends no SessionEnd;
    - while the process lives, its registry status (busy → running, a dialog
      → needs_approval, idle → waiting; the idle rule on top) only when the
      hooks have said nothing: hooks are exact, the registry is the fallback.

    A registry ``idle`` newer than a pending prompt clears it in the hooks'
    state (a prompt dismissed with Escape sends no hook event).
    """

    name = "live"

    def __init__(
        self,
        sessions_dir: Path,
        hooks: _Hooks,
        transcripts: _Transcripts,
        *,
        idle_after_s: float,
        read: Callable[[Path], LiveScan] = read_live,
    ) -> None:
        self.sessions_dir = sessions_dir
        self.hooks = hooks
        self.transcripts = transcripts
        self.idle_after_s = idle_after_s
        self.read = read
        #: session id → its live process
        self.procs: dict[str, LiveProcess] = {}
        #: session id → the process it had when it was found gone
        self.exited: dict[str, LiveProcess] = {}

    def scan(self) -> LiveScan:
        """Read the registry (blocking: call it on a worker thread)."""
        return self.read(self.sessions_dir)

    def apply(self, scan: LiveScan) -> set[str]:
        """Take one scan in (the engine's applying task); returns the ids whose facet changed."""
        touched: set[str] = set()
        unreadable = set(scan.unreadable)
        for sid, proc in scan.live.items():
            before = self.procs.get(sid)
            if before is None or _shown(before) != _shown(proc) or sid in self.exited:
                touched.add(sid)
            self.procs[sid] = proc
            self.exited.pop(sid, None)
            if proc.status == "idle" and proc.status_updated_at is not None:
                if self.hooks.registry_idle(sid, proc.status_updated_at):
                    touched.add(sid)
        for sid, proc in list(self.procs.items()):
            if sid not in scan.live and proc.pid not in unreadable:
                del self.procs[sid]
                self.exited[sid] = proc
                touched.add(sid)
        for proc in scan.gone:
            if proc.session_id not in scan.live and proc.session_id not in self.exited:
                self.exited[proc.session_id] = proc
                touched.add(proc.session_id)
        return touched

    # --- the facet ----------------------------------------------------------------

    def ids(self) -> list[str]:
        return [*self.procs, *(sid for sid in self.exited if sid not in self.procs)]

    def claims(self, sid: str) -> bool:
        return sid in self.procs or sid in self.exited

    def facet(self, sid: str, now: float) -> Session | Mapping[str, Any] | None:
        proc = self.procs.get(sid)
        fields: dict[str, Any] = {}
        if proc is None:
            proc = self.exited.get(sid)
            if proc is None:
                return None
            if self.hooks.status(sid) not in ("ended", "failed"):
                fields = {"status": "ended", "status_reason": EXITED_REASON, "pending": None, "controls": ()}
        elif not self.hooks.claims(sid) or self.hooks.status(sid) is None:
            said = registry_status(proc)
            if said is not None:
                activity = max(
                    (t for t in (proc.status_updated_at, proc.updated_at, proc.started_at, self.transcripts.last_ts(sid)) if t is not None),
                    default=None,
                )
                status, reason = said
                if status in ("running", "waiting") and (activity is None or now - activity >= self.idle_after_s):
                    status, reason = "idle", "no activity"
                fields = {"status": status, "status_reason": reason}
        if self.transcripts.shows(sid) or self.hooks.claims(sid):
            return fields
        last = proc.status_updated_at or proc.updated_at or proc.started_at
        return before_transcript(
            sid,
            project=proc.cwd,
            status=fields.get("status", "waiting"),
            started=proc.started_at,
            last=last,
            version=proc.version,
            status_reason=fields.get("status_reason"),
        )


def _shown(proc: LiveProcess) -> tuple[object, ...]:
    """What of an entry changes the facet (not ``updatedAt``, rewritten often)."""
    return (proc.pid, proc.status, proc.waiting_for, proc.status_updated_at, proc.cwd, proc.version)
