"""The monitor: per-file isolation of failures, the watcher's restart, one id
one session across sources, and per-write cost of tracker calls."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from sessionwatch.config import Settings
from sessionwatch.hub.core import Hub, Subscriber
from sessionwatch.sources.claude.index import ClaudeIndex
from sessionwatch.engine import IdTaken, Monitor
from sessionwatch.sources.panel.registry import PanelRegistry

from .test_claude import assistant, user

Changes = Callable[[anyio.Event], AsyncIterator[set[Path]]]


def restartable_source() -> tuple[anyio.abc.ObjectSendStream[set[Path]], Changes]:
    """An injectable change source that survives a watcher restart."""
    send, receive = anyio.create_memory_object_stream[set[Path]](100)

    async def source(stop: anyio.Event) -> AsyncIterator[set[Path]]:
        while not stop.is_set():
            with anyio.move_on_after(0.05):
                yield await receive.receive()

    return send, source


def project(tmp_path: Path) -> Path:
    root = tmp_path / "projects"
    (root / "p").mkdir(parents=True)
    for name in ("good", "bad"):
        (root / "p" / f"{name}.jsonl").write_bytes(user("hi", sessionId=name))
    return root


async def next_event(sub: Subscriber, *, timeout: float = 10) -> bytes:
    with anyio.fail_after(timeout):
        chunk = await sub.next()
    assert chunk is not None
    return chunk


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


# --- item 1: one bad file must not stop the others, nor the watcher ---------------------------------


async def test_error_in_one_transcript_does_not_stop_other_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path)
    send, source = restartable_source()
    monitor = Monitor(Settings(projects_dir=root, db=tmp_path / "x.db"), changes=source)
    await monitor.open()
    real_update = ClaudeIndex.update

    def update(self: ClaudeIndex, path: Path) -> set[str]:
        if path.name == "bad.jsonl":
            raise UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "invalid continuation byte")
        return real_update(self, path)

    monkeypatch.setattr(ClaudeIndex, "update", update)
    try:
        sub = monitor.hub.subscribe(last_event_id=monitor.hub.last_id)
        sub.items.clear()
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.run)
            for n in range(3):
                append(root / "p" / "bad.jsonl", assistant(f"b{n}", f"rb{n}", 5, sessionId="bad"))
                append(root / "p" / "good.jsonl", assistant(f"g{n}", f"rg{n}", 5, sessionId="good"))
                await send.send({root / "p" / "bad.jsonl", root / "p" / "good.jsonl"})
                chunk = await next_event(sub)
                assert b'"id":"good"' in chunk and b'"id":"bad"' not in chunk
            await monitor.rescan()  # POST /refresh
            assert b"event: refresh" in await next_event(sub)
            tg.cancel_scope.cancel()
        assert monitor.hub.sessions["good"]["message_count"] == 4  # the prompt and 3 replies
        assert monitor.errors.labels("read")._value.get() >= 3
    finally:
        await monitor.close()


async def test_watcher_that_failed_restarts_and_sees_later_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sessionwatch.engine.RESTART_S", 0.05)
    root = project(tmp_path)
    settings = Settings(projects_dir=root, db=tmp_path / "data" / "x.db", debounce_ms=20, step_ms=10)
    monitor = Monitor(settings)  # the real watcher
    await monitor.open()
    real_handle = monitor.handle
    failures = 0

    async def handle(paths: set[Path]) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise RuntimeError("boom")
        await real_handle(paths)

    monkeypatch.setattr(monitor, "handle", handle)
    good = root / "p" / "good.jsonl"
    try:
        sub = monitor.hub.subscribe(last_event_id=monitor.hub.last_id)
        sub.items.clear()
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.run)
            await anyio.sleep(0.3)  # let the watch start
            append(good, assistant("g1", "rg1", 5, sessionId="good"))
            # the failed batch's change is caught up after the restart
            assert b'"id":"good"' in await next_event(sub)
            assert failures == 1
            append(good, assistant("g2", "rg2", 5, sessionId="good"))
            chunk = await next_event(sub)
            assert b"session-updated" in chunk and b'"message_count":3' in chunk
            tg.cancel_scope.cancel()
    finally:
        await monitor.close()


async def test_failed_start_closes_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monitor = Monitor(Settings(projects_dir=project(tmp_path), db=tmp_path / "x.db"))

    def broken(self: PanelRegistry) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(PanelRegistry, "load", broken)
    with pytest.raises(RuntimeError):
        await monitor.open()
    assert monitor._store is not None and monitor._store._conn is None


# --- item 8: one id, one session ---------------------------------------------------------------------


async def started(tmp_path: Path, **settings: float) -> tuple[Monitor, Path]:
    root = project(tmp_path)
    monitor = Monitor(Settings(projects_dir=root, db=tmp_path / "x.db", **settings))  # type: ignore[arg-type]
    await monitor.open()
    return monitor, root


def reg(monitor: Monitor, sid: str) -> object:
    return monitor.register("app", session_id=sid, user_id=None, host=None, pid=None, url=None)


async def test_tracker_cannot_register_a_claude_file_without_timestamps(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "p" / "fresh.jsonl").write_bytes(b'{"type":"summary","summary":"x"}\n')
    (root / "p" / "empty.jsonl").write_bytes(b"")
    monitor = Monitor(Settings(projects_dir=root, db=tmp_path / "x.db"))
    await monitor.open()
    try:
        assert "fresh" not in monitor.hub.sessions  # no timestamped line yet
        for sid in ("fresh", "empty", "good"):
            with pytest.raises(IdTaken):
                await reg(monitor, sid)
        assert monitor.panel.rows == {}
    finally:
        await monitor.close()


def direct_row(db: Path, sid: str, heartbeat: float) -> None:
    """A Panel row written straight into the database (a direct-mode tracker)."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO panel_sessions (id, app_name, started_at, last_activity, last_heartbeat)"
            " VALUES (?, 'app', ?, ?, ?)",
            (sid, heartbeat, heartbeat, heartbeat),
        )


