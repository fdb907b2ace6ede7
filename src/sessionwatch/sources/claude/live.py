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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

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
