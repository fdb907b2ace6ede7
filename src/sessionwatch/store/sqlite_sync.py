"""The tracker's direct mode: the server's SQLite file, written synchronously.

A Panel app started with ``SessionTracker(db_path=...)`` writes its rows
straight into the file the server reads (``sessionwatch serve --db``). The
tables come from :mod:`sessionwatch.store.schema`, the module the server's
store (:mod:`sessionwatch.store.sqlite`) creates them from, so the two cannot
drift. Plain :mod:`sqlite3`: no aiosqlite, nothing of the server, so importing
the tracker stays light.

Several processes write one file: every write is a short ``BEGIN IMMEDIATE``
transaction, the journal is WAL and readers never wait for writers.
Statements write the columns they change, never whole rows.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sessionwatch.store.schema import PANEL_DDL

__all__ = ["connect", "delete", "poll", "register", "set_status", "write"]

#: How long a writer waits for another process's transaction, in seconds.
BUSY_TIMEOUT_S = 5.0
#: Ids per ``IN (...)`` list (SQLite's variable limit is 999 on old builds).
CHUNK = 500


def connect(path: Path) -> sqlite3.Connection:
    """Open `path` (creating its folder and the Panel tables) for direct writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(PANEL_DDL)
    return conn


@contextlib.contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A short `BEGIN IMMEDIATE` transaction (several processes write the file)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(chunk: Sequence[str]) -> str:
    return ",".join("?" * len(chunk))


def register(
    conn: sqlite3.Connection, registration: Mapping[str, Any], status: str, task: str | None
) -> None:
    """Insert the session's row, or bring a row of the same id up to date.

    `registration` is what the tracker sends to ``POST /sessions``
    (``session_id``, ``app_name``, ``pid``; ``user_id``, ``host``, ``url`` when
    known). A kill already requested for the id (``kill_requested``) is kept.
    """
    row = registration
    now = time.time()
    with write(conn):
        conn.execute(
            """
            INSERT INTO panel_sessions (id, app_name, user_id, host, pid, url, status,
                current_task, started_at, last_activity, last_heartbeat)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET
                app_name = excluded.app_name, user_id = excluded.user_id,
                host = excluded.host, pid = excluded.pid, url = excluded.url,
                status = excluded.status, current_task = excluded.current_task,
                last_activity = excluded.last_activity,
                last_heartbeat = excluded.last_heartbeat
            """,
            (row["session_id"], row["app_name"], row.get("user_id"), row.get("host"),
             row["pid"], row.get("url"), status, task, now, now, now),
        )  # fmt: skip


def set_status(conn: sqlite3.Connection, sid: str, status: str, task: str | None) -> bool:
    """Write the status columns; False when the row is gone (cleaned up)."""
    now = time.time()
    with write(conn):
        cursor = conn.execute(
            "UPDATE panel_sessions SET status = ?, current_task = ?, last_activity = ?,"
            " last_heartbeat = ? WHERE id = ?",
            (status, task, now, now, sid),
        )
    return cursor.rowcount > 0


def delete(conn: sqlite3.Connection, ids: Sequence[str]) -> None:
    """Delete the sessions of `ids` (deregistration) and their kill history,
    as the server does when it deletes a session."""
    with write(conn):
        for chunk in _chunks(ids):
            conn.execute(f"DELETE FROM panel_sessions WHERE id IN ({_marks(chunk)})", chunk)
            conn.execute(f"DELETE FROM panel_kills WHERE session_id IN ({_marks(chunk)})", chunk)


def poll(
    conn: sqlite3.Connection, ids: Sequence[str], heartbeat: bool
) -> tuple[list[str], list[str]]:
    """Refresh the heartbeats of `ids` if `heartbeat`; return (ids flagged for
    kill, ids missing). Missing rows are only looked for on a heartbeat."""
    killed: list[str] = []
    present: set[str] = set()
    now = time.time()
    if heartbeat:
        with write(conn):
            for chunk in _chunks(ids):
                conn.execute(
                    f"UPDATE panel_sessions SET last_heartbeat = ? WHERE id IN ({_marks(chunk)})",
                    [now, *chunk],
                )
    # A plain read: WAL readers never wait for writers.
    for chunk in _chunks(ids):
        for sid, kill in conn.execute(
            f"SELECT id, kill_requested FROM panel_sessions WHERE id IN ({_marks(chunk)})", chunk
        ):
            present.add(sid)
            if kill:
                killed.append(sid)
    missing = [sid for sid in ids if sid not in present] if heartbeat else []
    return killed, missing
