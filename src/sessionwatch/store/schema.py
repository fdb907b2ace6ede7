"""The Panel tracker's rows as the store and the tracker both see them.

The shape of a tracker session id and the Panel tables, in a module that
imports neither aiosqlite nor the server: the server's store
(``store/sqlite.py``) and the tracker's direct mode (``integrations/panel/tracker.py``) share them,
so they cannot drift, and importing the tracker stays light.
"""

from __future__ import annotations

import re

__all__ = ["PANEL_DDL", "RESERVED_IDS", "SESSION_ID_RE", "session_id_problem"]

#: What a tracker session id may look like: it appears in URL paths
#: (``/sessions/{id}``), so no ``/``, ``?``, ``#``, ``%`` or spaces, and it starts
#: with a letter or digit (no ``.`` or ``..``). UUIDs and Bokeh's session ids
#: (signed ones too: ``<id>.<base64url signature>``) fit.
SESSION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
#: Words that are, or may become, routes under ``/sessions/``: never a session id.
RESERVED_IDS = frozenset(
    {"stale", "all", "new", "batch", "search", "export", "import", "stream", "stats", "count", "heartbeats"}
)


def session_id_problem(sid: str) -> str | None:
    """Why ``sid`` cannot be a tracker session id, or None if it can."""
    if not SESSION_ID_RE.fullmatch(sid):
        return (
            "session_id must be 1 to 128 characters of letters, digits, '.', '_', ':' and '-',"
            " starting with a letter or digit"
        )
    if sid.lower() in RESERVED_IDS:
        return f"session_id {sid!r} is reserved for the API's own routes"
    return None


#: Panel tables, shared with ``integrations/panel/tracker.py`` (direct mode creates them too).
PANEL_DDL = """
CREATE TABLE IF NOT EXISTS panel_sessions (
    id TEXT PRIMARY KEY,
    app_name TEXT NOT NULL,
    user_id TEXT, host TEXT, pid INTEGER, url TEXT,
    status TEXT NOT NULL DEFAULT 'idle',
    current_task TEXT,
    started_at REAL NOT NULL,
    last_activity REAL NOT NULL,
    last_heartbeat REAL NOT NULL,
    kill_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS panel_kills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL, requested_at REAL NOT NULL, requested_by TEXT
);
"""
