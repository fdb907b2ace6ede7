"""The engine: per-file isolation of failures, the watcher's restart, one id
one session across sources, and per-write cost of tracker calls."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import msgspec
import pytest

from sessionwatch.config import Settings
from sessionwatch.hub.core import Hub, Subscriber
from sessionwatch.sources.claude.index import ClaudeIndex
from sessionwatch.engine import Engine
from sessionwatch.errors import IdTaken
from sessionwatch.sources.panel.registry import PanelRegistry

from .clock import FakeClock
from .test_claude import assistant, user

Changes = Callable[[anyio.Event], AsyncIterator[set[Path]]]


def restartable_source() -> tuple[anyio.abc.ObjectSendStream[set[Path]], Changes]:
    """An injectable change source that survives a watcher restart."""
    send, receive = anyio.create_memory_object_stream[set[Path]](100)

    async def source(stop: anyio.Event) -> AsyncIterator[set[Path]]:
        while not stop.is_set():
            # never yield inside the cancel scope: its deadline would cancel
            # the consumer (the engine's watcher) while it handles the batch
            paths: set[Path] | None = None
            with anyio.move_on_after(0.05):
                paths = await receive.receive()
            if paths is not None:
                yield paths

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
    engine = Engine(Settings(projects_dir=root, db=tmp_path / "x.db"), changes=source)
    await engine.open()
    real_update = ClaudeIndex.update

    def update(self: ClaudeIndex, path: Path) -> set[str]:
        if path.name == "bad.jsonl":
            raise UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "invalid continuation byte")
        return real_update(self, path)

    monkeypatch.setattr(ClaudeIndex, "update", update)
    try:
        sub = engine.hub.subscribe(last_event_id=engine.hub.last_id)
        sub.items.clear()
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.run)
            for n in range(3):
                append(root / "p" / "bad.jsonl", assistant(f"b{n}", f"rb{n}", 5, sessionId="bad"))
                append(root / "p" / "good.jsonl", assistant(f"g{n}", f"rg{n}", 5, sessionId="good"))
                await send.send({root / "p" / "bad.jsonl", root / "p" / "good.jsonl"})
                chunk = await next_event(sub)
                assert b'"id":"good"' in chunk and b'"id":"bad"' not in chunk
            await engine.rescan()  # POST /refresh
            assert b"event: refresh" in await next_event(sub)
            tg.cancel_scope.cancel()
        assert engine.hub.sessions["good"].message_count == 4  # the prompt and 3 replies
        assert engine.errors.labels("read")._value.get() >= 3
    finally:
        await engine.close()


async def test_watcher_that_failed_restarts_and_sees_later_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sessionwatch.engine.RESTART_S", 0.05)
    root = project(tmp_path)
    settings = Settings(projects_dir=root, db=tmp_path / "data" / "x.db", debounce_ms=20, step_ms=10)
    engine = Engine(settings)  # the real watcher
    await engine.open()
    real_handle = engine.handle
    failures = 0

    async def handle(paths: set[Path]) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise RuntimeError("boom")
        await real_handle(paths)

    monkeypatch.setattr(engine, "handle", handle)
    good = root / "p" / "good.jsonl"
    try:
        sub = engine.hub.subscribe(last_event_id=engine.hub.last_id)
        sub.items.clear()
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.run)
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
        await engine.close()


async def test_failed_start_closes_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(Settings(projects_dir=project(tmp_path), db=tmp_path / "x.db"))

    def broken(self: PanelRegistry) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(PanelRegistry, "load", broken)
    with pytest.raises(RuntimeError):
        await engine.open()
    assert engine._store is not None and engine._store._conn is None


# --- item 8: one id, one session ---------------------------------------------------------------------


async def started(tmp_path: Path, **settings: float) -> tuple[Engine, Path]:
    root = project(tmp_path)
    engine = Engine(Settings(projects_dir=root, db=tmp_path / "x.db", **settings))  # type: ignore[arg-type]
    await engine.open()
    return engine, root


def reg(engine: Engine, sid: str) -> object:
    return engine.register("app", session_id=sid, user_id=None, host=None, pid=None, url=None)


async def test_tracker_cannot_register_a_claude_file_without_timestamps(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "p" / "fresh.jsonl").write_bytes(b'{"type":"summary","summary":"x"}\n')
    (root / "p" / "empty.jsonl").write_bytes(b"")
    engine = Engine(Settings(projects_dir=root, db=tmp_path / "x.db"))
    await engine.open()
    try:
        assert "fresh" not in engine.hub.sessions  # no timestamped line yet
        for sid in ("fresh", "empty", "good"):
            with pytest.raises(IdTaken):
                await reg(engine, sid)
        assert engine.panel.rows == {}
    finally:
        await engine.close()


def direct_row(db: Path, sid: str, heartbeat: float) -> None:
    """A Panel row written straight into the database (a direct-mode tracker)."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO panel_sessions (id, app_name, started_at, last_activity, last_heartbeat)"
            " VALUES (?, 'app', ?, ?, ?)",
            (sid, heartbeat, heartbeat, heartbeat),
        )


