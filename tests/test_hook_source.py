"""The hooks and the live registry as sources of the engine: who owns a row,
which status wins, the idle rule, a process that is gone (fake clock, fake
registry; the real CLI is in tests/test_hooks_live.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sessionwatch.errors import ApiError
from sessionwatch.config import Settings
from sessionwatch.engine import Engine
from sessionwatch.errors import IdTaken
from sessionwatch.model import Pending, Session, iso
from sessionwatch.sources.claude.live import LiveProcess, LiveScan
from sessionwatch.sources.hooks.events import HookEvent, decode_hook

from .clock import FakeClock
from .test_claude import assistant, user

T0 = 1767225600.0  # 2026-01-01T00:00:00Z, the timestamp of test_claude's lines
SID = "c1"
CWD = "/work/app"


def event(name: str, sid: str = SID, **fields: Any) -> Any:
    return decode_hook(json.dumps({"hook_event_name": name, "session_id": sid, "cwd": CWD, **fields}))


def proc(sid: str = SID, pid: int = 4242, status: str | None = "idle", at: float = T0, **kw: Any) -> LiveProcess:
    return LiveProcess(
        pid=pid, session_id=sid, cwd=CWD, started_at=at, version="2.1.330", kind="interactive", entrypoint="cli",
        name=None, status=status, status_updated_at=kw.pop("status_updated_at", at), updated_at=at, proc_start="1", **kw,
    )


class Registry:
    """What the fake live registry holds now."""

    def __init__(self) -> None:
        self.scan = LiveScan()

    def read(self, _dir: Path) -> LiveScan:
        return self.scan

    def set(self, *live: LiveProcess, gone: tuple[LiveProcess, ...] = (), unreadable: tuple[int, ...] = ()) -> None:
        self.scan = LiveScan(live={p.session_id: p for p in live}, gone=list(gone), unreadable=list(unreadable))


async def engine_with(tmp_path: Path, clock: FakeClock, registry: Registry, transcript: bytes | None = None, idle_after_s: float = 300) -> Engine:
    root = tmp_path / "projects"
    (root / "p").mkdir(parents=True)
    if transcript is not None:
        (root / "p" / f"{SID}.jsonl").write_bytes(transcript)
    engine = Engine(Settings(projects_dir=root, db=tmp_path / "x.db", idle_after_s=idle_after_s), clock=clock)
    engine.live.read = registry.read
    await engine.open()
    return engine


@pytest.fixture
def registry() -> Registry:
    return Registry()


async def test_session_start_lists_the_session_before_its_transcript(tmp_path: Path, registry: Registry) -> None:
    clock = FakeClock(T0)
    engine = await engine_with(tmp_path, clock, registry)
    try:
        assert SID not in engine.hub.sessions
        await engine.hook(event("SessionStart", source="startup", model="claude-sonnet-4-5"))
        s = engine.hub.sessions[SID]
        assert (s.source, s.project, s.status, s.status_reason) == ("claude", CWD, "waiting", "session started")
        assert (s.model, s.started_at, s.last_activity, s.pending, s.controls) == ("claude-sonnet-4-5", iso(T0), iso(T0), None, ())
        # the transcript appears: it owns the row, the hooks keep the status
        clock.set(T0 + 5)
        await engine.hook(event("UserPromptSubmit", prompt="hi"))
        path = tmp_path / "projects" / "p" / f"{SID}.jsonl"
        path.write_bytes(user("hi", sessionId=SID) + assistant("m1", "r1", 5, sessionId=SID))
        await engine.handle({path})
        s = engine.hub.sessions[SID]
        assert s.tokens.output == 5 and s.message_count >= 1
        assert (s.status, s.status_reason) == ("running", "prompt submitted")  # the transcript says waiting (end_turn)
        assert s.last_activity == iso(T0 + 5)  # the hook is newer than the transcript's entry
    finally:
        await engine.close()


async def test_hooks_win_status_and_pending_over_the_transcript(tmp_path: Path, registry: Registry) -> None:
    clock = FakeClock(T0 + 10)
    engine = await engine_with(tmp_path, clock, registry, transcript=user("hi", sessionId=SID) + assistant("m1", "r1", 5, sessionId=SID))
    try:
        assert engine.hub.sessions[SID].status == "waiting" and engine.hub.sessions[SID].status_reason is None
        await engine.hook(event("PreToolUse", tool_name="Write", tool_use_id="toolu_1", tool_input={"file_path": CWD + "/note.txt", "content": "x"}))
        await engine.hook(event("PermissionRequest", tool_name="Write", tool_input={"file_path": CWD + "/note.txt", "content": "x"}))
        s = engine.hub.sessions[SID]
        assert (s.status, s.status_reason) == ("needs_approval", "permission: Write")
        assert s.pending == Pending("toolu_1", "permission", "Write", "Write: note.txt", iso(T0 + 10), False)
        assert s.controls == ()  # nobody holds the hook open: nothing to approve from here
        await engine.hook(event("PostToolUse", tool_name="Write", tool_use_id="toolu_1"))
        assert (engine.hub.sessions[SID].status, engine.hub.sessions[SID].pending) == ("running", None)
    finally:
        await engine.close()


async def test_a_held_prompt_is_answerable_and_approvable(tmp_path: Path, registry: Registry) -> None:
    engine = await engine_with(tmp_path, FakeClock(T0), registry)
    try:
        await engine.hook(event("PermissionRequest", tool_name="Bash", tool_input={"command": "make"}), hold=True)
        s = engine.hub.sessions[SID]
        assert s.pending is not None and s.pending.answerable and s.controls == ("approve",)
    finally:
        await engine.close()


async def test_subagent_events_fold_into_the_parent(tmp_path: Path, registry: Registry) -> None:
    engine = await engine_with(tmp_path, FakeClock(T0), registry)
    try:
        await engine.hook(event("SessionStart", source="startup"))
        await engine.hook(event("SubagentStart", agent_id="a1", agent_type="general-purpose"))
        assert set(engine.hub.sessions) == {SID}
        assert engine.hub.sessions[SID].status_reason == "subagent: general-purpose"
    finally:
        await engine.close()


async def test_idle_rule_applies_to_a_hooks_known_session(tmp_path: Path, registry: Registry) -> None:
    clock = FakeClock(T0)
    engine = await engine_with(tmp_path, clock, registry, idle_after_s=300)
    try:
        await engine.hook(event("Stop"))
        await engine.hook(event("PermissionRequest", sid="c2", tool_name="Bash", tool_input={"command": "ls"}))
        await engine.hook(event("SessionEnd", sid="c3", reason="prompt_input_exit"))
        clock.set(T0 + 299.9)
        await engine.tick()
        assert engine.hub.sessions[SID].status == "waiting"
        clock.set(T0 + 300)
        await engine.tick()
        assert (engine.hub.sessions[SID].status, engine.hub.sessions[SID].status_reason) == ("idle", "no activity")
        assert engine.hub.sessions["c2"].status == "needs_approval"  # a person is still asked
        assert engine.hub.sessions["c3"].status == "ended"
        await engine.hook(event("UserPromptSubmit"))
        assert engine.hub.sessions[SID].status == "running"
    finally:
        await engine.close()


async def test_transcript_activity_keeps_a_hooks_session_from_idling(tmp_path: Path, registry: Registry) -> None:
    """Activity is the newer of the last hook event and the transcript's newest entry."""
    clock = FakeClock(T0 - 100)
    engine = await engine_with(tmp_path, clock, registry, transcript=user("hi", sessionId=SID), idle_after_s=300)
    try:
        await engine.hook(event("UserPromptSubmit"))  # at T0 - 100; the transcript's entry is at T0
        clock.set(T0 + 250)
        await engine.tick()
        assert engine.hub.sessions[SID].status == "running"
        clock.set(T0 + 300)
        await engine.tick()
        assert engine.hub.sessions[SID].status == "idle"
    finally:
        await engine.close()


