"""What the dashboard shows of a session: rows, filters, the diff of two tables.

Pure functions of the sessions the feed holds (no Panel, no I/O): one table
row per session (:func:`session_row`), the filters and the search box
(:class:`Filters`, :func:`search_matches`, the web page's rules) and what to
send to an open table (:func:`diff_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sessionwatch.model import SOURCES, STATUSES, Status

__all__ = [
    "APPROVE_BUTTON",
    "COLUMNS",
    "DENY_BUTTON",
    "KILL_BUTTON",
    "KILL_PENDING",
    "SOURCES",
    "STATUSES",
    "STATUS_COLOURS",
    "Diff",
    "Filters",
    "Session",
    "can_approve",
    "diff_rows",
    "search_matches",
    "session_row",
    "text",
]

#: Status -> (text colour, background): idle green, running yellow, needs
#: approval purple, stale red, waiting blue, ended grey, failed rose.
STATUS_COLOURS: dict[Status, tuple[str, str]] = {
    "running": ("#854d0e", "#fef08a"),
    "needs_approval": ("#7e22ce", "#f3e8ff"),
    "waiting": ("#1e40af", "#dbeafe"),
    "idle": ("#166534", "#dcfce7"),
    "stale": ("#991b1b", "#fee2e2"),
    "ended": ("#374151", "#e5e7eb"),
    "failed": ("#9f1239", "#ffe4e6"),
}

Session = dict[str, Any]


COLUMNS = (
    "source",
    "project",
    "status",
    "task",
    "user",
    "host",
    "last_activity",
    "duration",
    "messages",
    "tools",
    "tokens",
    "cost",
    "kill",
    "approve",
    "deny",
)
#: Approve / Deny of a prompt the server holds open (away mode; ``controls`` has "approve").
APPROVE_BUTTON = '<button class="sw-approve" title="Let Claude Code run this tool call">Approve</button>'
DENY_BUTTON = '<button class="sw-deny" title="Refuse this tool call, with an optional message">Deny</button>'
KILL_BUTTON = '<button class="sw-kill" title="Kill this Panel session">Kill</button>'
KILL_PENDING = '<span class="sw-killing">killing…</span>'


def text(value: Any) -> str:
    return "" if value is None else str(value)


def _clock(iso: Any) -> str:
    """ISO 8601 UTC -> local HH:MM:SS (the date when not today)."""
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(str(iso)).astimezone()  # 3.11 reads "Z"
    except ValueError:
        return str(iso)
    if moment.date() == datetime.now().astimezone().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M")


def _duration(seconds: Any) -> str:
    try:
        total = int(float(seconds))
    except (TypeError, ValueError):
        return ""
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def session_row(session: Session) -> dict[str, Any]:
    """One table row (every column a plain str/int/float) for a Session."""
    tokens = session.get("tokens") or {}
    total_tokens = sum(int(v or 0) for v in tokens.values()) if isinstance(tokens, dict) else 0
    cost = session.get("cost_usd")
    panel = session.get("source") == "panel"
    if panel:
        kill = KILL_PENDING if session.get("kill_requested") else KILL_BUTTON
    else:
        kill = ""
    answerable = can_approve(session)
    return {
        "source": text(session.get("source")),
        "project": text(session.get("project")),
        "status": text(session.get("status")),
        # a pending prompt says what the session waits for (tool + summary) instead
        "task": text(_pending_note(session) or session.get("current_task") or session.get("title")),
        "user": text(session.get("user")),
        "host": text(session.get("host")),
        "last_activity": _clock(session.get("last_activity")),
        "duration": _duration(session.get("duration_seconds")),
        "messages": int(session.get("message_count") or 0),
        "tools": int(session.get("tool_calls") or 0),
        "tokens": total_tokens,
        "cost": "" if cost is None else f"${float(cost):.2f}",
        "kill": kill,
        "approve": APPROVE_BUTTON if answerable else "",
        "deny": DENY_BUTTON if answerable else "",
    }


def can_approve(session: Session) -> bool:
    """Whether the session's prompt can be answered now: pending, and the server offers "approve"."""
    pending = session.get("pending")
    controls = session.get("controls")
    return (
        isinstance(pending, dict)
        and isinstance(pending.get("id"), str)
        and isinstance(controls, list)
        and "approve" in controls
    )


def _pending_note(session: Session) -> str | None:
    pending = session.get("pending")
    if not isinstance(pending, dict):
        return None
    summary = pending.get("summary") or pending.get("tool")
    return f"waiting for you: {summary}" if summary else "waiting for you"


@dataclass(frozen=True)
class Filters:
    sources: tuple[str, ...] = SOURCES
    statuses: tuple[str, ...] = STATUSES
    text: str = ""
    #: one machine's sessions (``Session.host``, exact); "" for every host
    host: str = ""

    def match(self, sid: str, session: Session) -> bool:
        if session.get("source") not in self.sources:
            return False
        if session.get("status") not in self.statuses:
            return False
        if self.host and session.get("host") != self.host:
            return False
        return search_matches(session, self.text)


#: What the search box looks at, as the web page's (frontend/view.js, matches()).
SEARCHED_FIELDS = ("project", "title", "git_branch", "current_task")


def search_matches(session: Session, query: str) -> bool:
    """Whether every word of `query` (any case) is in one of the session's
    searched fields; tests/vectors/search.json is shared with the web page."""
    words = query.lower().split()
    haystack = "\n".join(
        value.lower() for key in SEARCHED_FIELDS if isinstance(value := session.get(key), str)
    )
    return all(word in haystack for word in words)


@dataclass
class Diff:
    """How to bring a table from `old` rows to `new` rows."""

    patch: dict[str, list[tuple[str, Any]]]
    add: dict[str, dict[str, Any]]
    remove: list[str]


def diff_rows(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> Diff:
    patch: dict[str, list[tuple[str, Any]]] = {}
    for sid, row in new.items():
        before = old.get(sid)
        if before is None:
            continue
        for column, value in row.items():
            if before.get(column) != value:
                patch.setdefault(column, []).append((sid, value))
    add = {sid: row for sid, row in new.items() if sid not in old}
    remove = [sid for sid in old if sid not in new]
    return Diff(patch, add, remove)
