from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sessionwatch.errors import ConfigError, StoreClosedError
from sessionwatch.store import MIGRATIONS, PanelRow, Store, TranscriptRow


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
    await store.upsert_panel(PanelRow("p1", "app", None, "h", 1, None, "idle", None, 1.0, 1.0, 1.0, False))
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
    await store.upsert_panel(PanelRow("p1", "app", None, None, None, None, "idle", None, 1.0, 1.0, 1.0, False))
    assert await store.data_version() == v0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE panel_sessions SET status='running'")
    assert await store.data_version() != v0
    await store.close()
