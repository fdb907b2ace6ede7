"""Away mode and budgets against the real Claude Code CLI (tests/claude_cli.py,
the fake Messages API of tests/fakeapi.py) and a real ``sessionwatch serve``:
Claude Code's http hooks post to its ``/hooks``.

- a Write asked for in away mode is answered from ``POST /approve``: allow →
  the file is written; deny → it is not and the message reaches the model;
- past ``--max-cost-usd`` the next tool call is denied with the reason, and a
  next prompt is blocked with it (the CLI prints it).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from .claude_cli import ClaudeHome, ClaudeRun, claude_bin, run_claude
from .conftest import Server, wait_for
from .fakeapi import FakeAPI, Turn, Usage

EVENTS = ("UserPromptSubmit", "PreToolUse", "PermissionRequest", "PostToolUse", "PostToolUseFailure", "Stop", "SessionEnd")


@contextmanager
def setup(tmp_path: Path, sw_server: Callable[..., Server], *flags: str) -> Iterator[tuple[ClaudeHome, Server]]:
    claude_bin()
    where = ClaudeHome.create(tmp_path)
    srv = sw_server(projects_dir=where.projects_dir, extra_args=["--approval-wait-s", "30", *flags])
    hooks = [{"type": "http", "url": srv.url + "/hooks", "timeout": 60}]
    where.write_settings({"hooks": {e: [{"hooks": hooks}] for e in EVENTS}})
    yield where, srv


def in_background(fn: Callable[[], ClaudeRun]) -> tuple[threading.Thread, list[ClaudeRun]]:
    out: list[ClaudeRun] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    return t, out


def answer_prompt(srv: Server, sid: str, decision: str, message: str | None = None) -> dict[str, object]:
    def find() -> str | None:
        return next((str(w["pending_id"]) for w in httpx.get(srv.url + "/away").json()["waiting"] if w["session_id"] == sid), None)

    pid = wait_for(find, 60, "the CLI's PermissionRequest to wait in GET /away")
    body = {"pending_id": pid, "decision": decision, **({"message": message} if message else {})}
    r = httpx.post(srv.url + f"/sessions/{sid}/approve", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_allow_from_approve_writes_the_file(tmp_path: Path, sw_server: Callable[..., Server]) -> None:
    with setup(tmp_path, sw_server) as (where, srv):
        httpx.put(srv.url + "/away", json={"on": True}).raise_for_status()
        target = where.cwd / "allowed.txt"
        sid = str(uuid.uuid4())
        with FakeAPI([Turn.tool_use("Write", {"file_path": str(target), "content": "yes\n"}), Turn.text("done")]) as api:
            t, out = in_background(lambda: run_claude(where, api.url, "write the file", "--session-id", sid, timeout=120))
            got = answer_prompt(srv, sid, "allow")
            t.join(120)
        assert out and out[0].returncode == 0, out[0].describe() if out else "the CLI did not finish"
        assert target.read_text() == "yes\n"
        assert got["tool"] == "Write" and str(got["summary"]).startswith("Write: allowed.txt")
        detail = wait_for(lambda: (r := httpx.get(srv.url + f"/sessions/{sid}")).status_code == 200 and r.json(), 30, "the session")
        [rec] = detail["approvals"]  # type: ignore[index]
        assert rec["decision"] == "allow" and rec["by"]["who"] == "local"


def test_deny_from_approve_keeps_the_file_unwritten_and_tells_the_model(tmp_path: Path, sw_server: Callable[..., Server]) -> None:
    with setup(tmp_path, sw_server) as (where, srv):
        httpx.put(srv.url + "/away", json={"on": True}).raise_for_status()
        target = where.cwd / "denied.txt"
        sid = str(uuid.uuid4())
        with FakeAPI([Turn.tool_use("Write", {"file_path": str(target), "content": "no\n"}), Turn.text("ok")]) as api:
            t, out = in_background(lambda: run_claude(where, api.url, "write the file", "--session-id", sid, timeout=120))
            answer_prompt(srv, sid, "deny", "not this file, use notes.md")
            t.join(120)
            assert out, "the CLI did not finish"
            assert not target.exists()
            [result] = api.agent_requests()[1].tool_results()
        assert result.get("is_error") and "not this file, use notes.md" in json.dumps(result["content"])


def test_past_the_budget_the_next_tool_call_is_denied_and_the_next_prompt_blocked(tmp_path: Path, sw_server: Callable[..., Server]) -> None:
    with setup(tmp_path, sw_server, "--max-cost-usd", "0.01") as (where, srv):
        (where.cwd / "notes.md").write_text("hello\n")
        reason = "sessionwatch: this session reached its $0.01 budget"
        sid = str(uuid.uuid4())
        gate = threading.Event()
        turns = [
            # this response alone costs more than the cap
            Turn.tool_use("Read", {"file_path": str(where.cwd / "notes.md")}, Usage(100_000, 1_000)),
            Turn.tool_use("Read", {"file_path": str(where.cwd / "notes.md")}, gate=gate),
            Turn.text("stopped"),
        ]
        with FakeAPI(turns) as api:
            t, out = in_background(lambda: run_claude(where, api.url, "read the notes twice", "--session-id", sid, timeout=120))

            def past_cap() -> bool:
                r = httpx.get(srv.url + f"/sessions/{sid}")
                return r.status_code == 200 and (r.json()["cost_usd"] or 0) >= 0.01

            wait_for(past_cap, 60, "the session's cost past the cap")
            gate.set()
            t.join(120)
            assert out, "the CLI did not finish"
            run = out[0]
            result = api.agent_requests()[2].tool_results()[-1]
            assert result.get("is_error") and reason in json.dumps(result["content"]), run.describe()
            assert reason in run.stdout
            detail = httpx.get(srv.url + f"/sessions/{sid}").json()
            assert detail["budget"]["max_cost_usd"] == 0.01
            # a next prompt in the same session never reaches the model
            api.reset([Turn.text("never asked")])
            again = run_claude(where, api.url, "go on", "--resume", sid, timeout=120)
            assert api.agent_requests() == []
        assert reason in again.stdout + again.stderr, again.describe()


def test_interactive_first_answer_wins_terminal_then_dashboard(tmp_path: Path, sw_server: Callable[..., Server]) -> None:
    """Interactive (tmux): the terminal's dialog shows while the hook waits. Answered in the
    terminal, the prompt is no longer pending (409); answered from POST /approve, the
    CLI takes that answer and the file is written."""
    from .conftest import require_tool
    from .hookcapture import Tmux, seed_interactive

    require_tool("tmux")
    with setup(tmp_path, sw_server) as (where, srv):
        seed_interactive(where)
        httpx.put(srv.url + "/away", json={"on": True}).raise_for_status()
        first, second = where.cwd / "first.txt", where.cwd / "second.txt"
        sid = str(uuid.uuid4())
        turns = [
            Turn.tool_use("Write", {"file_path": str(first), "content": "1\n"}), Turn.text("one"),
            Turn.tool_use("Write", {"file_path": str(second), "content": "2\n"}), Turn.text("two"),
        ]  # fmt: skip
        with FakeAPI(turns) as api:
            term = Tmux(where, api.url, "--permission-mode", "default", "--session-id", sid)
            try:
                term.wait_screen("? for shortcuts", 30)
                term.type_line("write the first file")

                def waiting() -> str | None:
                    return next((str(w["pending_id"]) for w in httpx.get(srv.url + "/away").json()["waiting"] if w["session_id"] == sid), None)

                pid = wait_for(waiting, 60, "the first prompt to wait")
                term.wait_screen("Do you want", 30)

                # Yes, in the terminal; again while the dialog stays on screen (on a
                # loaded machine a key can land before the dialog takes input).
                deadline = time.monotonic() + 30
                while not first.exists():
                    if "Do you want" in term.screen():
                        term.keys("1")
                    try:
                        wait_for(first.exists, 1.5, "the first file")
                    except AssertionError:
                        assert time.monotonic() < deadline, f"the first file was not written:\n{term.screen()}"

                # the tool's PostToolUse ends the wait
                wait_for(lambda: waiting() is None, 30, "the terminal's answer to end the wait")
                r = httpx.post(srv.url + f"/sessions/{sid}/approve", json={"pending_id": pid, "decision": "deny"})
                assert (r.status_code, r.json()) == (409, {"error": "that prompt is no longer pending (answered in the terminal)"})
                term.wait_screen("one", 30)
                term.type_line("write the second file")
                pid2 = wait_for(lambda: (p := waiting()) != pid and p, 60, "the second prompt to wait")
                r = httpx.post(srv.url + f"/sessions/{sid}/approve", json={"pending_id": pid2, "decision": "allow"})
                assert r.status_code == 200, r.text
                wait_for(second.exists, 30, "the second file, allowed from the dashboard")
                term.type_line("/exit")
            finally:
                term.close()
        detail = wait_for(lambda: (r := httpx.get(srv.url + f"/sessions/{sid}")).status_code == 200 and r.json(), 30, "the session")
        assert [a["decision"] for a in detail["approvals"]] == ["allow"]  # type: ignore[index]
