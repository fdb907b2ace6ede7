from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sessionwatch.errors import ConfigError, StoreClosedError
from sessionwatch.sources.panel.registry import PanelRegistry
from sessionwatch.store.base import PanelRow, RowGone, TranscriptRow, Write
from sessionwatch.store.base import Actor, Approval, LogQuery, MANAGED_COLUMNS
from sessionwatch.store.schema import MIGRATIONS, PG_MIGRATIONS, session_id_problem
from sessionwatch.store.sqlite import Store

from .stores import Backend


async def test_migrations_are_named_recorded_and_run_once(backend: Backend) -> None:
    store = await backend.open()
    assert await store.migrations() == sorted(name for name, _ in MIGRATIONS)
    if backend.name == "sqlite":
        assert await store.user_version() == len(MIGRATIONS)
    await store.close()
    store = await backend.open()  # again: nothing re-run, nothing fails
    assert await store.migrations() == sorted(name for name, _ in MIGRATIONS)
    if backend.name == "sqlite":
        assert await store.user_version() == len(MIGRATIONS)


def test_both_stores_have_the_same_named_migrations() -> None:
    assert [name for name, _ in PG_MIGRATIONS] == [name for name, _ in MIGRATIONS]


async def test_wal_and_busy_timeout(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "a.db")
    async with store.conn.execute("PRAGMA journal_mode") as cur:
        assert (await cur.fetchone())[0] == "wal"  # type: ignore[index]
    async with store.conn.execute("PRAGMA busy_timeout") as cur:
        assert (await cur.fetchone())[0] >= 1000  # type: ignore[index]
    await store.close()


async def test_close_twice_and_closed_error(backend: Backend) -> None:
    store = await backend.open()
    await store.close()
    await store.close()
    with pytest.raises(StoreClosedError):
        await store.load_transcripts()


async def test_not_a_database_is_one_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a usable"):
        await Store.open(db)


async def test_transcripts_and_panel_rows_survive_reopen(backend: Backend) -> None:
    store = await backend.open()
    await store.save_transcripts([TranscriptRow("/x.jsonl", "main", "x", 1, 2, 3, 4.0, 3, b"{}")])
    await store.write(store.panel_register(PanelRow("p1", "app", None, "h", 1, None, "idle", None, 1.0, 1.0, 1.0, False)))
    await store.write(store.panel_kill("p1", 2.0, "alice"))
    await store.close()
    store = await backend.open()
    assert [r.offset for r in await store.load_transcripts()] == [3]
    assert (await store.load_panel())[0].kill_requested
    assert await store.kills("p1") == [{"requested_at": 2.0, "requested_by": "alice"}]
    await store.write(store.panel_delete(["p1"]))
    assert await store.load_panel() == []
    await store.close()


