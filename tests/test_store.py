from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sessionwatch.errors import ConfigError, StoreClosedError
from sessionwatch.sources.panel.registry import PanelRegistry
from sessionwatch.store.sqlite import MIGRATIONS, PanelRow, Store, TranscriptRow, session_id_problem


async def test_migrations_are_named_recorded_and_run_once(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = await Store.open(db)
    assert await store.migrations() == sorted(name for name, _ in MIGRATIONS)
    assert await store.user_version() == len(MIGRATIONS)
    await store.close()
    store = await Store.open(db)  # again: nothing re-run, nothing fails
    assert await store.user_version() == len(MIGRATIONS)
    await store.close()


async def test_wal_and_busy_timeout(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "a.db")
    async with store.conn.execute("PRAGMA journal_mode") as cur:
        assert (await cur.fetchone())[0] == "wal"  # type: ignore[index]
    async with store.conn.execute("PRAGMA busy_timeout") as cur:
        assert (await cur.fetchone())[0] >= 1000  # type: ignore[index]
    await store.close()


async def test_close_twice_and_closed_error(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "a.db")
    await store.close()
    await store.close()
    with pytest.raises(StoreClosedError):
        await store.load_transcripts()


async def test_not_a_database_is_one_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a usable"):
        await Store.open(db)


async def test_transcripts_and_panel_rows_survive_reopen(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = await Store.open(db)
    await store.save_transcripts([TranscriptRow("/x.jsonl", "main", "x", 1, 2, 3, 4.0, 3, b"{}")])
    await store.register_panel(PanelRow("p1", "app", None, "h", 1, None, "idle", None, 1.0, 1.0, 1.0, False))
    await store.record_kill("p1", 2.0, "alice")
    await store.close()
    # another process's view: plain sqlite3
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT kill_requested FROM panel_sessions").fetchone() == (1,)
    store = await Store.open(db)
    assert [r.offset for r in await store.load_transcripts()] == [3]
    assert (await store.load_panel())[0].kill_requested
    assert await store.kills("p1") == [{"requested_at": 2.0, "requested_by": "alice"}]
    await store.delete_panel(["p1"])
    assert await store.load_panel() == []
    await store.close()


async def test_data_version_moves_only_for_other_connections(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = await Store.open(db)
    v0 = await store.data_version()
    await store.register_panel(PanelRow("p1", "app", None, None, None, None, "idle", None, 1.0, 1.0, 1.0, False))
    assert await store.data_version() == v0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE panel_sessions SET status='running'")
    assert await store.data_version() != v0
    await store.close()


def _registry(store: Store) -> PanelRegistry:
    return PanelRegistry(store, stale_after_s=120, cleanup_after_s=600)


async def test_status_update_does_not_undo_another_process_kill(tmp_path: Path) -> None:
    # Two processes on one file (a server and another server or a direct-mode
    # tracker): B's status write must not put kill_requested = 0 back over A's kill.
    db = tmp_path / "a.db"
    a, b = await Store.open(db), await Store.open(db)
    try:
        ra, rb = _registry(a), _registry(b)
        await ra.register("app", session_id="p1", user_id=None, host=None, pid=1, url=None)
        await rb.load()
        await ra.kill("p1", "boss")
        assert await rb.set_status("p1", "running", "Report")
        await rb.register("app", session_id="p1", user_id="ann", host="h", pid=2, url=None)
        (row,) = await a.load_panel()
        assert row.kill_requested, "the kill written by the other process was lost"
        assert (row.status, row.current_task, row.user_id, row.pid) == ("running", "Report", "ann", 2)
    finally:
        await a.close()
        await b.close()


async def test_panel_writes_name_their_columns(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "a.db")
    statements: list[str] = []
    try:
        reg = _registry(store)
        await reg.register("app", session_id="p1", user_id=None, host=None, pid=1, url=None)
        await store.conn.set_trace_callback(statements.append)
        await reg.set_status("p1", "running", "t")
        await reg.register("app", session_id="p1", user_id=None, host=None, pid=1, url=None)
        await store.conn.set_trace_callback(None)
        writes = [s for s in statements if s.split()[0] in ("INSERT", "UPDATE", "REPLACE")]
        assert len(writes) == 2
        assert writes[0].startswith("UPDATE panel_sessions SET status = ")
        assert "ON CONFLICT(id) DO UPDATE SET" in writes[1]
        assert all("REPLACE" not in s and "kill_requested =" not in s for s in writes)
    finally:
        await store.close()


async def test_status_of_a_row_deleted_elsewhere_reports_it_gone(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = await Store.open(db)
    try:
        reg = _registry(store)
        await reg.register("app", session_id="p1", user_id=None, host=None, pid=1, url=None)
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM panel_sessions")
        assert not await reg.set_status("p1", "running", None)
        assert "p1" not in reg.rows and await store.load_panel() == []
    finally:
        await store.close()


@pytest.mark.parametrize(
    "sid", ["a/b", "..", ".", "q?x#y", "stale", "Stale", "", "-x", "a b", "%2F", "x" * 129, "é"]
)
def test_unsafe_session_ids_are_refused(sid: str) -> None:
    assert session_id_problem(sid) is not None


@pytest.mark.parametrize(
    "sid",
    [
        "ba79134d-b6e9-4867-af0c-6941038c9e4b",
        "0123456789abcdef0123456789abcdef",
        # a signed Bokeh session id: <44 random chars>.<base64url signature>
        "Zr3xQm0xVq1pJvKqN8wWbq3eQFv0rXJ7d2c6L4kYs9Tt." + "a-b_c" * 8 + "abc",
        "x" * 128,
    ],
)
def test_uuids_and_bokeh_ids_are_accepted(sid: str) -> None:
    assert session_id_problem(sid) is None
