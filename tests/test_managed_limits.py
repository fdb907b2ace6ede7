"""Managed sessions' limits against the real Claude Code CLI and the fake API
(tests/managed_kit.py): --max-managed, cwd and --workspace-root,
bypassPermissions, bad bodies, unknown ids, and the spend cap."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wait_for
from tests.fakeapi import Turn, Usage
from tests.managed_kit import Managed, alive, claude_pids, managed  # noqa: F401


def one_sentence(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    error = r.json()["error"]
    assert isinstance(error, str) and error and "\n" not in error and len(error) < 300 and "Traceback" not in error
    return str(error)


def test_max_managed_counts_live_processes_not_stopped_records(managed: Callable[..., Managed]) -> None:
    m = managed([Turn.text(f"answer {i}") for i in range(4)], flags=["--max-managed", "2"])
    a = m.started("a", name="a")
    # a name is unique among live sessions
    assert "already named" in one_sentence(m.start("a again", name="a"), 409)
    b = m.started("b", name="b")
    for sid in (a, b):
        m.wait_status(sid, "waiting")
    error = one_sentence(m.start("c", name="c"), 429)
    assert "--max-managed" in error
    assert m.http.post(f"/sessions/{a}/stop", json={}).status_code == 200
    m.wait_status(a, "ended")
    c = m.started("c", name="c")
    m.wait_status(c, "waiting")
    # the stopped one cannot come back while two run; a stopped name may be reused
    assert "--max-managed" in one_sentence(m.http.post(f"/sessions/{a}/resume", json={"text": "again"}), 429)
    assert m.http.post(f"/sessions/{b}/stop", json={}).status_code == 200
    m.wait_status(b, "ended")
    d = m.started("d", name="a")
    m.wait_status(d, "waiting")
    m.api.check()


def test_cwd_must_exist_and_lie_under_the_workspace_root(managed: Callable[..., Managed], tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "home" / "work").mkdir(parents=True, exist_ok=True)
    m = managed([Turn.text("inside")], flags=["--workspace-root", str(tmp_path / "home" / "work")])
    cwd = m.where.cwd
    (cwd / "link-out").symlink_to(outside)
    (cwd / "sub").mkdir()
    (cwd / "link-in").symlink_to(cwd / "sub")
    (cwd / "a-file").write_text("x")
    assert "does not exist" in one_sentence(m.start(cwd=str(cwd / "missing")), 400)
    assert "absolute" in one_sentence(m.start(cwd="work"), 400)
    assert "not a directory" in one_sentence(m.start(cwd=str(cwd / "a-file")), 400)
    assert "outside the workspace root" in one_sentence(m.start(cwd=str(outside)), 400)
    assert "outside the workspace root" in one_sentence(m.start(cwd=str(cwd / "link-out")), 400)
    assert "outside the workspace root" in one_sentence(m.start(cwd=str(cwd / "sub" / ".." / ".." / "..")), 400)
    (tmp_path / "home" / "work-2").mkdir()  # a sibling whose name starts like the root's
    assert "outside the workspace root" in one_sentence(m.start(cwd=str(tmp_path / "home" / "work-2")), 400)
    assert "NUL" in one_sentence(m.start(cwd=str(cwd) + "/\u0000x"), 400)
    # inside, also through a link that stays inside: the real path is the session's project
    r = m.start("go", cwd=str(cwd / "link-in"))
    assert r.status_code == 201, r.text
    s = m.wait_status(r.json()["session_id"], "waiting")
    assert s["project"] == str(cwd / "sub")
    assert len(claude_pids(m.where.home)) == 1  # nothing was started for the refused ones
    m.api.check()


def test_bypass_permissions_is_refused_by_default(managed: Callable[..., Managed]) -> None:
    m = managed([])
    error = one_sentence(m.start(permission_mode="bypassPermissions"), 400)
    assert "--allow-bypass-permissions" in error
    assert m.http.get("/all").json()["sessions"] == []
    assert claude_pids(m.where.home) == set()


def test_bypass_permissions_with_the_server_allowing_it(managed: Callable[..., Managed]) -> None:
    # as root, Claude Code refuses bypassPermissions unless IS_SANDBOX=1 (../shared/claude-code-offline.md)
    m = managed([], flags=["--allow-bypass-permissions"], env={"IS_SANDBOX": "1"})
    m.api.add(Turn.tool_use("Write", {"file_path": str(m.where.cwd / "free.txt"), "content": "x"}), Turn.text("done"))
    sid = m.started("write freely", permission_mode="bypassPermissions")
    s = m.wait_status(sid, "waiting")
    assert s["pending"] is None
    assert (m.where.cwd / "free.txt").exists()  # no question asked
    assert any("bypassPermissions permissions" in x["content"] for x in m.logs(sid, kind="system"))
    assert m.logs(sid, kind="permission") == []
    m.api.check()


BAD_BODIES: list[tuple[Any, str]] = [
    ({"cwd": "/tmp"}, "prompt is required"),
    ({"prompt": "  ", "cwd": "/tmp"}, "prompt must not be empty"),
    ({"prompt": 5, "cwd": "/tmp"}, "prompt must be a string"),
    ({"prompt": "x"}, "cwd is required"),
    ({"prompt": "x", "cwd": "/tmp", "promt": "typo"}, "unknown field 'promt'"),
    ({"prompt": "x", "cwd": "/tmp", "max_cost_usd": "1"}, "max_cost_usd must be a number"),
    ({"prompt": "x", "cwd": "/tmp", "max_cost_usd": -1}, "max_cost_usd must be a number"),
    ({"prompt": "x", "cwd": "/tmp", "max_cost_usd": True}, "max_cost_usd must be a number"),
    ({"prompt": "x", "cwd": "/tmp", "max_turns": "3"}, "max_turns must be an integer"),
    ({"prompt": "x", "cwd": "/tmp", "max_turns": 0}, "max_turns must be between"),
    ({"prompt": "x", "cwd": "/tmp", "allowed_tools": 5}, "allowed_tools must be a list"),
    ({"prompt": "x", "cwd": "/tmp", "allowed_tools": [""]}, "allowed_tools must be a list"),
    ({"prompt": "x", "cwd": "/tmp", "permission_mode": "yolo"}, "permission_mode must be one of"),
    ({"prompt": "x", "cwd": "/tmp", "name": ""}, "name must not be empty"),
    ({"prompt": "x", "cwd": "/tmp", "name": 3}, "name must be a string"),
    ({"prompt": "x", "cwd": "/tmp", "model": ["a"]}, "model must be a string"),
    ({"prompt": "x", "cwd": "/tmp", "model": "sonnet\u0000"}, "model"),
    ({"prompt": "x", "cwd": "/tmp", "system_prompt": "a\u0000b"}, "system_prompt"),
    ([1, 2], "must be a JSON object"),
]


def test_bad_bodies_are_400_with_one_sentence_and_start_nothing(managed: Callable[..., Managed]) -> None:
    m = managed([])
    for body, expected in BAD_BODIES:
        r = m.http.post("/managed", json=body)
        error = one_sentence(r, 400)
        assert expected in error, (body, error)
    error = one_sentence(m.http.post("/managed", content=b"{nope", headers={"Content-Type": "application/json"}), 400)
    assert "not valid JSON" in error
    assert m.http.get("/all").json()["sessions"] == []
    assert claude_pids(m.where.home) == set()


def test_unknown_ids_are_404_on_every_action(managed: Callable[..., Managed]) -> None:
    m = managed([])
    for sid in (str(uuid.uuid4()), "not-a-session"):
        calls = [
            m.http.post(f"/sessions/{sid}/messages", json={"text": "hi"}),
            m.http.post(f"/sessions/{sid}/interrupt", json={}),
            m.http.post(f"/sessions/{sid}/stop", json={}),
            m.http.post(f"/sessions/{sid}/resume", json={"text": "hi"}),
            m.http.post(f"/sessions/{sid}/approve", json={"pending_id": "toolu_1", "decision": "allow"}),
            m.http.put(f"/sessions/{sid}/budget", json={"max_cost_usd": 1}),
            m.http.get(f"/sessions/{sid}/logs"),
            m.http.get(f"/sessions/{sid}/logs", params={"follow": "1"}),
            m.http.get(f"/sessions/{sid}"),
            m.http.delete(f"/sessions/{sid}"),
        ]
        for r in calls:
            one_sentence(r, 404)


# --- the spend cap -------------------------------------------------------------------------------

#: $0.45 at claude-sonnet-4-5's $3 / $15 per million
EXPENSIVE = Usage(100_000, 10_000)


def test_a_turn_past_the_cap_stops_the_process_budget_reached(managed: Callable[..., Managed]) -> None:
    m = managed([Turn.text("that was expensive", usage=EXPENSIVE), Turn.text("with more money", usage=Usage(100, 10))])
    sid = m.started("spend", max_cost_usd=0.01)
    s = m.wait_status(sid, "ended")
    assert s["status_reason"] == "budget reached"
    assert s["managed"]["state"] == "stopped" and s["managed"]["pid"] is None
    assert s["managed"]["max_cost_usd"] == 0.01 and s["max_cost_usd"] == 0.01
    assert s["managed"]["total_cost_usd"] == pytest.approx(0.45, rel=0.01)
    assert s["controls"] == ["resume", "delete"]
    assert claude_pids(m.where.home) == set()
    assert any("budget reached" in x["content"] for x in m.logs(sid, kind="system"))
    # resuming past the cap would spend again at once: refused until the cap is raised
    assert "budget" in one_sentence(m.http.post(f"/sessions/{sid}/resume", json={"text": "more"}), 409)
    assert len(m.api.agent_requests()) == 1
    assert m.http.put(f"/sessions/{sid}/budget", json={"max_cost_usd": 5}).status_code == 200
    assert m.http.post(f"/sessions/{sid}/resume", json={"text": "more"}).status_code == 200
    s = m.wait_session(sid, lambda s: s["status"] == "waiting" and s["managed"]["num_turns"] == 2, "the turn after the raise")
    assert s["max_cost_usd"] == 5 and s["managed"]["max_cost_usd"] == 5
    m.api.check()


def test_lowering_the_budget_of_a_running_session_stops_it(managed: Callable[..., Managed]) -> None:
    m = managed([Turn.text("cheap", usage=Usage(1_000, 100))])
    sid = m.started("spend a little")
    s = m.wait_status(sid, "waiting")
    assert s["managed"]["max_cost_usd"] == 10.0  # --default-max-cost-usd
    pid = s["managed"]["pid"]
    r = m.http.put(f"/sessions/{sid}/budget", json={"max_cost_usd": 0.001})
    assert r.status_code == 200, r.text
    s = m.wait_status(sid, "ended")
    assert s["status_reason"] == "budget reached" and s["managed"]["state"] == "stopped"
    assert s["max_cost_usd"] == 0.001
    wait_for(lambda: not alive(pid), 10, "the process to be gone")
    assert m.detail(sid)["budget"]["changes"][0]["max_cost_usd"] == 0.001


def test_max_turns_ends_the_turn_with_its_reason(managed: Callable[..., Managed]) -> None:
    m = managed([Turn.tool_use("Bash", {"command": "echo hi", "description": "say hi"}), Turn.text("never asked")])
    sid = m.started("run something", max_turns=1)
    s = m.wait_status(sid, "waiting")
    assert s["status_reason"] == "max turns reached"
    assert s["managed"]["state"] == "waiting" and s["managed"]["pid"] is not None
    assert len(m.api.agent_requests()) == 1
    assert m.detail(sid)["managed_detail"]["max_turns"] == 1


def test_concurrent_starts_and_resumes_keep_the_limits(managed: Callable[..., Managed]) -> None:
    m = managed([Turn.text(f"answer {i}") for i in range(6)], flags=["--max-managed", "2"])
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: m.start(f"p{i}", name="same" if i < 2 else None), range(4)))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(201) == 2, [r.text for r in answers]
    assert set(codes) <= {201, 409, 429}
    named = [r for r in answers[:2] if r.status_code == 201]
    assert len(named) <= 1  # one live "same" at most
    started = [r.json()["session_id"] for r in answers if r.status_code == 201]
    for sid in started:
        m.wait_status(sid, "waiting")
    assert len(claude_pids(m.where.home)) == 2
    sid = started[0]
    assert m.http.post(f"/sessions/{sid}/stop", json={}).status_code == 200
    m.wait_status(sid, "ended")
    with ThreadPoolExecutor(3) as pool:
        resumed = list(pool.map(lambda _: m.http.post(f"/sessions/{sid}/resume", json={"text": "again"}), range(3)))
    assert sorted(r.status_code for r in resumed) == [200, 409, 409], [r.text for r in resumed]
    m.wait_session(sid, lambda s: s["status"] == "waiting" and s["managed"]["num_turns"] == 2, "the resumed turn")
    assert len(claude_pids(m.where.home)) == 2


def test_bad_bodies_on_a_sessions_actions(managed: Callable[..., Managed]) -> None:
    m = managed([Turn.text("hi")])
    sid = m.started("hello")
    m.wait_status(sid, "waiting")
    cases: list[tuple[str, str, Any, str]] = [
        ("POST", "messages", {}, "text is required"),
        ("POST", "messages", {"text": 5}, "text must be a string"),
        ("POST", "messages", {"text": " "}, "text must not be empty"),
        ("POST", "messages", [1], "must be a JSON object"),
        ("POST", "resume", {"text": 5}, "text must be a string"),
        ("POST", "interrupt", "nope", "must be a JSON object"),
        ("POST", "approve", {"pending_id": "x", "decision": "maybe"}, 'decision must be "allow" or "deny"'),
        ("POST", "approve", {"decision": "allow"}, "pending_id is required"),
        ("PUT", "budget", {"max_cost_usd": "x"}, "max_cost_usd must be a number"),
    ]
    for method, action, body, expected in cases:
        r = m.http.request(method, f"/sessions/{sid}/{action}", json=body)
        assert expected in one_sentence(r, 400), (action, body)
    r = m.http.post(f"/sessions/{sid}/messages", content=b"text=hi", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415, r.text
    s = m.session(sid)
    assert s is not None and s["status"] == "waiting" and s["managed"]["num_turns"] == 1
