"""Claude Code as the MCP client of ``sessionwatch mcp``: the real CLI
(tests/claude_cli.py) against the fake Messages API (tests/fakeapi.py),
configured with README's line (``claude mcp add sessionwatch -e
SESSIONWATCH_TOKEN=... -- sessionwatch mcp``, run offline with the test's
HOME; the server's URL comes from Claude Code's environment).
The fake's first turn calls ``mcp__sessionwatch__list_sessions``; the next
request the CLI sends carries the tool's result, which lists the sessions of
a real ``serve`` over the fixture transcripts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx

from tests.claude_cli import MINIMAL_PATH, ClaudeHome, claude_bin, clean_env, run_claude
from tests.conftest import Server
from tests.fakeapi import FakeAPI, Turn
from tests.test_mcp import TOOLS

MODEL = "claude-sonnet-4-5-20250929"
TOOL = "mcp__sessionwatch__list_sessions"
TOKEN = "mcp-test-token"


def test_claude_code_calls_list_sessions_and_reads_the_sessions(
    tmp_path: Path, projects: Path, sw_server: Callable[..., Server]
) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--token", TOKEN])
    sessions = httpx.get(srv.url + "/all", headers={"Authorization": f"Bearer {TOKEN}"}).json()["sessions"]
    newest = max(sessions, key=lambda s: datetime.fromisoformat(s["last_activity"]))
    where = ClaudeHome.create(tmp_path)
    # `sessionwatch` on the PATH Claude Code sees, as `pip install` puts it there; the
    # server's URL in Claude Code's environment, which the MCP server inherits
    env = {"PATH": f"{Path(sys.executable).parent}:{MINIMAL_PATH}", "SESSIONWATCH_URL": srv.url}
    with FakeAPI([Turn.tool_use(TOOL, {"limit": 5}), Turn.text("There are sessions.")]) as api:
        # README's line for a server with a token
        added = subprocess.run(
            [str(claude_bin()), "mcp", "add", "sessionwatch", "-e", f"SESSIONWATCH_TOKEN={TOKEN}", "--", "sessionwatch", "mcp"],
            cwd=where.cwd, env=clean_env(where.home, api.url, env), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        run = run_claude(where, api.url, "which sessions are there?", "--model", MODEL, "--allowedTools", TOOL, env=env, timeout=120)
        run.check()
        # the server `claude mcp add` wrote into the HOME's ~/.claude.json (local scope)
        assert [(s["name"], s["source"]) for s in run.init["mcp_servers"]] == [("sessionwatch", "local")], run.init
        first, second = api.wait_requests(2)
        # Claude Code defers MCP tools (ToolSearch): by the second request it names every one to the model
        named = set(re.findall(r"mcp__sessionwatch__(\w+)", json.dumps(second.body)))
        assert named == TOOLS, named
        results = second.tool_results()
        assert len(results) == 1 and not results[0].get("is_error"), results
        content = results[0]["content"]
        # the tool's text first (Claude Code may append a reminder block of its own)
        text = content if isinstance(content, str) else next(b["text"] for b in content if b.get("type") == "text")
        listed = json.loads(text)
        assert listed["total"] == len(sessions) and listed["shown"] == 5
        assert listed["sessions"][0]["id"] == newest["id"] and listed["sessions"][0]["title"] == newest["title"]
        api.check()
