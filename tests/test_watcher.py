"""The real watcher on the real filesystem, and the monitor with an injected one."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio

from sessionwatch.config import Settings
from sessionwatch.monitor import Monitor
from sessionwatch.watcher import watching

from .test_claude import assistant, user


async def test_watch_reports_transcript_and_db_changes(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    (root / "p").mkdir(parents=True)
    db = tmp_path / "data" / "x.db"
    db.parent.mkdir()
    stop = anyio.Event()
    seen: set[Path] = set()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def writer() -> None:
                await anyio.sleep(0.3)
                (root / "p" / "ignored.txt").write_text("x")
                (root / "p" / "s1.jsonl").write_bytes(user("hi"))
                db.write_bytes(b"x")

            tg.start_soon(writer)
            async with watching(root, db, debounce_ms=50, step_ms=20, stop_event=stop) as batches:
                async for batch in batches:
                    seen |= batch
                    if {root / "p" / "s1.jsonl", db} <= seen:
                        stop.set()
                        break
    assert root / "p" / "ignored.txt" not in seen


async def test_missing_projects_dir_is_waited_for(tmp_path: Path, monkeypatch: object) -> None:
    import sessionwatch.watcher as w

    w.WAIT_FOR_DIR_S = 0.05
    root = tmp_path / "later"
    db = tmp_path / "x.db"
    stop = anyio.Event()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def creator() -> None:
                await anyio.sleep(0.3)
                (root / "p").mkdir(parents=True)

            tg.start_soon(creator)
            async with watching(root, db, debounce_ms=50, step_ms=20, stop_event=stop) as batches:
                async for batch in batches:
                    if root in batch:
                        stop.set()
                        break


async def test_monitor_with_injected_changes_is_exact(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    shutil.copytree(Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "claude-projects" / "-tmp", root / "-tmp")
    send, receive = anyio.create_memory_object_stream[set[Path]](10)

    async def source(stop: anyio.Event):  # type: ignore[no-untyped-def]
        async with receive:
            async for batch in receive:
                yield batch

    settings = Settings(projects_dir=root, db=tmp_path / "x.db")
    monitor = Monitor(settings, changes=source)
    await monitor.open()
    try:
        assert len(monitor.hub.sessions) == 5
        sub = monitor.hub.subscribe(last_event_id=monitor.hub.last_id)
        sub.items.clear()
        with open(root / "-tmp" / "session_b.jsonl", "ab") as f:
            f.write(b"\n" + assistant("m9", "r9", 40, model="claude-3-sonnet-20240229", sessionId="session_b"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.run)
            await send.send({root / "-tmp" / "session_b.jsonl"})
            with anyio.fail_after(5):
                chunk = await sub.next()
            tg.cancel_scope.cancel()
        assert chunk is not None and b"session-updated" in chunk and b'"id":"session_b"' in chunk
        assert chunk.count(b"event: ") == 1
    finally:
        await monitor.close()
