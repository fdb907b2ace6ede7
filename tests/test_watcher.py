"""The real watcher on the real filesystem, and the monitor with an injected one."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest

from sessionwatch.config import Settings
from sessionwatch.engine import Engine
from sessionwatch.sources.watcher import watching

from .conftest import Server, wait_for
from .sse import SSEClient
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
    import sessionwatch.sources.watcher as w

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
    monitor = Engine(settings, changes=source)
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


def three_sessions(root: Path) -> list[Path]:
    """Three one-line transcripts in one project folder of ``root``."""
    (root / "-work-app").mkdir(parents=True, exist_ok=True)
    files = []
    for n in range(3):
        path = root / "-work-app" / f"s{n}.jsonl"
        path.write_bytes(user(f"hello {n}", sessionId=f"s{n}"))
        files.append(path)
    return files


@pytest.mark.parametrize("pause", [False, True], ids=["recreated-at-once", "recreated-after-a-pause"])
async def test_projects_dir_removed_and_created_again_is_watched_again(tmp_path: Path, pause: bool) -> None:
    """Regression: the contents were removed (one batch), then the empty root
    (its own event dropped by the filter): awatch went on watching the dead
    directory, and nothing under the recreated one was ever reported.

    The root is sent once when it goes away and once it is watched again
    (callers rescan); an append after that is reported.
    """
    root = tmp_path / "projects"
    files = three_sessions(root)
    db = tmp_path / "x.db"
    stop = anyio.Event()
    step = "remove contents"
    roots = 0  # batches naming the root since it was removed
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def act() -> None:
                await anyio.sleep(0.3)  # the watch is up (nothing else tells us)
                shutil.rmtree(root / "-work-app")

            tg.start_soon(act)
            async with watching(root, db, debounce_ms=50, step_ms=20, stop_event=stop) as batches:
                async for batch in batches:
                    if step == "remove contents" and files[0] in batch:
                        root.rmdir()  # the empty root alone, after its contents were reported
                        step = "root removed"
                        if not pause:
                            three_sessions(root)  # races the root's own event
                            step = "recreated"
                        continue
                    roots += root in batch
                    if step == "root removed" and roots == 1:  # it went away
                        three_sessions(root)
                        step = "recreated"
                    elif step == "recreated" and roots == 2:  # watched again
                        with open(files[1], "ab") as f:
                            f.write(user("again", sessionId="s1"))
                        step = "appended"
                    elif step == "appended" and files[1] in batch:
                        stop.set()
                        break
    assert step == "appended"


def test_server_sees_sessions_again_after_the_projects_dir_comes_back(
    tmp_path: Path, sw_server: Callable[..., Server]
) -> None:
    """End to end: 0 of 3 sessions came back, and appends were ignored until a
    manual refresh."""
    root = tmp_path / "projects"
    files = three_sessions(root)
    srv = sw_server(projects_dir=root)

    def count() -> int:
        return len(httpx.get(srv.url + "/all", timeout=5).json()["sessions"])

    assert count() == 3
    shutil.rmtree(root / "-work-app")
    wait_for(lambda: count() == 0, timeout=15, what="the sessions to go with their files")
    root.rmdir()
    three_sessions(root)
    wait_for(lambda: count() == 3, timeout=15, what="3 sessions after the projects dir came back")
    client = SSEClient(srv.url + "/stream").start()
    try:
        assert client.next().event == "init"
        with open(files[2], "ab") as f:
            f.write(user("again", sessionId="s2"))
        ev = client.next(timeout=15)
        assert ev.event == "session-updated" and [s["id"] for s in ev.data["sessions"]] == ["s2"]
    finally:
        client.stop()


async def test_append_between_start_up_scan_and_watch_is_seen(tmp_path: Path) -> None:
    """A line written after the start-up scan but before the watch is up was
    never seen until the file changed again: the root is now sent once the
    watch is up, and the monitor rescans."""
    from .test_engine import append, next_event, project

    root = project(tmp_path)
    settings = Settings(projects_dir=root, db=tmp_path / "data" / "x.db", debounce_ms=20, step_ms=10)
    monitor = Engine(settings)  # the real watcher
    await monitor.open()  # the start-up scan
    good = root / "p" / "good.jsonl"
    try:
        sub = monitor.hub.subscribe(last_event_id=monitor.hub.last_id)
        sub.items.clear()
        append(good, assistant("late", "r-late", 5, sessionId="good"))  # no watch yet
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.run)
            chunk = await next_event(sub)
            assert b"session-updated" in chunk and b'"id":"good"' in chunk
            tg.cancel_scope.cancel()
    finally:
        await monitor.close()
