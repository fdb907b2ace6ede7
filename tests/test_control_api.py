"""The control routes on a real server: PUT/GET /away, POST /sessions/{id}/approve,
PUT /sessions/{id}/budget, what GET /sessions/{id} shows, and who is recorded.

Hook events go through POST /hooks (a minimal route in control/api.py until
the hooks source's own lands; both answer with ``Control.answer``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server, wait_for

BIG = "258c7280-ae70-4798-800f-63464d01a85d"  # $12.23
SMALL = "d6e0bada-1959-4eec-a9d2-0bfade768d8f"  # $0.23
WRITE = {"file_path": "/w/a.txt", "content": "x"}


@pytest.fixture
def srv(projects: Path, sw_server: Callable[..., Server]) -> Iterator[Server]:
    yield sw_server(extra_args=["--max-cost-usd", "5", "--approval-wait-s", "30"])


def post_hook(srv: Server, name: str, sid: str, **fields: Any) -> httpx.Response:
    body = {"hook_event_name": name, "session_id": sid, "cwd": "/w", **fields}
    return httpx.post(srv.url + "/hooks", json=body, timeout=60)


def in_thread(fn: Callable[[], httpx.Response]) -> tuple[threading.Thread, list[httpx.Response]]:
    out: list[httpx.Response] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    return t, out


def waiting_id(srv: Server, sid: str) -> str:
    def find() -> str | None:
        for w in httpx.get(srv.url + "/away").json()["waiting"]:
            if w["session_id"] == sid:
                return str(w["pending_id"])
        return None

    return str(wait_for(find, 10, "a prompt waiting in GET /away"))


def test_away_switch_is_recorded_with_who_and_where_and_checked(srv: Server) -> None:
    assert httpx.get(srv.url + "/away").json() == {"on": False, "changed_at": None, "by": None, "approval_wait_s": 30.0, "waiting": []}
    r = httpx.put(srv.url + "/away", json={"on": True}, headers={"Origin": srv.url, "User-Agent": "test-agent/1"})
    assert r.status_code == 200, r.text
    got = httpx.get(srv.url + "/away").json()
    assert got["on"] is True and isinstance(got["changed_at"], float)
    assert got["by"] == {"who": "local", "address": "127.0.0.1", "origin": srv.url, "user_agent": "test-agent/1"}
    for body in ({}, {"on": "yes"}, {"on": 1}):
        r = httpx.put(srv.url + "/away", json=body)
        assert (r.status_code, r.json()) == (400, {"error": "on must be true or false"})
    # kept in the store: a restarted server is still away
    srv.stop()
    srv.start()
    assert httpx.get(srv.url + "/away").json()["on"] is True


def test_approve_answers_the_waiting_hook_and_shows_in_the_detail(srv: Server) -> None:
    assert post_hook(srv, "PermissionRequest", SMALL, tool_name="Write", tool_input=WRITE).json() == {}  # away off: at once
    httpx.put(srv.url + "/away", json={"on": True}).raise_for_status()
    t, out = in_thread(lambda: post_hook(srv, "PermissionRequest", SMALL, tool_name="Write", tool_input=WRITE))
    pid = waiting_id(srv, SMALL)
    url = srv.url + f"/sessions/{SMALL}/approve"
    for body, message in (
        ({"decision": "allow"}, "pending_id is required"),
        ({"pending_id": pid, "decision": "maybe"}, 'decision must be "allow" or "deny"'),
        ({"pending_id": pid, "decision": "deny", "message": 5}, "message must be a string"),
    ):
        r = httpx.post(url, json=body)
        assert (r.status_code, r.json()) == (400, {"error": message})
    r = httpx.post(url, json={"pending_id": pid, "decision": "deny", "message": "not today"}, headers={"Origin": srv.url})
    assert r.status_code == 200 and r.json()["decision"] == "deny", r.text
    t.join(10)
    assert out[0].json() == {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "deny", "message": "not today"}}}
    r = httpx.post(url, json={"pending_id": pid, "decision": "allow"})
    assert (r.status_code, r.json()) == (409, {"error": "that prompt is no longer pending (already answered: deny)"})
    r = httpx.post(srv.url + "/sessions/nope/approve", json={"pending_id": pid, "decision": "allow"})
    assert (r.status_code, r.json()) == (404, {"error": "no session with id 'nope'"})
    detail = httpx.get(srv.url + f"/sessions/{SMALL}").json()
    [rec] = detail["approvals"]
    assert rec["decision"] == "deny" and rec["message"] == "not today" and rec["tool"] == "Write" and rec["pending_id"] == pid
    assert rec["by"]["who"] == "local" and rec["by"]["address"] == "127.0.0.1" and rec["by"]["origin"] == srv.url
    assert detail["budget"]["max_cost_usd"] == 5.0 and detail["waiting_approval"] == []


def test_budget_put_caps_the_session_and_is_recorded(srv: Server) -> None:
    pre = {"tool_name": "Bash", "tool_input": {"command": "ls"}}
    deny = post_hook(srv, "PreToolUse", BIG, **pre).json()
    assert deny["hookSpecificOutput"]["permissionDecisionReason"] == "sessionwatch: this session reached its $5.00 budget"
    assert post_hook(srv, "UserPromptSubmit", BIG).json() == {"decision": "block", "reason": "sessionwatch: this session reached its $5.00 budget"}
    url = srv.url + f"/sessions/{BIG}/budget"
    for body, status in (({}, 400), ({"max_cost_usd": "5"}, 400), ({"max_cost_usd": -1}, 400), ({"max_cost_usd": True}, 400)):
        assert httpx.put(url, json=body).status_code == status
    assert httpx.put(srv.url + "/sessions/nope/budget", json={"max_cost_usd": 1}).status_code == 404
    r = httpx.put(url, json={"max_cost_usd": 50}, headers={"User-Agent": "ops-script"})
    assert r.status_code == 200 and r.json()["max_cost_usd"] == 50.0, r.text
    assert post_hook(srv, "PreToolUse", BIG, **pre).json() == {}
    httpx.put(url, json={"max_cost_usd": None}).raise_for_status()
    assert "$5.00 budget" in post_hook(srv, "PreToolUse", BIG, **pre).text
    budget = httpx.get(srv.url + f"/sessions/{BIG}").json()["budget"]
    assert [c["max_cost_usd"] for c in budget["changes"]] == [50.0, None]
    assert budget["changes"][0]["by"]["user_agent"] == "ops-script"


def test_with_a_token_the_routes_need_it_and_record_admin(projects: Path, sw_server: Callable[..., Server]) -> None:
    srv = sw_server(extra_args=["--token", "s3cret"])
    assert httpx.put(srv.url + "/away", json={"on": True}).status_code == 401
    assert httpx.get(srv.url + "/away").status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    assert httpx.put(srv.url + "/away", json={"on": True}, headers=auth).json()["by"]["who"] == "admin"
    assert httpx.put(srv.url + f"/sessions/{SMALL}/budget", json={"max_cost_usd": 1}, headers=auth).json()["changes"][0]["by"]["who"] == "admin"