async def test_data_version_moves_only_for_other_connections(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = await Store.open(db)
    v0 = await store.data_version()
    await store.write(store.panel_register(PanelRow("p1", "app", None, None, None, None, "idle", None, 1.0, 1.0, 1.0, False)))
    assert await store.data_version() == v0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE panel_sessions SET status='running'")
    assert await store.data_version() != v0
    await store.close()


async def test_one_trip_runs_a_function_on_the_connection_thread(tmp_path: Path) -> None:
    """Store._run goes through aiosqlite's private Connection._execute (no
    public call runs a function on its thread): this holds it across
    aiosqlite versions."""
    store = await Store.open(tmp_path / "a.db")
    try:
        here = threading.get_ident()
        there, version = await store._run(
            lambda conn: (threading.get_ident(), conn.execute("PRAGMA user_version").fetchone()[0])
        )
        assert there != here and version == len(MIGRATIONS)
    finally:
        await store.close()


async def test_a_write_that_must_change_a_gone_row_rolls_back_all_of_it(backend: Backend) -> None:
    store = await backend.open()
    try:
        await store.write(store.panel_register(PanelRow("p1", "app", None, None, None, None, "idle", None, 1.0, 1.0, 1.0, False)))
        with pytest.raises(RowGone):
            await store.write(store.panel_kill("p1", 2.0, None) + store.panel_status("ghost", "running", None, 3.0))
        assert not (await store.load_panel())[0].kill_requested and await store.kills("p1") == []
    finally:
        await store.close()


def _registry(store: Any) -> PanelRegistry:
    return PanelRegistry(store, stale_after_s=120, cleanup_after_s=600)


async def test_status_update_does_not_undo_another_process_kill(backend: Backend) -> None:
    # Two processes on one database (a server and another server or a direct-mode
    # tracker): B's status write must not put kill_requested = 0 back over A's kill.
    a, b = await backend.open(), await backend.open()
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


async def test_status_of_a_row_deleted_elsewhere_reports_it_gone(backend: Backend) -> None:
    store = await backend.open()
    try:
        reg = _registry(store)
        await reg.register("app", session_id="p1", user_id=None, host=None, pid=1, url=None)
        other = await backend.open()
        await other.write([Write("DELETE FROM panel_sessions")])
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


# --- every Panel write changes its own columns only (issue 9, Store interface) ------------------

COLUMNS = (
    "app_name", "user_id", "host", "pid", "url", "status", "current_task",
    "started_at", "last_activity", "last_heartbeat", "kill_requested",
)  # fmt: skip
#: What another process (a second server, a direct-mode tracker) wrote
#: behind this one's back: a value in every column, none of them this
#: server's in-memory copy.
#: A time this write took (now, not one of THEIRS).
NOW = object()
THEIRS = ("their-app", "bob", "their-host", 99, "http://theirs", "running", "their task", 5.0, 6.0, 7.0, 1)


async def _register(reg: PanelRegistry) -> None:
    await reg.register("my-app", session_id="p1", user_id="ann", host="my-host", pid=1, url=None)


async def _status(reg: PanelRegistry) -> None:
    assert await reg.set_status("p1", "idle", "my task")


async def _kill(reg: PanelRegistry) -> None:
    assert await reg.kill("p1", "boss")


async def _heartbeat(reg: PanelRegistry) -> None:
    assert reg.heartbeat("p1") is not None
    await reg.flush_heartbeats()


async def _delete(reg: PanelRegistry) -> None:
    assert await reg.delete(["p1"]) == ["p1"]


@pytest.mark.parametrize(
    ("write", "changes"),
    [
        (_register, {"app_name": "my-app", "user_id": "ann", "host": "my-host", "pid": 1, "url": None, "last_heartbeat": NOW}),
        (_status, {"status": "idle", "current_task": "my task", "last_activity": NOW, "last_heartbeat": NOW}),
        (_kill, {"kill_requested": True}),
        (_heartbeat, {"last_heartbeat": NOW}),
        (_delete, None),  # the row and its kills, nothing of another row
    ],
    ids=["register", "status", "kill", "heartbeat", "delete"],
)
async def test_a_panel_write_from_a_stale_copy_changes_only_its_own_columns(
    backend: Backend, write: Any, changes: dict[str, Any] | None
) -> None:
    """Regression (issue 9): Panel rows were rewritten whole (INSERT OR
    REPLACE of every column) from the server's copy in memory, so a status
    update wrote kill_requested = 0 over another process's kill, and a
    re-registration put back a status, task and start it had not seen
    change. Two stores on one file: B changes every column of two rows
    behind A's back, then A writes one of them from its stale copy; every
    column A did not mean to change keeps B's value."""
    a, b = await backend.open(), await backend.open()
    try:
        mine = _registry(a)
        for sid in ("p1", "p2"):
            await mine.register("my-app", session_id=sid, user_id="ann", host="my-host", pid=1, url=None)
        sets = ", ".join(f"{c} = ?" for c in COLUMNS)
        theirs_params = THEIRS[:-1] + (True if backend.name == "postgres" else 1,)
        await b.write([Write(backend.sql(f"UPDATE panel_sessions SET {sets}"), theirs_params)])
        await b.write(b.panel_kill("p1", 8.0, "bob") + b.panel_kill("p2", 8.0, "bob"))
        await write(mine)  # A still holds its own copy of p1
        rows = {r.id: r for r in await b.load_panel()}
        theirs = dict(zip(COLUMNS, THEIRS))
        theirs["kill_requested"] = True
        assert {c: getattr(rows["p2"], c) for c in COLUMNS} == theirs, "a write on p1 changed p2"
        assert await b.kills("p2") == [{"requested_at": 8.0, "requested_by": "bob"}]
        if changes is None:
            assert "p1" not in rows and await b.kills("p1") == []
            return
        got = {c: getattr(rows["p1"], c) for c in COLUMNS}
        assert {c: v for c, v in got.items() if c not in changes} == {
            c: v for c, v in theirs.items() if c not in changes
        }, "a column it did not mean to change"
        recent = time.time() - 60
        assert {c: NOW if changes[c] is NOW and got[c] > recent else got[c] for c in changes} == changes
        assert (await b.kills("p1"))[0] == {"requested_at": 8.0, "requested_by": "bob"}
    finally:
        await a.close()
        await b.close()


# --- control and managed sessions: the same answers from both stores ----------------------------


async def test_flags_approvals_and_budgets_round_trip(backend: Backend) -> None:
    store = await backend.open()
    ann = Actor("ann", "10.0.0.1", "http://x", "ua")
    await store.write(store.set_flag("away", "on", 1.0, ann))
    await store.write(store.set_flag("away", "off", 2.0, Actor("bob")))
    assert await store.flags() == {
        "away": {"value": "off", "changed_at": 2.0, "by": {"who": "bob", "address": None, "origin": None, "user_agent": None}}
    }
    await store.write(store.record_approval(Approval("s1", "p1", "allow", None, "Bash", "ls", 3.0, ann)))
    await store.write(store.record_approval(Approval("s1", "p2", "deny", "no", None, None, 4.0, ann)))
    got = await store.approvals("s1")
    assert [(a["pending_id"], a["decision"], a["message"], a["decided_at"]) for a in got] == [
        ("p1", "allow", None, 3.0), ("p2", "deny", "no", 4.0),
    ]  # fmt: skip
    assert got[0]["by"] == ann.to_json() and await store.approvals("s2") == []
    await store.write(store.set_budget("s1", 5, 5.0, ann))
    await store.write(store.set_budget("s2", 2.5, 5.0, ann))
    await store.write(store.set_budget("s2", None, 6.0, ann))
    assert await store.budgets() == {"s1": 5.0}
    assert [(c["max_cost_usd"], c["changed_at"]) for c in await store.budget_changes("s2")] == [(2.5, 5.0), (None, 6.0)]


def _managed(sid: str, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in MANAGED_COLUMNS}
    row.update(id=sid, kind="managed", name=sid, state="running", cwd="/w", cost_before=0, num_turns=0,
               message_count=0, tool_calls=0, created_at=1, updated_at=1.5)  # fmt: skip
    row.update(kw)
    return row


async def test_managed_records_logs_and_actions(backend: Backend) -> None:
    store = await backend.open()
    await store.write(store.managed_save(_managed("m1", user="ann", pid=12, max_cost_usd=2)))
    await store.write(store.managed_save(_managed("m2", created_at=2)))
    await store.write(store.managed_save(_managed("m1", user="ann", state="stopped", exit_code=0)))
    rows = await store.managed_load()
    assert [(r["id"], r["state"], r["user"], r["exit_code"]) for r in rows] == [("m1", "stopped", "ann", 0), ("m2", "running", None, None)]
    lines = [
        {"ts": 1.0, "level": "debug", "source": "claude", "kind": "raw", "content": "a"},
        {"ts": 2.0, "level": "info", "source": "claude", "kind": "reply", "content": "b", "cost_usd": 0.5},
        {"ts": 3.0, "level": "error", "source": "sessionwatch", "kind": "system", "content": "c", "tool_name": "Bash"},
    ]
    await store.add_logs("m1", lines)
    got = await store.logs(LogQuery("m1"))
    assert [(x["content"], x["cost_usd"], x["tool_name"]) for x in got] == [("a", None, None), ("b", 0.5, None), ("c", None, "Bash")]
    assert [x["content"] for x in await store.logs(LogQuery("m1", min_level="info"))] == ["b", "c"]
    assert [x["content"] for x in await store.logs(LogQuery("m1", sources=("sessionwatch",)))] == ["c"]
    assert [x["content"] for x in await store.logs(LogQuery("m1", kinds=("raw", "reply"), limit=1))] == ["a"]
    assert [x["content"] for x in await store.logs(LogQuery("m1", after=got[1]["id"]))] == ["c"]
    assert await store.trim_logs(2.5) == 2
    await store.write(store.record_action("m1", "stop", None, 4.0, Actor("ann")))
    assert [(a["action"], a["by"]["who"]) for a in await store.actions("m1")] == [("stop", "ann")]
    await store.write(store.managed_delete("m1"))
    assert [r["id"] for r in await store.managed_load()] == ["m2"] and await store.logs(LogQuery("m1")) == []
    with pytest.raises(RowGone):
        await store.write(store.managed_delete("m1"))
    assert [a["action"] for a in await store.actions("m1")] == ["stop"]  # the audit stays


async def test_transcript_rows_are_upserted_and_deleted(backend: Backend) -> None:
    store = await backend.open()
    await store.save_transcripts([TranscriptRow("/a.jsonl", "main", "a", 1, 2, 3, 4.0, 3, b"x"),
                                  TranscriptRow("/b.jsonl", "main", "b", 1, 3, 3, 4.0, 3, b"y")])  # fmt: skip
    await store.save_transcripts([TranscriptRow("/a.jsonl", "main", "a", 1, 2, 9, 5.0, 9, b"z")], deleted=["/b.jsonl"])
    assert [(r.path, r.offset, r.agg) for r in await store.load_transcripts()] == [("/a.jsonl", 9, b"z")]


async def test_postgres_keeps_each_hosts_transcript_offsets_apart(pg_url: str) -> None:
    from sessionwatch.store.postgres import PgStore

    here, there = await PgStore.open(pg_url, host="here"), await PgStore.open(pg_url, host="there")
    try:
        await here.save_transcripts([TranscriptRow("/a.jsonl", "main", "a", 1, 2, 3, 4.0, 3, b"x")])
        await there.save_transcripts([TranscriptRow("/a.jsonl", "main", "a", 7, 8, 9, 4.0, 9, b"y")])
        await there.save_transcripts([], deleted=["/a.jsonl"])
        assert [(r.offset, r.agg) for r in await here.load_transcripts()] == [(3, b"x")]
        assert await there.load_transcripts() == []
    finally:
        await here.close()
        await there.close()


async def test_postgres_url_that_cannot_connect_is_one_clear_error(pg_cluster: Any) -> None:
    from sessionwatch.errors import ConfigError
    from sessionwatch.store.postgres import PgStore

    with pytest.raises(ConfigError, match="cannot connect to the database postgresql://sessionwatch:\\*\\*\\*@"):
        await PgStore.open(pg_cluster.url("nosuchdb").replace("sessionwatch@", "sessionwatch:secret@"))
