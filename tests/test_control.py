"""Away mode, approvals and budgets (sessionwatch/control), driven in-process:
an Engine over the fixture transcripts with Control plugged in, hook events
given to ``Control.answer`` as ``POST /hooks`` gives them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from sessionwatch.config import Settings
from sessionwatch.control import Control, NotPending, UnknownSession
from sessionwatch.control.budgets import DailySpend, local_midnight
from sessionwatch.control.core import permission_decision
from sessionwatch.engine import Engine
from sessionwatch.model import Session, Tokens, iso
from sessionwatch.sources.hooks.events import decode_hook, fold
from sessionwatch.store.base import Actor

#: $12.23 in the fixtures
BIG = "258c7280-ae70-4798-800f-63464d01a85d"
#: $0.23
SMALL = "d6e0bada-1959-4eec-a9d2-0bfade768d8f"
ME = Actor("admin", "10.1.2.3", "https://watch.example.com", "Mozilla/5.0")
WRITE = {"file_path": "/w/a.txt", "content": "x"}


def hook(name: str, sid: str = SMALL, **fields: Any) -> Any:
    return decode_hook(json.dumps({"hook_event_name": name, "session_id": sid, "cwd": "/w", **fields}))


def permission(sid: str = SMALL, tool: str = "Write", tool_input: dict[str, Any] | None = None) -> Any:
    return hook("PermissionRequest", sid, tool_name=tool, tool_input=tool_input or WRITE)


@asynccontextmanager
async def running(tmp_path: Path, projects: Path, clock: Any = None, **settings: Any) -> AsyncIterator[tuple[Engine, Control]]:
    engine = Engine(Settings(projects_dir=projects, db=tmp_path / "sw.db", **settings), clock=clock)
    control = Control(engine)
    engine.add_source(control)
    await engine.open()
    try:
        await control.load()
        yield engine, control
    finally:
        await engine.close()


async def held(control: Control, sid: str = SMALL, timeout: float = 5.0) -> str:
    """The pending id once a prompt of ``sid`` waits (deadline, no sleeps as assertions)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = await control.waiting(sid)
        if waiting:
            return str(waiting[0]["pending_id"])
        await asyncio.sleep(0.005)
    raise AssertionError(f"no prompt of {sid} held within {timeout} s")


# --- away mode and approvals -------------------------------------------------------------------


async def test_away_off_answers_at_once_and_holds_nothing(tmp_path: Path, projects: Path) -> None:
    async with running(tmp_path, projects) as (engine, control):
        assert not control.holds(permission())
        assert await control.answer(permission(), engine.hub.sessions.get(SMALL)) == {}


async def test_allow_from_the_dashboard_is_the_hooks_answer_and_is_recorded(tmp_path: Path, projects: Path) -> None:
    async with running(tmp_path, projects) as (engine, control):
        await control.set_away(True, ME)
        assert control.holds(permission())
        hook_answer = asyncio.create_task(control.answer(permission(), engine.hub.sessions.get(SMALL)))
        pid = await held(control)
        # the id the hooks source's fold gives the same prompt
        state = fold(None, permission(), 0.0, hold=True)
        assert state.pending is not None and pid == state.pending.id and state.pending.answerable
        got = await control.approve(SMALL, pid, "allow", None, ME)
        assert got["decision"] == "allow" and got["tool"] == "Write" and got["by"]["who"] == "admin"
        assert await hook_answer == {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}}
        [rec] = await engine.store.approvals(SMALL)
        assert rec["pending_id"] == pid and rec["decision"] == "allow" and rec["summary"] == "Write: a.txt"
        assert rec["by"] == {"who": "admin", "address": "10.1.2.3", "origin": "https://watch.example.com", "user_agent": "Mozilla/5.0"}
        assert isinstance(rec["decided_at"], float)
        with pytest.raises(NotPending, match="already answered: allow"):
            await control.approve(SMALL, pid, "deny", None, ME)
        detail = await control.detail(SMALL)
        assert [a["decision"] for a in detail["approvals"]] == ["allow"] and detail["waiting_approval"] == []


async def test_deny_sends_the_message_or_sessionwatchs_own(tmp_path: Path, projects: Path) -> None:
    async with running(tmp_path, projects) as (engine, control):
        await control.set_away(True, ME)
        for message, expected in (("not on main", "not on main"), (None, "sessionwatch: denied from the dashboard")):
            task = asyncio.create_task(control.answer(permission(), None))
            await control.approve(SMALL, await held(control), "deny", message, ME)
            assert await task == {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "deny", "message": expected}}}


