"""The tracker's direct mode on the server's SQLite file (sessionwatch.store.sqlite_sync)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sessionwatch.store import sqlite_sync

REGISTRATION = {"session_id": "s1", "app_name": "reports", "pid": 42, "host": "box"}


def kills(conn: sqlite3.Connection, sid: str) -> int:
    return int(conn.execute("SELECT count(*) FROM panel_kills WHERE session_id = ?", (sid,)).fetchone()[0])


def test_register_keeps_a_requested_kill_and_writes_only_known_fields(tmp_path: Path) -> None:
    conn = sqlite_sync.connect(tmp_path / "sub" / "sessionwatch.db")
    sqlite_sync.register(conn, REGISTRATION, "idle", None)
    conn.execute("UPDATE panel_sessions SET kill_requested = 1 WHERE id = 's1'")
    sqlite_sync.register(conn, REGISTRATION | {"url": "http://app"}, "running", "export")
    row = conn.execute(
        "SELECT app_name, user_id, host, pid, url, status, current_task, kill_requested"
        " FROM panel_sessions WHERE id = 's1'"
    ).fetchone()
    assert row == ("reports", None, "box", 42, "http://app", "running", "export", 1)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_status_poll_and_missing_rows(tmp_path: Path) -> None:
    conn = sqlite_sync.connect(tmp_path / "sessionwatch.db")
    sqlite_sync.register(conn, REGISTRATION, "idle", None)
    assert sqlite_sync.set_status(conn, "s1", "running", "t")
    assert not sqlite_sync.set_status(conn, "gone", "running", "t")
    assert sqlite_sync.poll(conn, ["s1", "gone"], heartbeat=False) == ([], [])
    assert sqlite_sync.poll(conn, ["s1", "gone"], heartbeat=True) == ([], ["gone"])
    conn.execute("UPDATE panel_sessions SET kill_requested = 1 WHERE id = 's1'")
    assert sqlite_sync.poll(conn, ["s1"], heartbeat=False) == (["s1"], [])


def test_deregistration_drops_the_sessions_kill_history(tmp_path: Path) -> None:
    """Regression: direct mode deleted the session but left its panel_kills
    rows, which the server deletes with the session; a session registered
    again under the id showed the old kills."""
    conn = sqlite_sync.connect(tmp_path / "sessionwatch.db")
    sqlite_sync.register(conn, REGISTRATION, "idle", None)
    conn.execute(
        "INSERT INTO panel_kills (session_id, requested_at, requested_by) VALUES ('s1', 1.0, 'ana')"
    )
    sqlite_sync.delete(conn, ["s1"])
    assert conn.execute("SELECT count(*) FROM panel_sessions").fetchone()[0] == 0
    assert kills(conn, "s1") == 0
