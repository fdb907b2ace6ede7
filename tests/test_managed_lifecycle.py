"""Managed sessions across the server's life, against the real Claude Code CLI
and the fake API (tests/managed_kit.py): SIGTERM stops every process and
leaves resumable records; a server killed with -9 leaves a process that the
next server on the same --db finds (pid and /proc start time) and kills."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path

import pytest
from collections.abc import Callable

from sessionwatch.config import Settings
from sessionwatch.engine import Engine
from sessionwatch.managed.manager import Manager, StartRequest
from sessionwatch.managed.protocol import proc_start_time
from sessionwatch.store.base import Actor
from tests.conftest import wait_for
from tests.fakeapi import Turn, Usage
from tests.managed_kit import Managed, alive, claude_pids, managed  # noqa: F401


def test_sigterm_stops_every_process_and_the_records_stay_resumable(managed: Callable[..., Managed]) -> None:
    gate = threading.Event()
    m = managed([Turn.text("a done", usage=Usage(5_000, 500)), Turn.text("b done"), Turn.text("c is slow", gate=gate),
                 Turn.text("a again", usage=Usage(5_000, 500))])  # fmt: skip
    try:
        a = m.started("a", name="a")
        m.wait_status(a, "waiting")
        b = m.started("b", name="b")
        m.wait_status(b, "waiting")
        c = m.started("c", name="c")
        m.api.wait_requests(3)
        m.wait_status(c, "running")
        pids = {sid: m.session(sid)["managed"]["pid"] for sid in (a, b, c)}  # type: ignore[index]
        assert set(pids.values()) == claude_pids(m.where.home) and len(set(pids.values())) == 3
        assert m.srv.proc is not None
        m.srv.proc.send_signal(signal.SIGTERM)
        assert m.srv.proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a graceful shutdown
        m.srv.proc = None
        assert claude_pids(m.where.home) == set()
        assert not any(alive(pid) for pid in pids.values())
    finally:
        gate.set()
    m.restart()
    for sid in (a, b, c):
        s = m.session(sid)
        assert s is not None, sid
        assert (s["status"], s["status_reason"], s["managed"]["state"], s["managed"]["pid"]) == ("ended", "server shut down", "stopped", None)
        assert s["controls"] == ["resume", "delete"]
    assert claude_pids(m.where.home) == set()  # the new server started nothing by itself
    r = m.http.post(f"/sessions/{a}/resume", json={"text": "go on"})
    assert r.status_code == 200, r.text
    s = m.wait_session(a, lambda s: s["status"] == "waiting" and s["managed"]["num_turns"] == 2, "the resumed turn")
    assert [x["content"] for x in m.logs(a, kind="reply")] == ["a done", "a again"]
    # the cost goes on across the restart: the CLI's figure and the transcript's agree
    s = m.wait_session(a, lambda s: s["tokens"]["output"] == 2 * 500, "the transcript's tokens of both processes")
    assert s["managed"]["total_cost_usd"] == pytest.approx(s["cost_usd"], rel=0.01)
    assert len(claude_pids(m.where.home)) == 1


def test_a_process_left_by_a_killed_server_is_killed_by_the_next(managed: Callable[..., Managed]) -> None:
    gate = threading.Event()
    m = managed([Turn.text("never seen", gate=gate, gate_timeout=60)])
    try:
        sid = m.started("wait for it")
        m.api.wait_requests(1)
        pid = m.wait_status(sid, "running")["managed"]["pid"]
        start = proc_start_time(pid)
        assert start is not None
        assert m.srv.proc is not None
        m.srv.proc.kill()
        m.srv.proc.wait(10)
        m.srv.proc = None
        assert alive(pid) and proc_start_time(pid) == start  # the CLI outlived its server, mid-turn
        m.restart()
        wait_for(lambda: not alive(pid) or proc_start_time(pid) != start, 10, "the leftover process to be killed")
        assert claude_pids(m.where.home) == set()
        s = m.session(sid)
        assert s is not None
        assert (s["status"], s["status_reason"], s["managed"]["state"], s["managed"]["pid"]) == ("ended", "server restarted", "stopped", None)
        assert s["controls"] == ["resume", "delete"]
    finally:
        gate.set()


async def test_a_process_that_starts_while_the_server_shuts_down_is_stopped_at_once(tmp_path: Path) -> None:
    # in-process, with a stand-in CLI that would run for minutes (never the real API)
    fake = tmp_path / "claude"
    fake.write_text("#!/bin/sh\nexec sleep 300\n")
    fake.chmod(0o755)
    (tmp_path / "projects").mkdir()
    (tmp_path / "work").mkdir()
    engine = Engine(Settings(projects_dir=tmp_path / "projects", db=tmp_path / "sw.db", claude_bin=str(fake)))
    manager = Manager(engine)
    engine.add_source(manager)
    await engine.open()
    try:
        await manager.load()
        rec = await manager.start(StartRequest(prompt="hello", cwd=str(tmp_path / "work")), Actor("local", None, None, None))
        manager.end_follows()  # the shutdown is asked for before the process has started
        assert rec.task is not None
        await asyncio.wait_for(rec.task, 20)
        assert (rec.state, rec.status_reason, rec.pid) == ("stopped", "server shut down", None)
        assert engine.hub.sessions[rec.id].status == "ended"
    finally:
        await manager.close()
        await engine.close()