async def test_nobody_answers_no_decision_then_409(tmp_path: Path, projects: Path) -> None:
    async with running(tmp_path, projects, approval_wait_s=0.05) as (engine, control):
        await control.set_away(True, ME)
        assert await control.answer(permission(), None) == {}
        pid = fold(None, permission(), 0.0).pending.id  # type: ignore[union-attr]
        with pytest.raises(NotPending, match="timed out"):
            await control.approve(SMALL, pid, "allow", None, ME)
        assert await engine.store.approvals(SMALL) == []


async def test_answered_in_the_terminal_a_later_event_clears_it(tmp_path: Path, projects: Path) -> None:
    async with running(tmp_path, projects) as (engine, control):
        await control.set_away(True, ME)
        await control.answer(hook("PreToolUse", tool_name="Write", tool_input=WRITE, tool_use_id="toolu_1"), None)
        task = asyncio.create_task(control.answer(permission(), None))
        pid = await held(control)
        assert pid == "toolu_1"  # the PreToolUse's id, as the hooks source shows it
        # the terminal's own dialog shows meanwhile; its Notification keeps the prompt pending
        notice = hook("Notification", notification_type="permission_prompt", message="Claude needs your permission to use Write")
        assert await control.answer(notice, None) == {}
        assert await control.waiting(SMALL)
        # approved in the terminal: the tool ran
        await control.answer(hook("PostToolUse", tool_name="Write", tool_input=WRITE, tool_use_id="toolu_1"), None)
        assert await task == {}
        with pytest.raises(NotPending, match="answered in the terminal"):
            await control.approve(SMALL, pid, "allow", None, ME)


async def test_turning_away_off_releases_every_waiting_prompt(tmp_path: Path, projects: Path) -> None:
    async with running(tmp_path, projects) as (engine, control):
        await control.set_away(True, ME)
        task = asyncio.create_task(control.answer(permission(), None))
        pid = await held(control)
        assert (await control.set_away(False, ME))["on"] is False
        assert await task == {}
        with pytest.raises(NotPending, match="away mode was turned off"):
            await control.approve(SMALL, pid, "allow", None, ME)


async def test_unknown_session_and_unknown_prompt(tmp_path: Path, projects: Path) -> None:
    async with running(tmp_path, projects) as (engine, control):
        with pytest.raises(UnknownSession):
            await control.approve("nope", "p1", "allow", None, ME)
        with pytest.raises(NotPending, match="no prompt with that id"):
            await control.approve(SMALL, "p1", "allow", None, ME)
        with pytest.raises(UnknownSession):
            await control.set_budget("nope", 1.0, ME)


async def test_away_and_budgets_survive_a_restart_with_who_set_them(tmp_path: Path, projects: Path) -> None:
    async with running(tmp_path, projects) as (engine, control):
        await control.set_away(True, ME)
        await control.set_budget(SMALL, 0.1, ME)
    async with running(tmp_path, projects) as (engine, control):
        away = await control.away_json()
        assert away["on"] is True and away["by"] == ME.to_json() and away["approval_wait_s"] == 600.0
        assert control.cap(SMALL) == 0.1
        assert control.facet(SMALL, time.time()) == {"max_cost_usd": 0.1, "status_reason": "budget reached"}


# --- budgets -------------------------------------------------------------------------------------


async def test_past_the_session_cap_tools_are_denied_and_prompts_blocked(tmp_path: Path, projects: Path) -> None:
    async with running(tmp_path, projects, max_cost_usd=5.0) as (engine, control):
        big, small = engine.hub.sessions[BIG], engine.hub.sessions[SMALL]
        reason = "sessionwatch: this session reached its $5.00 budget"
        assert await control.answer(hook("PreToolUse", BIG, tool_name="Bash", tool_input={"command": "ls"}), big) == {
            "hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny", "permissionDecisionReason": reason}
        }
        assert await control.answer(hook("UserPromptSubmit", BIG, prompt="go on"), big) == {"decision": "block", "reason": reason}
        assert await control.answer(hook("PreToolUse", SMALL, tool_name="Bash", tool_input={"command": "ls"}), small) == {}
        # other events are never refused
        assert await control.answer(hook("Stop", BIG), big) == {}
        assert control.facet(BIG, time.time()) == {"max_cost_usd": 5.0, "status_reason": "budget reached"}
        assert control.facet(SMALL, time.time()) == {"max_cost_usd": 5.0}


