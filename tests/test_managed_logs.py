"""Managed sessions' logs: paged and filtered, followed as SSE through the real
server while a turn of the real CLI happens, and their retention on the
engine's clock (in-process, tests/clock.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sessionwatch.config import Settings
from sessionwatch.engine import Engine
from sessionwatch.managed.manager import SWEEP_S, Manager
from tests.clock import FakeClock
from tests.conftest import wait_for
from tests.fakeapi import Turn
from tests.managed_kit import Managed, managed  # noqa: F401
from tests.sse import Received, SSEClient


def test_logs_page_and_filter(managed: Callable[..., Managed]) -> None:
    m = managed([])
    m.api.add(Turn.tool_use("Write", {"file_path": str(m.where.cwd / "x.txt"), "content": "x"}, text="let me write"), Turn.text("ok then"))
    sid = m.started("write x")
    p = m.wait_status(sid, "needs_approval")["pending"]
    m.http.post(f"/sessions/{sid}/approve", json={"pending_id": p["id"], "decision": "deny", "message": "no"})
    m.wait_status(sid, "waiting")
    everything = m.logs(sid)
    assert len(everything) >= 8
    ids = [x["id"] for x in everything]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert set(everything[0]) == {"id", "ts", "level", "source", "kind", "content", "tool_name", "cost_usd"}
    # pages of 3 add up to the whole, each answer saying where it stopped
    paged, after = [], 0
    while True:
        r = m.http.get(f"/sessions/{sid}/logs", params={"after": after, "limit": 3})
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["logs"]) <= 3
        if not page["logs"]:
            assert page["last_id"] == after
            break
        paged += page["logs"]
        after = page["last_id"]
        assert after == page["logs"][-1]["id"]
    assert paged == everything
    # filters
    warn = m.logs(sid, level="warn")
    assert warn and {x["level"] for x in warn} <= {"warn", "error"}
    assert [x for x in everything if x["level"] in ("warn", "error")] == warn
    assert any(x["kind"] == "permission" and x["tool_name"] == "Write" for x in warn)
    stdin = m.logs(sid, source="stdin")
    assert stdin and {x["source"] for x in stdin} == {"stdin"}
    assert [x["content"] for x in stdin if x["kind"] == "prompt"] == ["write x"]
    both = m.logs(sid, source="stdin,system")
    assert {x["source"] for x in both} == {"stdin", "system"}
    assert m.http.get(f"/sessions/{sid}/logs", params=[("source", "stdin"), ("source", "system"), ("limit", "1000")]).json()["logs"] == both
    talk = m.logs(sid, kind="prompt,reply")
    assert [(x["kind"], x["content"]) for x in talk] == [("prompt", "write x"), ("reply", "let me write"), ("reply", "ok then")]
    tools = m.logs(sid, kind="tool")
    assert [(x["tool_name"], x["content"]) for x in tools] == [("Write", "Write: x.txt")]
    results = m.logs(sid, kind="result", level="info")
    assert len(results) == 1 and results[0]["cost_usd"] > 0
    assert m.logs(sid, kind="reply", source="stdin") == []
    # bad parameters: one sentence each
    for params in ({"after": "-1"}, {"after": "x"}, {"limit": "0"}, {"limit": "1001"}, {"level": "loud"},
                   {"source": "tty"}, {"kind": "thought"}, {"follow": "2"}):  # fmt: skip
        r = m.http.get(f"/sessions/{sid}/logs", params=params)
        assert r.status_code == 400, (params, r.text)
        error = r.json()["error"]
        assert "\n" not in error and len(error) < 300, error


def test_follow_streams_lines_as_the_turn_happens(managed: Callable[..., Managed]) -> None:
    gate = threading.Event()
    m = managed([Turn.text("slowly", gate=gate), Turn.text("second")])
    try:
        sid = m.started("tell me")
        m.api.wait_requests(1)
        follow = SSEClient(f"{m.srv.url}/sessions/{sid}/logs?follow=1").start()
        got: list[Received] = []

        def until(kind: str) -> Received:
            while True:
                e = follow.next(timeout=20)
                assert e.event == "log", e
                got.append(e)
                if e.data["kind"] == kind:
                    return e

        until("prompt")
        assert follow.status == 200 and follow.response_headers["content-type"].startswith("text/event-stream")
        before = list(got)
        assert not any(e.data["kind"] == "reply" for e in before)  # the model has not answered yet
        gate.set()
        reply = until("reply")
        assert reply.data["content"] == "slowly"
        until("result")
        # a message later, on the same connection
        assert m.http.post(f"/sessions/{sid}/messages", json={"text": "more"}).status_code == 202
        until("prompt")
        assert until("reply").data["content"] == "second"
        ids = [int(e.id or 0) for e in got]
        assert ids == sorted(ids) and len(set(ids)) == len(ids) and ids[0] > 0
        assert [e.data["id"] for e in got] == ids
        assert [e.data for e in got] == m.logs(sid)[: len(got)]
        # resuming from an id: only what came after it
        later = SSEClient(f"{m.srv.url}/sessions/{sid}/logs?follow=1&after={ids[-2]}&kind=reply").start()
        assert later.next().data["content"] == "second"
        later.stop()
        # a deleted session's follow ends
        m.http.post(f"/sessions/{sid}/stop", json={})
        m.wait_status(sid, "ended")
        assert m.http.delete(f"/sessions/{sid}").status_code == 200
        assert follow.closed.wait(10)
    finally:
        gate.set()


async def test_retention_sweep_on_the_engines_clock(tmp_path: Path) -> None:
    (tmp_path / "projects").mkdir()
    t0 = 1_800_000_000.0
    clock = FakeClock(t0)
    engine = Engine(Settings(projects_dir=tmp_path / "projects", db=tmp_path / "sw.db", log_retention_days=7), clock=clock)
    manager = Manager(engine)
    engine.add_source(manager)
    await engine.open()
    day = 86400.0

    def line(ts: float, content: str) -> dict[str, object]:
        return {"ts": ts, "level": "info", "source": "stdout", "kind": "reply", "content": content}

    async def contents(sid: str) -> list[str]:
        from sessionwatch.store.base import LogQuery

        return [x["content"] for x in await engine.store.logs(LogQuery(sid, limit=1000))]

    try:
        await engine.store.add_logs("a", [line(t0 - 8 * day, "old"), line(t0 - 7 * day - 1, "just over"),
                                          line(t0 - 7 * day + 1, "just under"), line(t0 - day, "new")])  # fmt: skip
        await engine.store.add_logs("b", [line(t0 - 30 * day, "ancient"), line(t0, "now")])
        assert await manager.sweep() == 3
        assert await contents("a") == ["just under", "new"]
        assert await contents("b") == ["now"]
        # the hourly sweep, on the engine's clock: a line past its week goes at the next sweep, not before
        await engine.store.add_logs("c", [line(t0 - 7 * day + 10, "ten seconds to go")])
        rounds = 0
        check = manager.check

        async def counted() -> None:
            nonlocal rounds
            await check()
            rounds += 1

        manager.check = counted  # type: ignore[method-assign]

        async def until(what: Callable[[], object]) -> None:
            deadline = time.monotonic() + 10
            while not what():
                assert time.monotonic() < deadline, "timed out"
                await asyncio.sleep(0.005)

        runner = asyncio.create_task(manager.run())
        try:
            await until(lambda: rounds >= 1)  # the first round sweeps at once (at t0: nothing to delete)
            assert await contents("c") == ["ten seconds to go"]
            clock.set(t0 + 20)
            await until(lambda: rounds >= 2)
            assert await contents("c") == ["ten seconds to go"]  # over its week, but the next sweep is an hour away
            clock.set(t0 + SWEEP_S)
            deadline = time.monotonic() + 10
            while await contents("c"):
                assert time.monotonic() < deadline, "the hourly sweep did not come"
                await asyncio.sleep(0.005)
            assert await contents("b") == ["now"]
            assert await contents("a") == ["new"]  # "just under" had a second left at t0
            clock.set(t0 + 7 * day + 2 * SWEEP_S)
            deadline = time.monotonic() + 10
            while await contents("b"):
                assert time.monotonic() < deadline, "the later sweep did not come"
                await asyncio.sleep(0.005)
            assert await contents("a") == []
        finally:
            runner.cancel()
    finally:
        await engine.close()


def test_secrets_are_masked_in_logs_and_rows(managed: Callable[..., Managed]) -> None:
    token = "ghp_" + "a1" * 15
    m = managed([Turn.text(f"I will use {token} as you said")])
    sid = m.started(f"push with {token} please", system_prompt=f"the deploy token is {token}")
    s = m.wait_status(sid, "waiting")
    everything = m.http.get(f"/sessions/{sid}/logs", params={"limit": 1000}).text
    assert token not in everything and "ghp_••••" in everything
    assert token not in str(s) and s["current_task"] == "push with ghp_•••• please"
    detail = m.http.get(f"/sessions/{sid}").text
    assert token not in detail and "ghp_••••" in detail