async def test_panel_row_with_a_claude_id_neither_shadows_nor_deletes_it(tmp_path: Path) -> None:
    monitor, _ = await started(tmp_path, stale_after_s=1, cleanup_after_s=2)
    try:
        direct_row(monitor.settings.db, "good", time.time() - 60)  # long stale, due for cleanup
        await monitor._reload_panel()
        assert monitor.hub.sessions["good"]["source"] == "claude"
        await monitor.tick()  # stale, then cleaned up
        assert "good" not in monitor.panel.rows
        assert monitor.hub.sessions["good"]["source"] == "claude"
        direct_row(monitor.settings.db, "good", time.time())
        await monitor.rescan()
        assert monitor.hub.sessions["good"]["source"] == "claude"
        await monitor.delete(["good"])
        assert await monitor.delete_stale(0) == 0
        assert monitor.hub.sessions["good"]["source"] == "claude"
    finally:
        await monitor.close()


async def test_claude_transcript_appearing_later_wins_its_id_and_keeps_the_panel_row(tmp_path: Path) -> None:
    send, source = restartable_source()
    root = project(tmp_path)
    monitor = Monitor(Settings(projects_dir=root, db=tmp_path / "x.db"), changes=source)
    await monitor.open()
    sid = "later"
    try:
        await reg(monitor, sid)
        assert monitor.hub.sessions[sid]["source"] == "panel"
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.run)
            path = root / "p" / f"{sid}.jsonl"
            path.write_bytes(user("hello", sessionId=sid))
            await send.send({path})
            with anyio.fail_after(5):
                while monitor.hub.sessions[sid]["source"] != "claude":
                    await anyio.sleep(0.01)
            # Panel writes on the id change nothing the hub shows
            assert await monitor.set_status(sid, "running", "x")
            await monitor.kill(sid, "boss")
            assert monitor.hub.sessions[sid]["source"] == "claude"
            assert monitor.panel.heartbeat(sid) is True  # the tracker still hears its kill
            # the transcript goes: the Panel row shows again
            path.unlink()
            await send.send({path})
            with anyio.fail_after(5):
                while monitor.hub.sessions[sid]["source"] != "panel":
                    await anyio.sleep(0.01)
            assert monitor.hub.sessions[sid]["current_task"] == "x"
            tg.cancel_scope.cancel()
    finally:
        await monitor.close()


# --- item 7: a tracker write costs the same whatever the number of sessions -----------------------------


async def test_tracker_writes_do_no_work_per_registered_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "x.db"
    monitor, _ = await started(tmp_path, stale_after_s=60)
    now = time.time()
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO panel_sessions (id, app_name, started_at, last_activity, last_heartbeat)"
            " VALUES (?, 'app', ?, ?, ?)",
            [(f"s{i}", now, now, now) for i in range(2000)],
        )
    try:
        await monitor.rescan()
        assert len(monitor.panel.rows) == 2000
        calls = 0
        real = PanelRegistry.session

        def counting(self: PanelRegistry, row: object, when: float) -> object:
            nonlocal calls
            calls += 1
            return real(self, row, when)  # type: ignore[arg-type]

        monkeypatch.setattr(PanelRegistry, "session", counting)
        recounts = 0

        def recount(self: Hub) -> None:
            nonlocal recounts
            recounts += 1

        monkeypatch.setattr(Hub, "_count", recount)  # counting every session again
        writes: list[Callable[[], object]] = [
            lambda: reg(monitor, "new1"),
            lambda: reg(monitor, "s5"),
            lambda: monitor.set_status("s6", "running", "t"),
            lambda: monitor.kill("s7", "boss"),
            lambda: monitor.delete(["s8"]),
        ]
        for write in writes:
            calls = 0
            await write()  # type: ignore[misc]
            assert calls <= 1, f"{calls} session snapshots built for one write"
        monitor.panel.rows["s9"].last_heartbeat = 0  # stale
        monitor.hub.sessions["s9"] = {**monitor.hub.sessions["s9"], "is_stale": True}
        calls = 0
        await monitor.heartbeat(["s9", "s10"])
        assert calls <= 1
        assert recounts == 0, "the hub counted every session again for a write"
        # the counts kept write by write are the true ones
        truth: dict[tuple[str, str], int] = {}
        for s in monitor.hub.sessions.values():
            truth[(s["source"], s["status"])] = truth.get((s["source"], s["status"]), 0) + 1
        gauge = {
            (m.labels["source"], m.labels["status"]): int(m.value)
            for metric in monitor.metrics.sessions.collect() for m in metric.samples
        }
        assert gauge == truth
    finally:
        await monitor.close()
