"""``sessionwatch mcp`` through the MCP SDK's own stdio client (``stdio_client`` +
``ClientSession``), against real servers: the fixture transcripts (module
server), managed sessions of the real Claude Code CLI talking to the fake
Messages API, a server with a token, and no server at all.

Claude Code as the MCP client is in tests/test_mcp_claude.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from sessionwatch.integrations.mcp_server import select, session_summary
from sessionwatch.model import STATUSES
from tests.conftest import Server, free_port
from tests.fakeapi import Turn
from tests.test_managed import MODEL, Managed, managed  # noqa: F401 - the fixture

#: The console script `pip install` puts beside this interpreter, as Claude Code runs it.
SESSIONWATCH = str(Path(sys.executable).with_name("sessionwatch"))
TOOLS = {
    "list_sessions", "get_session", "get_session_logs", "session_stats", "delete_session", "start_session",
    "send_message", "interrupt_session", "stop_session", "resume_session", "approve",
}  # fmt: skip


def mcp_env(**extra: str) -> dict[str, str]:
    """What the MCP process sees: nothing of this test's SESSIONWATCH_* variables."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    env.update(extra)
    return env


class Mcp:
    """One ``sessionwatch mcp`` process and the SDK's client session on it."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def call(self, tool: str, /, **arguments: Any) -> tuple[bool, str]:
        """(is_error, the text) of one tool call."""
        with anyio.fail_after(60):
            result = await self.session.call_tool(tool, arguments)
        texts = [c.text for c in result.content if c.type == "text"]
        assert len(texts) == 1, result
        return bool(result.is_error), texts[0]

    async def ok(self, tool: str, /, **arguments: Any) -> Any:
        error, text = await self.call(tool, **arguments)
        assert not error, f"{tool}({arguments}) failed: {text}"
        return json.loads(text)

    async def error(self, tool: str, /, **arguments: Any) -> str:
        error, text = await self.call(tool, **arguments)
        assert error, f"{tool}({arguments}) should have failed: {text}"
        return text


@asynccontextmanager
async def mcp_client(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Mcp]:
    params = StdioServerParameters(command=SESSIONWATCH, args=["mcp", *args], env=env or mcp_env())
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                with anyio.fail_after(60):
                    await session.initialize()
                yield Mcp(session)


async def wait_tool(mcp: Mcp, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """Await ``check()`` (an awaitable factory) until it returns something truthy, or fail at the deadline."""
    with anyio.move_on_after(timeout):
        while True:
            value = await check()
            if value:
                return value
            await anyio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --- reading: the fixture transcripts --------------------------------------------------


async def test_tools_have_descriptions_and_input_schemas(shared_server: Server) -> None:
    async with mcp_client("--server", shared_server.url) as mcp:
        listed = {t.name: t for t in (await mcp.session.list_tools()).tools}
    assert set(listed) == TOOLS
    for tool in listed.values():
        assert tool.description and len(tool.description) > 40, tool.name
        assert tool.input_schema["type"] == "object", tool.name
    status = listed["list_sessions"].input_schema["properties"]["status"]
    assert status["anyOf"][0]["items"]["enum"] == list(STATUSES)
    assert set(listed["approve"].input_schema["required"]) == {"session_id", "pending_id", "decision"}
    assert listed["approve"].input_schema["properties"]["decision"]["enum"] == ["allow", "deny"]
    assert set(listed["start_session"].input_schema["required"]) == {"prompt", "cwd"}
    assert listed["list_sessions"].annotations is not None and listed["list_sessions"].annotations.read_only_hint
    assert listed["delete_session"].annotations is not None and listed["delete_session"].annotations.destructive_hint


async def test_list_filters_get_stats_on_the_fixture_transcripts(shared_server: Server) -> None:
    api = httpx.get(shared_server.url + "/all").json()["sessions"]
    by_id = {s["id"]: s for s in api}
    assert len(api) > 5
    async with mcp_client("--server", shared_server.url) as mcp:
        every = await mcp.ok("list_sessions", limit=1000)
        assert every["total"] == every["shown"] == len(api)
        assert {s["id"] for s in every["sessions"]} == set(by_id)
        first = every["sessions"][0]
        # a summary, not the Session: what tells sessions apart
        assert {"id", "title", "status", "project", "last_activity"} <= set(first) and "tokens" not in first
        assert first["cost_usd"] == pytest.approx(by_id[first["id"]]["cost_usd"], abs=1e-4)
        activity = [datetime.fromisoformat(s["last_activity"]) for s in every["sessions"]]
        assert activity == sorted(activity, reverse=True)

        three = await mcp.ok("list_sessions", limit=3)
        assert three["total"] == len(api) and [s["id"] for s in three["sessions"]] == [s["id"] for s in every["sessions"][:3]]
        demo = await mcp.ok("list_sessions", project="demo")
        assert demo["total"] == sum("demo" in s["project"].lower() for s in api) > 0
        assert all("demo" in s["project"].lower() for s in demo["sessions"])
        assert (await mcp.ok("list_sessions", source="panel"))["total"] == 0
        assert (await mcp.ok("list_sessions", status=["running", "needs_approval"]))["total"] == 0
        assert (await mcp.ok("list_sessions", status=["idle"]))["total"] == len(api)
        assert (await mcp.ok("list_sessions", host="elsewhere"))["total"] == 0
        verbose = await mcp.ok("list_sessions", limit=1, verbose=True)
        assert verbose["sessions"][0] == by_id[verbose["sessions"][0]["id"]]
        assert "Input should be" in await mcp.error("list_sessions", status=["busy"])

        sid = "representative_messages"
        detail = await mcp.ok("get_session", session_id=sid, recent=2)
        assert detail["title"] == by_id[sid]["title"] and detail["tokens"] == by_id[sid]["tokens"]
        assert len(detail["recent"]) == 2 and detail["recent_omitted"] > 0
        assert "kill_requested" not in detail and "pending" not in detail  # nothing to say: left out
        assert "no session with id 'nope'" in await mcp.error("get_session", session_id="nope")
        assert "no managed session or run" in await mcp.error("get_session_logs", session_id=sid)

        stats = await mcp.ok("session_stats")
        full = httpx.get(shared_server.url + "/stats").json()
        assert stats["sessions"]["total"] == len(api)
        assert stats["sessions"]["by_status"] == {"idle": len(api)}
        assert stats["usage"]["all"]["cost_usd"] == pytest.approx(full["usage"]["all"]["cost_usd"], abs=1e-4)
        assert len(stats["usage"]["all"]["top_models"]) <= 5
        assert (await mcp.ok("session_stats", verbose=True))["usage"]["all"]["by_model"] == full["usage"]["all"]["by_model"]


def test_newest_first_by_time_not_by_text() -> None:
    """ISO times with and without decimals: "…05Z" sorts after "…05.5Z" as text."""
    rows = [{"id": "a", "last_activity": "2026-01-01T00:00:05Z"}, {"id": "b", "last_activity": "2026-01-01T00:00:05.5Z"},
            {"id": "c", "last_activity": None}, {"id": "d", "last_activity": "2026-01-01T00:00:06Z"}]  # fmt: skip
    assert [s["id"] for s in select(rows)] == ["d", "b", "a", "c"]
    assert [s["id"] for s in select(rows, status=["idle"])] == []


def test_a_summary_names_the_pending_prompt_and_the_process() -> None:
    row = {
        "id": "s1", "source": "claude", "project": "/p", "title": "x" * 300, "status": "needs_approval",
        "status_reason": "permission: Write", "host": None, "cost_usd": 0.123456, "last_activity": "2026-01-01T00:00:00Z",
        "current_task": None, "tokens": {"input": 1}, "controls": ["approve", "stop"],
        "pending": {"id": "p9", "kind": "permission", "tool": "Write", "summary": "Write /p/a.txt", "since": None, "answerable": True},
        "managed": {"name": "fix", "state": "waiting", "pid": 7, "max_cost_usd": 10, "exit_code": None},
    }  # fmt: skip
    assert session_summary(row) == {
        "id": "s1", "title": "x" * 99 + "…", "status": "needs_approval", "reason": "permission: Write", "source": "claude",
        "project": "/p", "cost_usd": 0.1235, "last_activity": "2026-01-01T00:00:00Z",
        "managed": {"name": "fix", "state": "waiting"}, "pending": {"id": "p9", "tool": "Write", "summary": "Write /p/a.txt"},
        "controls": ["approve", "stop"],
    }  # fmt: skip


# --- acting: managed sessions of the real CLI ------------------------------------------


async def test_start_send_logs_stop_delete_a_managed_session(managed: Callable[..., Managed]) -> None:  # noqa: F811
    m = managed([Turn.text("first answer"), Turn.text("second answer"), Turn.text("third answer")])
    async with mcp_client("--server", m.srv.url) as mcp:
        started = await mcp.ok("start_session", prompt="say hello", cwd=str(m.where.cwd), model=MODEL, name="mcp-one")
        sid = started["session_id"]
        assert started["name"] == "mcp-one"

        async def row(status: str, turns: int) -> Any:
            listed = await mcp.ok("list_sessions")
            found = [s for s in listed["sessions"] if s["id"] == sid]
            if found and found[0]["status"] == status and (m.session(sid) or {}).get("managed", {}).get("num_turns") == turns:
                return found[0]
            return None

        first = await wait_tool(mcp, "the first turn to end", lambda: row("waiting", 1))
        assert first["managed"] == {"name": "mcp-one", "state": "waiting"}
        assert "send" in first["controls"]
        sent = await mcp.ok("send_message", session_id=sid, text="again")
        assert sent["session_id"] == sid
        await wait_tool(mcp, "the second turn to end", lambda: row("waiting", 2))

        logs = await mcp.ok("get_session_logs", session_id=sid)
        kinds = [line["kind"] for line in logs["logs"]]
        assert "raw" not in kinds and kinds.count("prompt") == 2 and kinds.count("result") == 2
        replies = [line["content"] for line in logs["logs"] if line["kind"] == "reply"]
        assert replies == ["first answer", "second answer"]
        assert logs["more"] is False
        # paging: one line at a time, after the last id
        page = await mcp.ok("get_session_logs", session_id=sid, limit=1)
        assert len(page["logs"]) == 1 and page["more"] is True
        after = await mcp.ok("get_session_logs", session_id=sid, limit=1, after=page["last_id"])
        assert after["logs"][0]["id"] > page["logs"][0]["id"]
        only = await mcp.ok("get_session_logs", session_id=sid, kind=["reply"])
        assert [line["content"] for line in only["logs"]] == ["first answer", "second answer"]

        detail = await mcp.ok("get_session", session_id=sid)
        assert detail["managed"]["name"] == "mcp-one" and detail["managed_detail"]["cwd"] == str(m.where.cwd)
        assert [a["action"] for a in detail["actions"]][:2] == ["start", "send"]

        stopped = await mcp.ok("stop_session", session_id=sid)
        assert stopped["state"] == "stopped"
        assert "not running" in await mcp.error("send_message", session_id=sid, text="hello?")
        resumed = await mcp.ok("resume_session", session_id=sid, text="go on")
        assert resumed["name"] == "mcp-one"

        async def third() -> Any:
            lines = (await mcp.ok("get_session_logs", session_id=sid, kind=["reply"]))["logs"]
            return [line["content"] for line in lines] == ["first answer", "second answer", "third answer"]

        await wait_tool(mcp, "the resumed session's reply", third)
        await mcp.ok("stop_session", session_id=sid)
        assert (await mcp.ok("delete_session", session_id=sid)) == {"deleted": True}
        # the managed record and its logs are gone (the transcript's row may stay, as Claude Code wrote it)
        gone, text = await mcp.call("get_session", session_id=sid)
        assert f"no session with id {sid!r} (404)" in text if gone else "managed" not in json.loads(text)
        assert f"no managed session or run with id {sid!r}" in await mcp.error("get_session_logs", session_id=sid)
        bad = await mcp.error("start_session", prompt="x", cwd="/no/such/dir")
        assert "(400)" in bad and "/no/such/dir" in bad
    m.api.check()


async def test_approve_a_write_the_session_waits_on(managed: Callable[..., Managed]) -> None:  # noqa: F811
    m = managed([])
    target = m.where.cwd / "approved.txt"
    refused = m.where.cwd / "interrupted.txt"
    m.api.add(
        Turn.tool_use("Write", {"file_path": str(target), "content": "written after approval\n"}),
        Turn.text("wrote it"),
        Turn.tool_use("Write", {"file_path": str(refused), "content": "never\n"}),
    )
    async with mcp_client("--server", m.srv.url) as mcp:
        sid = (await mcp.ok("start_session", prompt="write the file", cwd=str(m.where.cwd), model=MODEL))["session_id"]

        async def pending(file: str = "approved.txt") -> Any:
            waiting = await mcp.ok("list_sessions", status=["needs_approval"])
            return next((s for s in waiting["sessions"] if s["id"] == sid and file in s["pending"]["summary"]), None)

        row = await wait_tool(mcp, "the Write to wait for approval", pending)
        assert row["pending"]["tool"] == "Write" and "approved.txt" in row["pending"]["summary"]
        assert "approve" in row["controls"] and not target.exists()
        assert "(404)" in await mcp.error("approve", session_id="nope", pending_id=row["pending"]["id"], decision="allow")
        answer = await mcp.ok("approve", session_id=sid, pending_id=row["pending"]["id"], decision="allow")
        assert answer["decision"] == "allow"

        async def done() -> Any:
            s = m.session(sid)
            return s is not None and s["status"] == "waiting" and target.exists()

        await wait_tool(mcp, "the approved Write and the end of the turn", done)
        assert target.read_text() == "written after approval\n"
        again = await mcp.error("approve", session_id=sid, pending_id=row["pending"]["id"], decision="deny", message="no")
        assert again.endswith("no prompt with that id is pending in this session (409)"), again

        # a second Write, interrupted instead of answered: the turn ends, the prompt with it
        await mcp.ok("send_message", session_id=sid, text="write another")
        await wait_tool(mcp, "the second Write to wait", lambda: pending("interrupted.txt"))
        assert (await mcp.ok("interrupt_session", session_id=sid))["session_id"] == sid

        async def dropped() -> Any:
            s = (await mcp.ok("get_session", session_id=sid))
            return s["status"] != "needs_approval" and "pending" not in s

        await wait_tool(mcp, "the interrupted turn to drop its prompt", dropped)
        assert not refused.exists()
        await mcp.ok("stop_session", session_id=sid)
    m.api.check()


# --- failures: a token, no server, no SDK ------------------------------------------------


async def test_a_wrong_or_missing_token_is_one_tool_error(projects: Path, sw_server: Callable[..., Server]) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--token", "right-token"])
    async with mcp_client("--server", srv.url, "--token", "wrong-token") as mcp:
        for tool, args in (("list_sessions", {}), ("session_stats", {}), ("stop_session", {"session_id": "x"})):
            text = await mcp.error(tool, **args)
            assert f"the sessionwatch server at {srv.url} rejected the token (401)" in text, text
    async with mcp_client("--server", srv.url) as mcp:
        assert "rejected the token" in await mcp.error("list_sessions")
    # the token from the environment, as `claude mcp add -e SESSIONWATCH_TOKEN=...` gives it
    count = len(httpx.get(srv.url + "/all", headers={"Authorization": "Bearer right-token"}).json()["sessions"])
    async with mcp_client(env=mcp_env(SESSIONWATCH_URL=srv.url, SESSIONWATCH_TOKEN="right-token")) as mcp:
        assert (await mcp.ok("list_sessions"))["total"] == count > 0


async def test_no_server_is_one_clear_error_and_the_process_goes_on(projects: Path, sw_server: Callable[..., Server]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with mcp_client("--server", url) as mcp:
        for tool, args in (("list_sessions", {}), ("send_message", {"session_id": "x", "text": "hi"})):
            text = await mcp.error(tool, **args)
            assert text.count("\n") == 0 and f"no sessionwatch server at {url}: " in text, text
        # the same process answers the next call, and finds the server once it is there
        srv = sw_server(projects_dir=projects, port=port)
        count = len(httpx.get(srv.url + "/all").json()["sessions"])
        assert (await mcp.ok("list_sessions", limit=1))["total"] == count > 0


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SESSIONWATCH, *args], capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def test_without_the_sdk_help_works_and_the_command_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "mcp.py").write_text("raise ImportError(\"No module named 'mcp'\")\n")  # the SDK missing
    env = mcp_env(PYTHONPATH=str(tmp_path))
    helped = _run("mcp", "--help", env=env)
    assert helped.returncode == 0 and "--server" in helped.stdout, helped.stderr
    r = _run("mcp", env=env)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "sessionwatch: error: `sessionwatch mcp` needs the MCP SDK: pip install 'sessionwatch[mcp]' (No module named 'mcp')"
    ]


def test_a_server_that_is_not_a_url_is_one_line() -> None:
    r = _run("mcp", "--server", "localhost:8765", env=mcp_env())
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["sessionwatch: error: --server must be an http:// or https:// URL, not 'localhost:8765'"]