async def test_panel_row_with_a_claude_id_neither_shadows_nor_deletes_it(tmp_path: Path) -> None:
    engine, _ = await started(tmp_path, stale_after_s=1, cleanup_after_s=2)
    try:
        direct_row(engine.settings.db, "good", time.time() - 60)  # long stale, due for cleanup
        await engine._reload_panel()
        assert engine.hub.sessions["good"].source == "claude"
        await engine.tick()  # stale, then cleaned up
        assert "good" not in engine.panel.rows
        assert engine.hub.sessions["good"].source == "claude"
        direct_row(engine.settings.db, "good", time.time())
        await engine.rescan()
        assert engine.hub.sessions["good"].source == "claude"
        await engine.delete(["good"])
        assert await engine.delete_stale(0) == 0
        assert engine.hub.sessions["good"].source == "claude"
    finally:
        await engine.close()


async def test_claude_transcript_appearing_later_wins_its_id_and_keeps_the_panel_row(tmp_path: Path) -> None:
    send, source = restartable_source()
    root = project(tmp_path)
    engine = Engine(Settings(projects_dir=root, db=tmp_path / "x.db"), changes=source)
    await engine.open()
    sid = "later"
    try:
        await reg(engine, sid)
        assert engine.hub.sessions[sid].source == "panel"
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.run)
            path = root / "p" / f"{sid}.jsonl"
            path.write_bytes(user("hello", sessionId=sid))
            await send.send({path})
            with anyio.fail_after(5):
                while engine.hub.sessions[sid].source != "claude":
                    await anyio.sleep(0.01)
            # Panel writes on the id change nothing the hub shows
            assert await engine.set_status(sid, "running", "x")
            await engine.kill(sid, "boss")
            assert engine.hub.sessions[sid].source == "claude"
            assert engine.panel.heartbeat(sid) is True  # the tracker still hears its kill
            # the transcript goes: the Panel row shows again
            path.unlink()
            await send.send({path})
            with anyio.fail_after(5):
                while engine.hub.sessions[sid].source != "panel":
                    await anyio.sleep(0.01)
            assert engine.hub.sessions[sid].current_task == "x"
            tg.cancel_scope.cancel()
    finally:
        await engine.close()


# --- item 7: a tracker write costs the same whatever the number of sessions -----------------------------