async def test_live_process_is_listed_before_any_transcript_or_hook(tmp_path: Path, registry: Registry) -> None:
    registry.set(proc(status="idle"))
    clock = FakeClock(T0 + 1)
    engine = await engine_with(tmp_path, clock, registry)
    try:
        s = engine.hub.sessions[SID]
        assert (s.source, s.project, s.version, s.status, s.status_reason) == ("claude", CWD, "2.1.330", "waiting", "idle")
        registry.set(proc(status="waiting", waiting_for="permission prompt", status_updated_at=T0 + 1))
        await engine.tick()
        assert (engine.hub.sessions[SID].status, engine.hub.sessions[SID].status_reason) == ("needs_approval", "waiting for permission prompt")
        # once the hooks speak, they win over the registry's status
        await engine.hook(event("UserPromptSubmit"))
        assert engine.hub.sessions[SID].status == "running"
    finally:
        await engine.close()


async def test_gone_process_ends_the_session_unless_hooks_said_failed(tmp_path: Path, registry: Registry) -> None:
    registry.set(proc(SID, pid=1), proc("c2", pid=2), proc("c3", pid=3))
    clock = FakeClock(T0 + 1)
    engine = await engine_with(tmp_path, clock, registry)
    try:
        await engine.hook(event("UserPromptSubmit"))
        await engine.hook(event("StopFailure", sid="c2", error="server_error", last_assistant_message="API Error: 529 Overloaded."))
        await engine.hook(event("SessionEnd", sid="c3", reason="prompt_input_exit"))
        assert engine.hub.sessions[SID].status == "running"
        registry.set()  # every file removed: the processes exited
        await engine.tick()
        s = engine.hub.sessions[SID]
        assert (s.status, s.status_reason, s.pending) == ("ended", "process exited", None)
        assert (engine.hub.sessions["c2"].status, engine.hub.sessions["c2"].status_reason) == ("failed", "API error: overloaded")
        assert engine.hub.sessions["c3"].status_reason == "SessionEnd: prompt_input_exit"
        # resumed in a new process: live again
        registry.set(proc(SID, pid=9, status="busy"))
        await engine.hook(event("SessionStart", source="resume"))
        await engine.tick()
        assert engine.hub.sessions[SID].status == "waiting"
    finally:
        await engine.close()


