"""Sessions for tests: a whole ``model.Session`` from a few fields."""

from __future__ import annotations

from typing import Any

from sessionwatch.model import Session, Tokens


def session(sid: str, **kw: Any) -> Session:
    """A waiting Claude session in ``/p``, with ``kw`` over it (``tokens``
    may be a dict of some buckets)."""
    fields: dict[str, Any] = {
        "id": sid, "source": "claude", "project": "/p", "title": None, "status": "waiting",
        "current_task": None, "user": None, "host": None, "git_branch": None, "model": None,
        "version": None, "started_at": None, "last_activity": None, "duration_seconds": 0.0,
        "message_count": 0, "tool_calls": 0, "tokens": Tokens(), "cost_usd": None,
        "kill_requested": False, "is_stale": False,
    }
    if isinstance(kw.get("tokens"), dict):
        kw["tokens"] = Tokens(**kw["tokens"])
    fields.update(kw)
    return Session(**fields)