async def test_tracker_writes_do_no_work_per_registered_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "x.db"
    engine, _ = await started(tmp_path, stale_after_s=60)
    now = time.time()
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO panel_sessions (id, app_name, started_at, last_activity, last_heartbeat)"
            " VALUES (?, 'app', ?, ?, ?)",
            [(f"s{i}", now, now, now) for i in range(2000)],
        )
    try:
        await engine.rescan()
        assert len(engine.panel.rows) == 2000
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
            lambda: reg(engine, "new1"),
            lambda: reg(engine, "s5"),
            lambda: engine.set_status("s6", "running", "t"),
            lambda: engine.kill("s7", "boss"),
            lambda: engine.delete(["s8"]),
        ]
        for write in writes:
            calls = 0
            await write()  # type: ignore[misc]
            assert calls <= 1, f"{calls} session snapshots built for one write"
        engine.panel.rows["s9"].last_heartbeat = 0  # stale
        engine.hub.sessions["s9"] = msgspec.structs.replace(engine.hub.sessions["s9"], is_stale=True)
        calls = 0
        await engine.heartbeat(["s9", "s10"])
        assert calls <= 1
        assert recounts == 0, "the hub counted every session again for a write"
        # the counts kept write by write are the true ones
        truth: dict[tuple[str, str], int] = {}
        for s in engine.hub.sessions.values():
            truth[(s.source, s.status)] = truth.get((s.source, s.status), 0) + 1
        gauge = {
            (m.labels["source"], m.labels["status"]): int(m.value)
            for metric in engine.metrics.sessions.collect() for m in metric.samples
        }
        assert gauge == truth
    finally:
        await engine.close()


# --- the clock: idle, stale, cleanup and revival, exact and instant ------------------------------------

T0 = 1767225600.0  # 2026-01-01T00:00:00Z, the timestamp of test_claude's lines


def kinds(sub: Subscriber) -> list[bytes]:
    """The event types queued for ``sub`` since the last call."""
    got = [m.split(b"event: ")[1].split(b"\n")[0] for m in b"".join(sub.items).split(b"\n\n") if b"event: " in m]
    sub.items.clear()
    return got


async def clocked(tmp_path: Path, clock: FakeClock, **settings: float) -> Engine:
    root = tmp_path / "projects"
    (root / "p").mkdir(parents=True)
    (root / "p" / "c1.jsonl").write_bytes(user("hi", sessionId="c1"))  # at T0
    engine = Engine(
        Settings(projects_dir=root, db=tmp_path / "x.db", **settings),  # type: ignore[arg-type]
        clock=clock,
    )
    await engine.open()
    return engine


async def test_claude_session_goes_idle_exactly_at_idle_after(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 10)
    engine = await clocked(tmp_path, clock, idle_after_s=300)
    try:
        assert engine.hub.sessions["c1"].status == "running"  # a prompt, no reply yet
        sub = engine.hub.subscribe(last_event_id=engine.hub.last_id)
        kinds(sub)
        clock.set(T0 + 299.999)
        await engine.tick()
        assert engine.hub.sessions["c1"].status == "running" and kinds(sub) == []
        clock.set(T0 + 300)
        await engine.tick()
        assert engine.hub.sessions["c1"].status == "idle"
        assert kinds(sub) == [b"session-updated"]
    finally:
        await engine.close()