async def test_a_killed_process_left_behind_by_a_dead_pid_is_ended(tmp_path: Path, registry: Registry) -> None:
    registry.set(gone=(proc(status="busy"),))
    engine = await engine_with(tmp_path, FakeClock(T0 + 1), registry)
    try:
        assert (engine.hub.sessions[SID].status, engine.hub.sessions[SID].status_reason) == ("ended", "process exited")
    finally:
        await engine.close()


async def test_an_unreadable_entry_keeps_its_process_alive(tmp_path: Path, registry: Registry) -> None:
    registry.set(proc(pid=7, status="busy"))
    engine = await engine_with(tmp_path, FakeClock(T0 + 1), registry)
    try:
        registry.set(unreadable=(7,))  # caught mid-rewrite
        await engine.tick()
        assert engine.hub.sessions[SID].status == "running"
    finally:
        await engine.close()


async def test_registry_idle_clears_a_prompt_dismissed_with_escape(tmp_path: Path, registry: Registry) -> None:
    registry.set(proc(status="busy"))
    clock = FakeClock(T0 + 10)
    engine = await engine_with(tmp_path, clock, registry)
    try:
        await engine.hook(event("PermissionRequest", tool_name="Write", tool_input={"file_path": "x"}))
        registry.set(proc(status="waiting", waiting_for="permission prompt", status_updated_at=T0 + 10.2))
        await engine.tick()
        assert engine.hub.sessions[SID].status == "needs_approval"
        registry.set(proc(status="idle", status_updated_at=T0 + 14))  # Escape: no hook event at all
        clock.set(T0 + 15)
        await engine.tick()
        s = engine.hub.sessions[SID]
        assert (s.status, s.status_reason, s.pending) == ("waiting", "prompt dismissed", None)
    finally:
        await engine.close()


async def test_a_panel_tracker_cannot_take_a_hooks_or_live_session_id(tmp_path: Path, registry: Registry) -> None:
    registry.set(proc("live-only"))
    engine = await engine_with(tmp_path, FakeClock(T0), registry)
    try:
        await engine.hook(event("SessionStart", source="startup"))
        for sid in (SID, "live-only"):
            with pytest.raises(IdTaken):
                await engine.register("app", session_id=sid, user_id=None, host=None, pid=None, url=None)
            assert engine.hub.sessions[sid].source == "claude"
    finally:
        await engine.close()


async def test_a_held_prompt_is_no_longer_approvable_once_its_hook_returned(tmp_path: Path, registry: Registry) -> None:
    engine = await engine_with(tmp_path, FakeClock(T0), registry)
    try:
        await engine.hook(event("PermissionRequest", tool_name="Bash", tool_input={"command": "make"}), hold=True)
        await engine.unhold(SID)
        s = engine.hub.sessions[SID]
        assert s.status == "needs_approval" and s.pending is not None and not s.pending.answerable and s.controls == ()
    finally:
        await engine.close()


# --- the /hooks route and the Answerer seam (in process) ----------------------------------------


class HoldingAnswerer:
    """Holds every PermissionRequest; records what the session showed while it waited."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def holds(self, event: HookEvent) -> bool:
        return event.hook_event_name == "PermissionRequest"

    async def answer(self, event: HookEvent, session: Session | None) -> dict[str, Any]:
        self.seen.append(session)
        if not self.holds(event):
            return {}
        return {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}}


async def test_hooks_route_publishes_before_it_asks_the_answerer_then_releases_the_hold(tmp_path: Path, registry: Registry) -> None:
    import httpx
    from starlette.applications import Starlette

    from sessionwatch.server import api

    engine = await engine_with(tmp_path, FakeClock(T0), registry)
    answerer = HoldingAnswerer()
    engine.answerer = answerer
    app = Starlette(routes=api.routes, exception_handlers={ApiError: lambda r, e: api.error(e.status, e.sentence)})  # type: ignore[arg-type,dict-item]
    app.state.engine = engine
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            body = {"hook_event_name": "PermissionRequest", "session_id": SID, "cwd": CWD, "tool_name": "Bash", "tool_input": {"command": "make"}}
            r = await http.post("/hooks", json=body)
            assert r.json().get("hookSpecificOutput", {}).get("decision") == {"behavior": "allow"}, r.json()
            [during] = answerer.seen
            assert during is not None and during.status == "needs_approval" and during.controls == ("approve",)
            assert during.pending is not None and during.pending.answerable
            after = engine.hub.sessions[SID]
            assert after.pending is not None and not after.pending.answerable and after.controls == ()
            assert (await http.post("/hooks", json={"hook_event_name": "Stop", "session_id": SID})).json() == {}
            assert engine.hub.sessions[SID].status == "waiting"
            r = await http.post("/hooks", content=b"{", headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and list(r.json()) == ["error"]
    finally:
        await engine.close()
