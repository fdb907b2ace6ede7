"""Managed sessions against the real Claude Code CLI (tests/claude_cli.py) and
a scripted fake Messages API (tests/fakeapi.py), through a real ``serve``
(tests/managed_kit.py): turns and figures, permission requests answered from
the API, interrupt, stop, resume and delete.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.fakeapi import Block, Turn, Usage
from tests.managed_kit import MODEL, Managed, alive, claude_pids, managed  # noqa: F401  (MODEL, Managed, managed: tests/test_web_managed.py imports them from here)
from tests.sse import SSEClient


def test_start_two_messages_two_turns_one_row_exact_tokens_and_cost(managed: Callable[..., Managed]) -> None:
    m = managed([Turn.text("first answer", usage=Usage(1200, 300)), Turn.text("second answer", usage=Usage(800, 100))])
    stream = SSEClient(m.srv.url + "/stream").start()
    assert stream.next().event == "init"
    r = m.start("say hello", name="greeter")
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    assert r.json()["name"] == "greeter"
    created = stream.next(timeout=10)
    assert created.event == "session-created"
    assert created.data["sessions"][0]["id"] == sid
    assert created.data["sessions"][0]["managed"]["name"] == "greeter"
    m.wait_session(sid, lambda s: s["status"] == "waiting", "the first turn to end")
    # the id POST /managed answered is the CLI's own (its system/init says so)
    assert any(x["content"].startswith(f"session {sid} started") for x in m.logs(sid, kind="system"))
    r = m.http.post(f"/sessions/{sid}/messages", json={"text": "again"})
    assert r.status_code == 202, r.text
    s = m.wait_session(sid, lambda s: s["managed"]["num_turns"] == 2 and s["status"] == "waiting", "the second turn to end")
    # one row: the transcript's tokens (final usage per response), the process's figures
    assert [x["id"] for x in m.http.get("/all").json()["sessions"]].count(sid) == 1
    assert m.where.transcript(sid).exists()
    s = m.wait_session(sid, lambda s: s["tokens"]["input"] == 2000, "the transcript's tokens")
    assert s["tokens"] == {"input": 2000, "output": 400, "cache_creation": 0, "cache_read": 0}
    cli_cost = s["managed"]["total_cost_usd"]
    assert cli_cost is not None and cli_cost > 0
    assert s["cost_usd"] == pytest.approx(cli_cost, rel=0.01)
    assert s["controls"] == ["send", "stop"]
    assert s["user"] == "local" and created.data["sessions"][0]["user"] == "local"  # who started it, before and after the transcript
    kinds = [x["kind"] for x in m.logs(sid) if x["kind"] != "raw"]
    assert kinds.count("prompt") == 2 and kinds.count("reply") == 2 and kinds.count("result") == 2
    stream.stop()


# --- permission requests (can_use_tool) ---------------------------------------------------------


def write_turn(cwd: Path, name: str = "out.txt") -> Turn:
    return Turn.tool_use("Write", {"file_path": str(cwd / name), "content": "written by the model\n"}, text="writing")


def asked(m: Managed, sid: str) -> dict:
    return m.wait_session(sid, lambda s: s["status"] == "needs_approval" and s["pending"] is not None, "a permission request")


def test_write_needs_approval_allow_writes_the_file_and_records_who(managed: Callable[..., Managed], tmp_path: Path) -> None:
    m = managed([])
    m.api.add(write_turn(m.where.cwd), Turn.text("done"))
    sid = m.started("write a file")
    s = asked(m, sid)
    p = s["pending"]
    assert p["kind"] == "permission" and p["tool"] == "Write" and p["answerable"] is True
    assert p["summary"] == "Write: out.txt" and "\n" not in p["summary"]
    assert s["status_reason"] == "permission: Write"
    assert "approve" in s["controls"]
    assert not (m.where.cwd / "out.txt").exists()
    r = m.http.post(f"/sessions/{sid}/approve", json={"pending_id": p["id"], "decision": "allow"})
    assert r.status_code == 200, r.text
    assert r.json()["decision"] == "allow" and r.json()["tool"] == "Write"
    s = m.wait_status(sid, "waiting")
    assert s["pending"] is None and "approve" not in s["controls"]
    assert (m.where.cwd / "out.txt").read_text() == "written by the model\n"
    approvals = m.detail(sid)["approvals"]
    assert [(a["pending_id"], a["decision"], a["tool"], a["by"]["who"]) for a in approvals] == [(p["id"], "allow", "Write", "local")]
    assert approvals[0]["by"]["address"] == "127.0.0.1"
    # the tool ran: the model got its result, not an error
    result = m.api.agent_requests()[1].tool_results()
    assert len(result) == 1 and not result[0].get("is_error")
    # the same id again: no longer pending
    r = m.http.post(f"/sessions/{sid}/approve", json={"pending_id": p["id"], "decision": "allow"})
    assert r.status_code == 409, r.text
    assert "no longer pending" in r.json()["error"] or "no prompt" in r.json()["error"]
    m.api.check()


def test_write_denied_with_a_message_writes_nothing_and_the_model_reads_the_message(managed: Callable[..., Managed]) -> None:
    m = managed([])
    m.api.add(write_turn(m.where.cwd), Turn.text("understood"))
    sid = m.started("write a file")
    p = asked(m, sid)["pending"]
    r = m.http.post(f"/sessions/{sid}/approve", json={"pending_id": p["id"], "decision": "deny", "message": "not in this folder, please"})
    assert r.status_code == 200, r.text
    m.wait_status(sid, "waiting")
    assert not (m.where.cwd / "out.txt").exists()
    results = m.api.agent_requests()[1].tool_results()
    assert len(results) == 1 and results[0].get("is_error") is True
    assert "not in this folder, please" in str(results[0].get("content"))
    approvals = m.detail(sid)["approvals"]
    assert [(a["decision"], a["message"]) for a in approvals] == [("deny", "not in this folder, please")]
    logs = [x for x in m.logs(sid, kind="permission") if x["source"] == "stdin"]
    assert [x["content"] for x in logs] == ["denied by local: Write: out.txt"]
    m.api.check()


def test_an_unanswered_request_keeps_waiting_and_never_allows_itself(managed: Callable[..., Managed]) -> None:
    m = managed([])
    m.api.add(write_turn(m.where.cwd), Turn.text("done"))
    sid = m.started("write a file")
    asked(m, sid)
    requests = len(m.api.agent_requests())
    assert requests == 1
    # For a few seconds: the row stays needs_approval and the CLI asks the API nothing more
    # (an answer, even a timeout's, would send the tool's result in a next request).
    held = 0

    def moved() -> bool:
        nonlocal held
        s = m.session(sid)
        assert s is not None and s["status"] == "needs_approval", s
        assert len(m.api.agent_requests()) == requests
        held += 1
        return False

    with pytest.raises(AssertionError, match="timed out"):
        wait_for(moved, 4, "anything to change")
    assert held > 10
    assert not (m.where.cwd / "out.txt").exists()
    # still answerable afterwards
    p = m.session(sid)["pending"]  # type: ignore[index]
    r = m.http.post(f"/sessions/{sid}/approve", json={"pending_id": p["id"], "decision": "allow"})
    assert r.status_code == 200, r.text
    m.wait_status(sid, "waiting")
    assert (m.where.cwd / "out.txt").exists()


# --- interrupt, stop, resume, delete ----------------------------------------------------------------


def test_interrupt_ends_the_turn_and_keeps_the_process(managed: Callable[..., Managed]) -> None:
    gate = threading.Event()
    m = managed([Turn.text("slow answer", gate=gate), Turn.text("next answer")])
    try:
        sid = m.started("take your time")
        m.api.wait_requests(1)
        s = m.wait_status(sid, "running")
        assert "interrupt" in s["controls"]
        pid = s["managed"]["pid"]
        assert pid in claude_pids(m.where.home)
        r = m.http.post(f"/sessions/{sid}/interrupt", json={})
        assert r.status_code == 200, r.text
        assert r.json() == {"session_id": sid, "interrupted": True}
        s = m.wait_status(sid, "waiting")
        assert s["managed"]["state"] == "waiting" and s["managed"]["pid"] == pid
        assert s["status_reason"] == "turn interrupted"
        assert "interrupt" not in s["controls"] and s["controls"] == ["send", "stop"]
        assert alive(pid)
        actions = [a["action"] for a in m.detail(sid)["actions"]]
        assert actions == ["start", "interrupt"]
    finally:
        gate.set()
    # the process still takes messages
    r = m.http.post(f"/sessions/{sid}/messages", json={"text": "go on"})
    assert r.status_code == 202, r.text
    m.wait_session(sid, lambda s: s["status"] == "waiting" and s["managed"]["num_turns"] >= 2, "the next turn")
    assert [x["content"] for x in m.logs(sid, kind="reply")][-1] == "next answer"


def test_stop_resume_cost_adds_on_and_delete(managed: Callable[..., Managed]) -> None:
    m = managed([Turn.text("first", usage=Usage(10_000, 1_000)), Turn.text("after resume", usage=Usage(20_000, 2_000))])
    sid = m.started("one")
    s = m.wait_status(sid, "waiting")
    pid = s["managed"]["pid"]
    first_cost = s["managed"]["total_cost_usd"]
    assert first_cost == pytest.approx((10_000 * 3 + 1_000 * 15) / 1e6, rel=0.01)
    r = m.http.delete(f"/sessions/{sid}")
    assert r.status_code == 409 and "stop it first" in r.json()["error"]
    r = m.http.post(f"/sessions/{sid}/stop", json={})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "stopped"
    s = m.wait_status(sid, "ended")
    assert s["managed"]["state"] == "stopped" and s["managed"]["pid"] is None
    assert s["status_reason"] == "stopped by local"
    assert s["controls"] == ["resume", "delete"]
    assert pid not in claude_pids() and not alive(pid)
    # a stopped session takes no message and no interrupt
    r = m.http.post(f"/sessions/{sid}/messages", json={"text": "hello?"})
    assert r.status_code == 409 and "resume" in r.json()["error"]
    assert m.http.post(f"/sessions/{sid}/interrupt", json={}).status_code == 409
    assert m.http.post(f"/sessions/{sid}/stop", json={}).status_code == 409
    # resume: the same id, the CLI's --resume, the new turn's cost on top of the old
    r = m.http.post(f"/sessions/{sid}/resume", json={"text": "two"})
    assert r.status_code == 200, r.text
    assert r.json()["session_id"] == sid
    s = m.wait_session(sid, lambda s: s["status"] == "waiting" and s["managed"]["num_turns"] == 2, "the resumed turn")
    assert s["managed"]["pid"] not in (None, pid)
    started = [x["content"] for x in m.logs(sid, kind="system") if x["content"].startswith("started:")]
    assert len(started) == 2 and f"--resume={sid}" in started[1] and f"--session-id={sid}" in started[0]
    second = (20_000 * 3 + 2_000 * 15) / 1e6
    assert s["managed"]["total_cost_usd"] == pytest.approx(first_cost + second, rel=0.01)
    s = m.wait_session(sid, lambda s: s["tokens"]["input"] == 30_000, "the transcript's tokens of both processes")
    assert s["cost_usd"] == pytest.approx(s["managed"]["total_cost_usd"], rel=0.01)
    assert r.status_code == 200
    assert m.http.post(f"/sessions/{sid}/resume", json={}).status_code == 409  # running already
    m.http.post(f"/sessions/{sid}/stop", json={})
    m.wait_status(sid, "ended")
    # delete: the record and its logs go; the transcript is Claude Code's, so the row stays, unmanaged
    assert m.where.transcript(sid).exists()
    r = m.http.delete(f"/sessions/{sid}")
    assert r.status_code == 200, r.text
    assert m.http.get(f"/sessions/{sid}/logs").status_code == 404
    assert m.http.post(f"/sessions/{sid}/resume", json={}).status_code == 404
    s = m.session(sid)
    assert s is not None and s["managed"] is None and s["tokens"]["input"] == 30_000
    assert "resume" not in s["controls"] and "delete" not in s["controls"]
    assert [a["action"] for a in m.detail(sid).get("actions", [])] in ([], ["start", "stop", "resume", "stop", "delete"])
    m.api.check()


def test_a_message_right_after_start_is_queued_not_refused(managed: Callable[..., Managed]) -> None:
    m = managed([Turn.text("first"), Turn.text("second")])
    sid = m.started("one")
    r = m.http.post(f"/sessions/{sid}/messages", json={"text": "two"})
    assert r.status_code == 202, r.text
    s = m.wait_session(sid, lambda s: s["status"] == "waiting" and s["managed"]["num_turns"] == 2, "both turns")
    assert [x["content"] for x in m.logs(sid, kind="prompt")] == ["one", "two"]
    assert s["status"] == "waiting"


def test_unnamed_sessions_get_free_names(managed: Callable[..., Managed]) -> None:
    m = managed([Turn.text(f"answer {i}") for i in range(3)])
    a = m.started("a")
    b = m.started("b")
    names = {m.wait_status(sid, "waiting")["managed"]["name"] for sid in (a, b)}
    assert len(names) == 2
    m.http.post(f"/sessions/{a}/stop", json={})
    m.wait_status(a, "ended")
    assert m.http.delete(f"/sessions/{a}").status_code == 200
    r = m.start("c")  # no name: never one a live session has
    assert r.status_code == 201, r.text
    assert r.json()["name"] not in {m.session(b)["managed"]["name"]}  # type: ignore[index]


def test_a_crashed_process_is_failed_and_a_session_without_transcript_goes_on_delete(managed: Callable[..., Managed]) -> None:
    gate = threading.Event()
    m = managed([Turn.text("never", gate=gate)])
    try:
        sid = m.started("crash")
        m.api.wait_requests(1)
        pid = m.wait_status(sid, "running")["managed"]["pid"]
        os.kill(pid, signal.SIGKILL)
        s = m.wait_status(sid, "failed")
        assert s["status_reason"] == "process killed by signal 9"
        assert s["managed"]["state"] == "error" and s["managed"]["exit_code"] == -9
        assert s["controls"] == ["resume", "delete"]
    finally:
        gate.set()
    # a CLI that exits at once, before any transcript: the row is the record's alone
    m2 = managed([], flags=["--claude-bin", "/bin/false"], name="false")
    sid = m2.started("nothing")
    s = m2.wait_status(sid, "failed")
    assert s["status_reason"] == "process exited 1" and s["managed"]["exit_code"] == 1
    assert not m2.where.transcripts()
    assert m2.http.delete(f"/sessions/{sid}").status_code == 200
    assert m2.session(sid) is None
    assert m2.http.get(f"/sessions/{sid}").status_code == 404


def test_two_requests_in_one_response_are_answered_one_by_one(managed: Callable[..., Managed]) -> None:
    m = managed([])
    cwd = m.where.cwd
    m.api.add(
        Turn([Block("tool_use", name="Write", input={"file_path": str(cwd / "one.txt"), "content": "1"}, id="toolu_one"),
              Block("tool_use", name="Write", input={"file_path": str(cwd / "two.txt"), "content": "2"}, id="toolu_two")]),
        Turn.text("done"),
    )  # fmt: skip
    sid = m.started("write two files")
    first = asked(m, sid)["pending"]
    assert first["summary"] == "Write: one.txt"
    assert m.http.post(f"/sessions/{sid}/approve", json={"pending_id": first["id"], "decision": "allow"}).status_code == 200
    s = m.wait_session(sid, lambda s: (s["pending"] or {}).get("summary") == "Write: two.txt", "the second request")
    assert s["status"] == "needs_approval" and "approve" in s["controls"]
    r = m.http.post(f"/sessions/{sid}/approve", json={"pending_id": s["pending"]["id"], "decision": "deny"})
    assert r.status_code == 200, r.text
    m.wait_status(sid, "waiting")
    assert (cwd / "one.txt").exists() and not (cwd / "two.txt").exists()
    results = {r["tool_use_id"]: r for r in m.api.agent_requests()[1].tool_results()}
    assert not results["toolu_one"].get("is_error") and results["toolu_two"]["is_error"] is True
    assert [a["decision"] for a in m.detail(sid)["approvals"]] == ["allow", "deny"]


def test_stop_while_a_request_waits_ends_the_process_and_the_request(managed: Callable[..., Managed]) -> None:
    m = managed([])
    m.api.add(write_turn(m.where.cwd))
    sid = m.started("write a file")
    p = asked(m, sid)["pending"]
    pid = m.session(sid)["managed"]["pid"]  # type: ignore[index]
    assert m.http.post(f"/sessions/{sid}/stop", json={}).status_code == 200
    s = m.wait_status(sid, "ended")
    assert s["pending"] is None and "approve" not in s["controls"]
    assert not alive(pid)
    r = m.http.post(f"/sessions/{sid}/approve", json={"pending_id": p["id"], "decision": "allow"})
    assert r.status_code == 409, r.text
    assert not (m.where.cwd / "out.txt").exists()
    m.api.check()
