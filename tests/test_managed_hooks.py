"""A managed session on a machine where sessionwatch's hooks are installed
too: the process's hooks and its stream-json are one row, and away mode
does not hold its permission request in the hook (the request waits on
stream-json, where ``POST /approve`` answers it)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.conftest import wait_for
from tests.fakeapi import Turn, Usage
from tests.test_managed import Managed, managed  # noqa: F401 - the fixture

EVENTS = ("UserPromptSubmit", "PreToolUse", "PermissionRequest", "PostToolUse", "Stop", "SessionEnd")


def test_away_mode_leaves_a_managed_permission_request_to_stream_json(managed: Callable[..., Managed]) -> None:  # noqa: F811
    m = managed([])
    target = m.where.cwd / "out.txt"
    m.api.reset([Turn.tool_use("Write", {"file_path": str(target), "content": "yes\n"}, Usage(100, 20)), Turn.text("written")])
    hooks = [{"type": "http", "url": m.srv.url + "/hooks", "timeout": 60}]
    m.where.write_settings({"hooks": {e: [{"hooks": hooks}] for e in EVENTS}})
    m.http.put("/away", json={"on": True}).raise_for_status()
    r = m.start("write the file")
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    s = m.wait_session(sid, lambda s: s["status"] == "needs_approval", "the Write to need approval")
    assert s["pending"]["tool"] == "Write" and s["pending"]["answerable"] is True
    assert "approve" in s["controls"]
    assert m.http.get("/away").json()["waiting"] == []  # no hook is held for it
    r = m.http.post(f"/sessions/{sid}/approve", json={"pending_id": s["pending"]["id"], "decision": "allow"})
    assert r.status_code == 200, r.text
    m.wait_session(sid, lambda s: s["status"] == "waiting", "the turn to end")
    assert target.read_text() == "yes\n"
    # the hooks reached the server too: they are the same row, not a second one
    assert [x["id"] for x in m.http.get("/all").json()["sessions"]].count(sid) == 1
    wait_for(lambda: httpx.get(m.srv.url + f"/sessions/{sid}").json()["approvals"], 10, "the approval in the detail")
