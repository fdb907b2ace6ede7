"""The managed-session Manager in-process, on the engine's fake clock: a run
that stops reporting, a process an earlier server left behind, and where a
managed session may start."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from sessionwatch.config import Settings
from sessionwatch.engine import Engine
from sessionwatch.errors import ApiError
from sessionwatch.managed.manager import RUN_SILENT_S, Manager, Record
from sessionwatch.managed.protocol import proc_start_time

from .clock import FakeClock

T0 = 1_800_000_000.0


@asynccontextmanager
async def running(tmp_path: Path, clock: FakeClock | None = None, **settings: Any) -> AsyncIterator[tuple[Engine, Manager]]:
    (tmp_path / "projects").mkdir(exist_ok=True)
    engine = Engine(Settings(projects_dir=tmp_path / "projects", db=tmp_path / "sw.db", **settings), clock=clock)
    manager = Manager(engine)
    engine.add_source(manager)
    await engine.open()
    try:
        await manager.load()
        yield engine, manager
    finally:
        await manager.close()
        await engine.close()


async def test_a_run_that_stops_reporting_is_shown_stopped_and_comes_back_when_it_reports(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with running(tmp_path, clock) as (engine, manager):
        await manager.report("r1", {"state": "running", "name": "nightly", "cwd": "/w", "pid": 7, "figures": {}, "logs": []})
        assert engine.hub.sessions["r1"].status == "running"
        clock.set(T0 + RUN_SILENT_S - 1)
        await manager.check()
        assert engine.hub.sessions["r1"].status == "running"
        clock.set(T0 + RUN_SILENT_S + 1)
        await manager.check()
        s = engine.hub.sessions["r1"]
        assert (s.status, s.status_reason) == ("ended", "run stopped reporting")
        await manager.report("r1", {"state": "waiting", "figures": {}, "logs": []})
        assert engine.hub.sessions["r1"].status == "waiting"


async def test_a_process_an_earlier_server_left_is_killed_at_start_and_the_record_is_resumable(tmp_path: Path) -> None:
    orphan = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        start = proc_start_time(orphan.pid)
        assert start is not None
        async with running(tmp_path) as (engine, manager):
            rec = Record(id="m1", kind="server", name="left", cwd=str(tmp_path), created_at=time.time(), state="running",
                         pid=orphan.pid, proc_start=start)  # fmt: skip
            await engine.store.write(engine.store.managed_save(rec.row()))
        # the next server on the same database
        async with running(tmp_path) as (engine, manager):
            assert orphan.wait(10) is not None  # killed (reaped here: it is this test's child)
            s = engine.hub.sessions["m1"]
            assert (s.status, s.status_reason) == ("ended", "server restarted")
            assert s.managed is not None and s.managed.state == "stopped" and s.managed.pid is None
            assert s.controls == ("resume", "delete")
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


async def test_a_recorded_pid_now_used_by_another_process_is_left_alone(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        async with running(tmp_path) as (engine, manager):
            rec = Record(id="m2", kind="server", name="left", cwd=str(tmp_path), created_at=time.time(), state="running",
                         pid=other.pid, proc_start=(proc_start_time(other.pid) or 0) + 1)  # fmt: skip
            await engine.store.write(engine.store.managed_save(rec.row()))
        async with running(tmp_path) as (engine, manager):
            assert other.poll() is None  # not the process the record names: untouched
            assert engine.hub.sessions["m2"].status_reason == "server restarted"
    finally:
        other.kill()
        other.wait()


async def test_cwd_must_exist_be_a_directory_and_lie_under_the_workspace_root(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "app").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "escape").symlink_to(tmp_path / "elsewhere")
    (root / "file.txt").write_text("x")
    async with running(tmp_path, workspace_root=root.resolve()) as (engine, manager):
        assert manager.check_cwd(str(root / "app")) == str((root / "app").resolve())
        assert manager.check_cwd(str(root)) == str(root.resolve())
        for bad, words in (
            (str(root / "nope"), "does not exist"),
            (str(root / "file.txt"), "is not a directory"),
            (str(tmp_path / "elsewhere"), "is outside the workspace root"),
            (str(root / "escape"), "is outside the workspace root"),
            (str(root / "app" / ".." / ".."), "is outside the workspace root"),
            ("relative/dir", "must be an absolute path"),
        ):
            with pytest.raises(ApiError) as err:
                manager.check_cwd(bad)
            assert err.value.status == 400 and words in str(err.value), (bad, str(err.value))
    assert os.path.isdir(root)