async def test_a_sessions_own_budget_wins_and_null_goes_back_to_the_default(tmp_path: Path, projects: Path) -> None:
    async with running(tmp_path, projects, max_cost_usd=5.0) as (engine, control):
        big = engine.hub.sessions[BIG]
        pre = hook("PreToolUse", BIG, tool_name="Bash", tool_input={"command": "ls"})
        got = await control.set_budget(BIG, 20.0, ME)
        assert (got["max_cost_usd"], got["own"], got["default"]) == (20.0, 20.0, 5.0)
        assert await control.answer(pre, big) == {}
        assert control.facet(BIG, time.time()) == {"max_cost_usd": 20.0}
        await control.set_budget(SMALL, 0.2, ME)
        assert "$0.20 budget" in json.dumps(await control.answer(hook("UserPromptSubmit", SMALL), engine.hub.sessions[SMALL]))
        got = await control.set_budget(BIG, None, ME)
        assert (got["max_cost_usd"], got["own"]) == (5.0, None)
        assert "$5.00 budget" in json.dumps(await control.answer(pre, big))
        changes = got["changes"]
        assert [c["max_cost_usd"] for c in changes] == [20.0, None] and all(c["by"] == ME.to_json() for c in changes)


async def test_no_cap_no_facet(tmp_path: Path, projects: Path) -> None:
    async with running(tmp_path, projects) as (engine, control):
        assert control.facet(BIG, time.time()) is None
        assert await control.answer(hook("PreToolUse", BIG, tool_name="Bash"), engine.hub.sessions[BIG]) == {}


async def test_daily_cap_denies_every_session(tmp_path: Path, projects: Path) -> None:
    async with running(tmp_path, projects, max_daily_cost_usd=0.0) as (engine, control):
        reason = "sessionwatch: today's spend across all sessions reached the $0.00 daily budget"
        got = await control.answer(hook("PreToolUse", SMALL, tool_name="Bash"), engine.hub.sessions[SMALL])
        assert got["hookSpecificOutput"]["permissionDecisionReason"] == reason
        assert await control.check_daily() is True and control.daily_reached


async def test_daily_cap_marks_todays_sessions_and_lifts_the_mark(tmp_path: Path, projects: Path) -> None:
    from .clock import FakeClock

    # the local day of BIG's activity ($12.23, started and last active that day)
    big_last = 1770846385.0  # 2026-02-11T21:46:25Z
    clock = FakeClock(big_last + 60)
    async with running(tmp_path, projects, clock=clock, max_daily_cost_usd=10.0) as (engine, control):
        if not control.daily.total([engine.hub.sessions[BIG]], clock.now()) >= 10:
            pytest.skip("BIG did not start on the local day of its last activity in this time zone")
        assert await control.check_daily() is True
        assert control.facet(BIG, clock.now()) == {"status_reason": "budget reached"}
        assert control.facet(SMALL, clock.now()) is None or "status_reason" not in (control.facet(SMALL, clock.now()) or {})
        control.max_daily_cost_usd = 20.0
        assert await control.check_daily() is False
        assert control.facet(BIG, clock.now()) is None and control._daily_marked == set()


def session(sid: str, cost: float, started: float, last: float) -> Session:
    return Session(
        id=sid, source="claude", project="p", title=None, status="waiting", current_task=None, user=None, host=None,
        git_branch=None, model=None, version=None, started_at=iso(started), last_activity=iso(last),
        duration_seconds=0.0, message_count=0, tool_calls=0, tokens=Tokens(), cost_usd=cost,
        kill_requested=False, is_stale=False,
    )  # fmt: skip


def test_daily_spend_counts_todays_sessions_in_full_and_older_ones_from_first_sight() -> None:
    midnight = local_midnight(time.time())
    now = midnight + 3600
    daily = DailySpend()
    today = session("t", 2.0, midnight + 60, now)
    older = session("o", 10.0, midnight - 86400, now)
    assert daily.total([today, older], now) == 2.0  # the older one's $10 were spent before
    older = session("o", 10.5, midnight - 86400, now + 60)
    assert daily.total([today, older], now + 60) == 2.5
    # the next day starts from nothing: every session's cost now is its baseline
    assert daily.total([today, older], now + 86400) == 0.0
    assert not daily.active_today(today) and daily.active_today(session("t", 2.0, midnight, now + 86400))


def test_permission_decision_shapes() -> None:
    assert permission_decision("allow", "ignored") == {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}}