async def test_panel_session_goes_stale_then_is_deleted_exactly_on_time(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    engine = await clocked(tmp_path, clock, stale_after_s=30, cleanup_after_s=120)
    try:
        await reg(engine, "p1")
        sub = engine.hub.subscribe(last_event_id=engine.hub.last_id)
        kinds(sub)
        clock.set(1030.0)  # stale *after* 30 s
        await engine.tick()
        assert engine.hub.sessions["p1"].status == "idle" and kinds(sub) == []
        clock.set(1030.001)
        await engine.tick()
        shown = engine.hub.sessions["p1"]
        assert (shown.status, shown.is_stale) == ("stale", True)
        assert kinds(sub) == [b"session-updated"]
        clock.set(1120.0)
        await engine.tick()
        assert "p1" in engine.hub.sessions and kinds(sub) == []
        clock.set(1120.001)
        await engine.tick()
        assert "p1" not in engine.hub.sessions and "p1" not in engine.panel.rows
        assert kinds(sub) == [b"session-deleted"]
        assert await engine.store.load_panel() == []
    finally:
        await engine.close()


async def test_heartbeat_revives_a_stale_session(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    engine = await clocked(tmp_path, clock, stale_after_s=30, cleanup_after_s=120)
    try:
        await reg(engine, "p1")
        await engine.kill("p1", "boss")
        clock.set(1031.0)
        await engine.tick()
        assert engine.hub.sessions["p1"].is_stale
        sub = engine.hub.subscribe(last_event_id=engine.hub.last_id)
        kinds(sub)
        assert await engine.heartbeat(["p1", "ghost"]) == (["p1"], ["ghost"])
        shown = engine.hub.sessions["p1"]
        assert (shown.status, shown.is_stale, shown.kill_requested) == ("idle", False, True)
        assert kinds(sub) == [b"session-updated"]
        assert await engine.heartbeat(["p1"]) == (["p1"], [])  # fresh: no event
        assert kinds(sub) == []
        clock.set(1061.0)  # 30 s after the last heartbeat: not yet
        await engine.tick()
        assert not engine.hub.sessions["p1"].is_stale
        (row,) = await engine.store.load_panel()
        assert row.last_heartbeat == 1031.0  # the tick wrote the batched beat
        clock.set(1061.5)
        await engine.tick()
        assert engine.hub.sessions["p1"].is_stale
    finally:
        await engine.close()


async def test_the_clock_task_ticks_on_the_engines_clock(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    engine = await clocked(tmp_path, clock, stale_after_s=30, cleanup_after_s=120)
    try:
        await reg(engine, "p1")
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.run)
            await anyio.wait_all_tasks_blocked()
            clock.set(1031.0)
            with anyio.fail_after(5):
                while not engine.hub.sessions["p1"].is_stale:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    finally:
        await engine.close()


# --- one task applies every command ---------------------------------------------------------------------


async def test_heartbeat_during_a_tick_that_finds_it_stale_revives_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: heartbeats skipped the lock every other change took, so one
    landing while a tick awaited the store (after deciding the session was
    stale, before publishing it) saw it still fresh, published nothing, and
    the tick then showed it stale after its heartbeat."""
    clock = FakeClock(1000.0)
    engine = await clocked(tmp_path, clock, stale_after_s=30, cleanup_after_s=120)
    try:
        await reg(engine, "p1")
        clock.set(1031.0)
        in_flush, go = anyio.Event(), anyio.Event()
        flush = engine.panel.flush_heartbeats

        async def slow_flush() -> None:
            in_flush.set()
            await go.wait()
            await flush()

        monkeypatch.setattr(engine.panel, "flush_heartbeats", slow_flush)
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.tick)
            await in_flush.wait()
            tg.start_soon(engine.heartbeat, ["p1"])
            await anyio.wait_all_tasks_blocked()
            go.set()
        assert not engine.hub.sessions["p1"].is_stale
    finally:
        await engine.close()


async def test_an_error_in_a_command_reaches_its_caller_and_the_next_command_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _ = await started(tmp_path)
    try:
        with pytest.raises(IdTaken):
            await reg(engine, "good")

        async def broken(sid: str, by: str | None, **_: object) -> bool:
            raise RuntimeError("disk on fire")

        await reg(engine, "p1")
        monkeypatch.setattr(engine.panel, "kill", broken)
        with pytest.raises(RuntimeError, match="disk on fire"):
            await engine.kill("p1", "boss")
        monkeypatch.undo()
        assert await engine.kill("p1", "boss")
        assert engine.hub.sessions["p1"].kill_requested
        assert engine._applier is not None and not engine._applier.done()
    finally:
        await engine.close()


async def test_commands_apply_one_at_a_time_in_the_order_sent(tmp_path: Path) -> None:
    engine, _ = await started(tmp_path)
    try:
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(reg, engine, f"p{i}")
                tg.start_soon(engine.set_status, f"p{i}", "running", f"task {i}")
        for i in range(20):
            assert engine.hub.sessions[f"p{i}"].current_task == f"task {i}"
        assert not engine._applier.done()  # type: ignore[union-attr]
    finally:
        await engine.close()
