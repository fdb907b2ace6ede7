"""Replicas on one PostgreSQL database act as one server (relay.py): an
approval, a managed session's message, interrupt, stop, resume or delete, its
logs, and an agent's long poll work through any replica, whichever replica
holds the prompt, runs the process or has the agent waiting; when the replica
that ran a managed session dies, another takes it over.

Real parts: real ``serve`` replicas on a real PostgreSQL, the real Claude Code
CLI against the scripted fake Messages API (tests/fakeapi.py)."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .claude_cli import ClaudeHome, ClaudeRun, claude_bin, clean_env, run_claude
from .conftest import Server, wait_for
from .fakeapi import FakeAPI, Turn, Usage
from .managed_kit import MODEL, alive, claude_pids, wait_row
from .sse import SSEClient
from .test_agents import a_session
from .test_replicas import pair, until  # noqa: F401  (pair: a fixture)

HOOK_EVENTS = ("UserPromptSubmit", "PreToolUse", "PermissionRequest", "PostToolUse", "PostToolUseFailure", "Stop", "SessionEnd")


def sessions(srv: Server) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in httpx.get(srv.url + "/all", timeout=10).json()["sessions"]}


def session(srv: Server, sid: str) -> dict[str, Any] | None:
    return sessions(srv).get(sid)


def wait_session(srv: Server, sid: str, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60) -> dict[str, Any]:
    return wait_row(lambda: session(srv, sid), predicate, what, timeout, lambda: f"on {srv.url}")


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    with FakeAPI() as fake:
        yield fake


def replica(sw_server: Callable[..., Server], tmp_path: Path, pg_url: str, name: str, projects: Path, env: dict[str, str], *flags: str) -> Server:
    projects.mkdir(parents=True, exist_ok=True)
    return sw_server(
        projects_dir=projects, db=pg_url, env=env,
        extra_args=["--claude-dir", str(tmp_path / f"claude-{name}"), "--claude-bin", str(claude_bin()), "--idle-after-s", "600", *flags],
    )  # fmt: skip


def test_a_prompt_held_by_one_replica_is_listed_and_answered_through_another(
    tmp_path: Path, sw_server: Callable[..., Server], pg_url: str, api: FakeAPI
) -> None:
    """Claude Code's hooks go to replica a, which holds the Write's
    PermissionRequest (away mode, set on b); b lists it in ``GET /away`` and
    its approval is carried out by a: the CLI writes the file. A second answer
    through b is refused (409), as a would refuse it."""
    where = ClaudeHome.create(tmp_path)
    env = clean_env(where.home, api.url)
    a = replica(sw_server, tmp_path, pg_url, "a", where.projects_dir, env, "--approval-wait-s", "90")
    b = replica(sw_server, tmp_path, pg_url, "b", tmp_path / "empty", env, "--approval-wait-s", "90")
    hooks = [{"type": "http", "url": a.url + "/hooks", "timeout": 120}]
    where.write_settings({"hooks": {e: [{"hooks": hooks}] for e in HOOK_EVENTS}})
    httpx.put(b.url + "/away", json={"on": True}, timeout=10).raise_for_status()
    wait_for(lambda: httpx.get(a.url + "/away", timeout=10).json()["on"], 30, "replica a to follow the away switch set on b")

    target = where.cwd / "through-b.txt"
    sid = str(uuid.uuid4())
    api.add(Turn.tool_use("Write", {"file_path": str(target), "content": "approved through b\n"}), Turn.text("done"))
    out: list[ClaudeRun] = []
    t = threading.Thread(target=lambda: out.append(run_claude(where, api.url, "write the file", "--session-id", sid, timeout=150)), daemon=True)
    t.start()

    def waiting_on_b() -> list[dict[str, Any]]:
        return [w for w in httpx.get(b.url + "/away", timeout=10).json()["waiting"] if w["session_id"] == sid]

    [w] = wait_for(waiting_on_b, 90, "the prompt a holds to be listed on b")
    assert w["tool"] == "Write" and "through-b.txt" in w["summary"]
    s = wait_session(b, sid, lambda s: s["pending"] is not None and s["pending"]["answerable"], "the held prompt on b's table")
    assert s["pending"]["id"] == w["pending_id"] and s["status"] == "needs_approval"
    assert [x["pending_id"] for x in httpx.get(b.url + f"/sessions/{sid}", timeout=10).json()["waiting_approval"]] == [w["pending_id"]]
    assert not target.exists()

    r = httpx.post(b.url + f"/sessions/{sid}/approve", json={"pending_id": w["pending_id"], "decision": "allow"},
                   headers={"User-Agent": "relay-test"}, timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    assert (r.json()["decision"], r.json()["tool"], r.json()["by"]["who"]) == ("allow", "Write", "local")
    assert r.json()["by"]["user_agent"] == "relay-test"  # who asked b, recorded by a
    again = httpx.post(b.url + f"/sessions/{sid}/approve", json={"pending_id": w["pending_id"], "decision": "deny"}, timeout=60)
    assert again.status_code == 409, again.text
    unknown = httpx.post(b.url + f"/sessions/{sid}/approve", json={"pending_id": "toolu_nope", "decision": "allow"}, timeout=60)
    assert unknown.status_code == 409, unknown.text
    t.join(150)
    assert out and out[0].returncode == 0, out[0].describe() if out else "the CLI did not finish"
    assert target.read_text() == "approved through b\n"
    for srv in (a, b):  # the answer is in the shared store, with who
        [record] = httpx.get(srv.url + f"/sessions/{sid}", timeout=10).json()["approvals"]
        assert (record["pending_id"], record["decision"], record["by"]["user_agent"]) == (w["pending_id"], "allow", "relay-test")
    wait_for(lambda: not waiting_on_b(), 30, "the answered prompt to leave b's list")
    api.check()


def test_a_managed_session_is_driven_through_another_replica_and_taken_over_when_its_replica_dies(
    tmp_path: Path, sw_server: Callable[..., Server], pg_url: str, api: FakeAPI
) -> None:
    where = ClaudeHome.create(tmp_path)
    env = clean_env(where.home, api.url)
    a = replica(sw_server, tmp_path, pg_url, "a", where.projects_dir, env)
    b = replica(sw_server, tmp_path, pg_url, "b", tmp_path / "empty", env)
    api.add(Turn.text("first", usage=Usage(1000, 100)))
    r = httpx.post(a.url + "/managed", json={"prompt": "one", "cwd": str(where.cwd), "model": MODEL}, timeout=30)
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    s = wait_session(b, sid, lambda s: s["status"] == "waiting" and s["managed"]["num_turns"] == 1, "a's first turn on b")
    pid = s["managed"]["pid"]
    assert pid in claude_pids(where.home)

    # b follows the logs of a's process as they come
    follow = SSEClient(b.url + f"/sessions/{sid}/logs?follow=1&kind=reply").start()
    try:
        api.add(Turn.text("second answer", usage=Usage(2000, 200)))
        r = httpx.post(b.url + f"/sessions/{sid}/messages", json={"text": "two"}, timeout=60)
        assert r.status_code == 202, r.text
        assert r.json()["session_id"] == sid

        def replied() -> bool:
            return any("second answer" in e.data.get("content", "") for e in follow.drain() if e.event == "log")

        wait_for(replied, 60, "the reply to a message sent through b, followed on b")
    finally:
        follow.stop()
    wait_session(b, sid, lambda s: s["status"] == "waiting" and s["managed"]["num_turns"] == 2, "the second turn")
    assert [x["content"] for x in httpx.get(b.url + f"/sessions/{sid}/logs", params={"kind": "reply"}, timeout=10).json()["logs"]] == ["first", "second answer"]
    assert httpx.get(b.url + f"/sessions/{sid}", timeout=10).json()["managed_detail"]["cwd"] == str(where.cwd)

    # interrupt and stop through b reach a's process; a second stop is refused by a
    assert httpx.post(b.url + f"/sessions/{sid}/interrupt", json={}, timeout=60).status_code == 200
    r = httpx.post(b.url + f"/sessions/{sid}/stop", json={}, timeout=60)
    assert r.status_code == 200 and r.json()["state"] == "stopped", r.text
    assert not alive(pid)
    assert httpx.post(b.url + f"/sessions/{sid}/stop", json={}, timeout=60).status_code == 409
    wait_session(b, sid, lambda s: s["status"] == "ended" and s["status_reason"] == "stopped by local", "stopped, on b")

    # resumed through b: a (which ran it) runs it again
    api.add(Turn.text("resumed on a"))
    r = httpx.post(b.url + f"/sessions/{sid}/resume", json={"text": "three"}, timeout=60)
    assert r.status_code == 200, r.text
    s = wait_session(b, sid, lambda s: s["status"] == "waiting" and s["managed"]["num_turns"] == 3, "the resumed turn")
    on_a = s["managed"]["pid"]
    assert on_a not in (None, pid) and alive(on_a)

    # its process asks to write a file: the question shows on b, b's answer reaches a's process
    target = where.cwd / "approved-through-b.txt"
    api.add(Turn.tool_use("Write", {"file_path": str(target), "content": "from b\n"}), Turn.text("written"))
    assert httpx.post(b.url + f"/sessions/{sid}/messages", json={"text": "write it"}, timeout=60).status_code == 202
    s = wait_session(b, sid, lambda s: s["status"] == "needs_approval" and s["pending"] is not None, "the question on b")
    r = httpx.post(b.url + f"/sessions/{sid}/approve", json={"pending_id": s["pending"]["id"], "decision": "allow"}, timeout=60)
    assert r.status_code == 200 and r.json()["tool"] == "Write", r.text
    s = wait_session(b, sid, lambda s: s["status"] == "waiting" and s["current_task"] == "write it", "the approved turn")
    assert target.read_text() == "from b\n"
    turns = s["managed"]["num_turns"]

    # a dies (kill -9): its process is left behind; b takes the session over
    assert a.proc is not None
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(30)
    a.proc = None
    api.add(Turn.text("after the take-over"))
    r = httpx.post(b.url + f"/sessions/{sid}/messages", json={"text": "four"}, timeout=60)
    assert r.status_code == 409 and "resume" in r.json()["error"], r.text  # a's process is gone with it
    assert not alive(on_a)  # the one a left is not left running
    s = wait_session(b, sid, lambda s: s["status"] == "ended", "the session of the dead replica shown ended")
    assert s["status_reason"] == "its replica stopped" and s["controls"] == ["resume", "delete"]
    r = httpx.post(b.url + f"/sessions/{sid}/resume", json={"text": "five"}, timeout=60)
    assert r.status_code == 200, r.text
    s = wait_session(b, sid, lambda s: s["status"] == "waiting" and s["managed"]["num_turns"] > turns, "the turn b runs now")
    on_b = s["managed"]["pid"]
    assert on_b not in (None, pid, on_a) and alive(on_b)
    actions = httpx.get(b.url + f"/sessions/{sid}", timeout=10).json()["actions"]
    assert [x["action"] for x in actions] == ["start", "send", "interrupt", "stop", "resume", "send", "resume"]
    assert httpx.post(b.url + f"/sessions/{sid}/stop", json={}, timeout=60).status_code == 200
    r = httpx.delete(b.url + f"/sessions/{sid}", timeout=60)
    assert r.status_code == 200, r.text
    assert httpx.get(b.url + f"/sessions/{sid}/logs", timeout=10).status_code == 404
    assert not claude_pids(where.home)


def test_a_run_reports_through_any_replica_and_a_stop_asked_on_either_reaches_it(
    tmp_path: Path, sw_server: Callable[..., Server], pg_url: str
) -> None:
    """A ``sessionwatch run`` behind a round-robin proxy reports to a and b
    alternately: one record, one row, and a stop asked on either replica is
    in the next answer whichever replica the report reached."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    a = replica(sw_server, tmp_path, pg_url, "a", tmp_path / "pa", env)
    b = replica(sw_server, tmp_path, pg_url, "b", tmp_path / "pb", env)
    sid = str(uuid.uuid4())
    body = {"session_id": sid, "state": "running", "cwd": "/w", "name": "nightly", "figures": {"total_cost_usd": 0.5, "num_turns": 1}}
    for k, srv in enumerate((a, b, a, b)):
        r = httpx.post(srv.url + "/runs", json={**body, "logs": [{"ts": 1.0 + k, "level": "info", "source": "stdout", "kind": "reply", "content": f"line {k}"}]}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["stop"] is False
    assert [x["content"] for x in httpx.get(b.url + f"/sessions/{sid}/logs", timeout=10).json()["logs"]] == [f"line {k}" for k in range(4)]
    for srv in (a, b):
        s = wait_session(srv, sid, lambda s: s["managed"] is not None and s["managed"]["kind"] == "run", "the run's one row")
        assert s["managed"]["total_cost_usd"] == 0.5
    r = httpx.post(b.url + f"/sessions/{sid}/stop", json={}, timeout=60)
    assert r.status_code == 200, r.text
    assert httpx.post(a.url + "/runs", json=body, timeout=60).json()["stop"] is True
    assert httpx.post(b.url + "/runs", json=body, timeout=60).json()["stop"] is True
    assert [x["action"] for x in httpx.get(a.url + f"/sessions/{sid}", timeout=10).json()["actions"]] == ["stop"]


def test_an_agents_long_poll_on_one_replica_wakes_for_a_command_queued_on_another(
    tmp_path: Path, sw_server: Callable[..., Server], pg_url: str
) -> None:
    """A budget set on a for an agent's session wakes the agent's long poll
    waiting on b at once (a NOTIFY), not at the end of its wait."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    a = replica(sw_server, tmp_path, pg_url, "a", tmp_path / "pa", env)
    b = replica(sw_server, tmp_path, pg_url, "b", tmp_path / "pb", env)
    sid = str(uuid.uuid4())
    push = {"agent": "agent-1", "host": "zeta", "seq": 1, "upserts": [a_session(sid, title="on zeta")], "deletes": [], "sync": []}
    r = httpx.post(a.url + "/agents/push", json=push, timeout=30)
    assert r.status_code == 200, r.text
    wait_session(a, sid, lambda s: s["host"] == "zeta", "the agent's session on a")
    latest = httpx.get(b.url + "/agents/agent-1/commands", params={"after": 0, "wait": 0}, timeout=30).json()["latest"]
    answers: list[httpx.Response] = []
    # the long poll waits up to 60 s; the client gives up after 30: only a wake answers it in time
    poll = threading.Thread(target=lambda: answers.append(httpx.get(
        b.url + "/agents/agent-1/commands", params={"after": latest, "wait": 60}, timeout=30)), daemon=True)  # fmt: skip
    poll.start()
    wait_for(lambda: b_waits(b), 10, "the long poll to wait on b")
    r = httpx.put(a.url + f"/sessions/{sid}/budget", json={"max_cost_usd": 2.5}, timeout=30)
    assert r.status_code == 200, r.text
    poll.join(35)
    assert answers, "the long poll on b was not woken by the command queued on a"
    assert answers[0].status_code == 200, answers[0].text
    [command] = answers[0].json()["commands"]
    assert (command["kind"], command["session_id"], command["max_cost_usd"]) == ("budget", sid, 2.5)


def b_waits(srv: Server) -> bool:
    """Whether an agent's long poll waits on ``srv`` (its metric)."""
    text = httpx.get(srv.url + "/metrics", timeout=10).text
    return "sessionwatch_agent_polls_waiting 1.0" in text.splitlines()


def test_a_replica_started_later_shows_what_the_others_show(
    tmp_path: Path, sw_server: Callable[..., Server], pg_url: str, projects: Path
) -> None:
    """A replica that starts (or restarts) while the others run shows every
    session they show, though none of them changes again: the transcripts
    only replica a reads, a hooks-only session a got, a run reporting to a.
    Then a change on a reaches it as usual."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    a = replica(sw_server, tmp_path, pg_url, "a", projects, env)
    hook = {"hook_event_name": "UserPromptSubmit", "session_id": "hooks-only-1", "cwd": "/w", "prompt": "refactor the parser"}
    assert httpx.post(a.url + "/hooks", json=hook, timeout=30).status_code == 200
    run = {"session_id": str(uuid.uuid4()), "state": "running", "cwd": "/w", "name": "nightly"}
    assert httpx.post(a.url + "/runs", json=run, timeout=30).status_code == 200
    on_a = sessions(a)
    assert {"hooks-only-1", run["session_id"]} <= set(on_a) and len(on_a) > 10
    b = replica(sw_server, tmp_path, pg_url, "b", tmp_path / "empty", env)
    assert sessions(b) == sessions(a)
    # and it goes on following a
    assert httpx.post(a.url + "/runs", json={**run, "state": "ended"}, timeout=30).status_code == 200
    wait_session(b, run["session_id"], lambda s: s["status"] == "ended", "the run's end on b")
    assert sessions(b) == sessions(a)


# --- the relay itself: two engines on one database, in one process ------------------------------


async def test_relay_answers_with_the_targets_result_or_its_error_and_says_when_nobody_took_it(pair: Any) -> None:
    """What a handler returns is the answer; an ApiError it raises is the same
    status and sentence at the asker; an unknown kind is 501; a replica that
    never takes the row is Gone, and the row is gone with it."""
    import asyncio

    from sessionwatch.errors import ApiError
    from sessionwatch.relay import Gone, Relay
    from sessionwatch.store.base import Actor

    a, b = pair
    ra, rb = Relay(a), Relay(b)
    seen: list[tuple[dict[str, Any], Actor]] = []

    async def echo(body: dict[str, Any], by: Actor) -> Any:
        seen.append((body, by))
        if body.get("refuse"):
            raise ApiError(409, "refused over there")
        return {"echo": body["n"], "replica": rb.me}

    rb.handle("echo", echo)
    tasks = [asyncio.create_task(ra.run()), asyncio.create_task(rb.run())]
    try:
        who = Actor("ann", "10.0.0.7", None, "curl")
        await until(lambda: b.replicas is not None and "sessionwatch_relay" in b.replicas._channels, what="b to listen")
        assert await ra.ask(rb.me, "echo", {"n": 1}, who) == {"echo": 1, "replica": rb.me}
        assert seen == [({"n": 1}, who)]
        with pytest.raises(ApiError) as refused:
            await ra.ask(rb.me, "echo", {"n": 2, "refuse": True}, who)
        assert (refused.value.status, refused.value.sentence) == (409, "refused over there")
        with pytest.raises(ApiError) as unknown:
            await ra.ask(rb.me, "nothing-like-this", {}, who)
        assert unknown.value.status == 501
        with pytest.raises(Gone):
            await ra.ask(12345, "echo", {"n": 3}, who)  # no replica has that origin
        assert len(seen) == 2
        assert await a.replicas.pool.fetchval("SELECT count(*) FROM relay") == 0  # type: ignore[union-attr]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
