"""The real Claude Code CLI, offline against tests/fakeapi.py, checked against sessionwatch.

Ground truth for cost is the CLI's own ``result.total_cost_usd`` for the usage
the fake answered with; for titles and recent activity it is what the test
typed. Each CLI run takes about a second.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from .claude_cli import (
    ClaudeHome,
    ClaudeProcess,
    Totals,
    claude_bin,
    clean_env,
    read_jsonl,
    run_claude,
    sessionwatch_scan,
    tokens_from_model_usage,
)
from .claude_fixtures import claude_home, fake_api  # noqa: F401 - fixtures
from .conftest import Server, wait_for
from .fakeapi import ApiError, FakeAPI, Turn, Usage

USAGE = Usage(input_tokens=1200, output_tokens=300, cache_creation_input_tokens=2000, cache_read_input_tokens=5000)


def totals(u: Usage) -> dict[str, int]:
    return Totals(u.input_tokens, u.output_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens).as_dict()


def assert_cost_close(ours: float | None, cli: float, what: str) -> None:
    assert ours is not None, f"{what}: sessionwatch has no price (cost_usd null); the CLI says {cli}"
    assert abs(ours - cli) <= 0.01 * cli, f"{what}: sessionwatch {ours} vs the CLI's {cli} ({ours / cli:.3f}x)"


# --- item 24: cost ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_args", "model", "usage"),
    [
        # 2.1.330's default; its cache reads cost 0.05x input, not the usual 0.1x
        ([], "claude-opus-5-5", USAGE),
        # 1-hour cache writes (2x input) beside 5-minute ones (1.25x)
        ([], "claude-opus-5-5", Usage(1200, 300, 2000, 5000, cache_1h_input_tokens=1500)),
        (["--model", "claude-opus-4-8"], "claude-opus-4-8", USAGE),  # 2.1.197's default
        (["--model", "claude-sonnet-4-5-20250929"], "claude-sonnet-4-5-20250929", USAGE),
    ],
    ids=["opus-5-5", "opus-5-5-1h-cache", "opus-4-8", "sonnet-4-5"],
)
def test_scan_cost_matches_the_cli_total_cost(
    fake_api: FakeAPI, claude_home: ClaudeHome, model_args: list[str], model: str, usage: Usage
) -> None:
    fake_api.reset([Turn.text("Hello.", usage)])
    run = run_claude(claude_home, fake_api.url, "hi", *model_args).check()

    assert [r.body["model"] for r in fake_api.agent_requests()] == [model]
    answered = fake_api.answered_usage()  # the scripted turn plus any side query the CLI made
    assert answered == usage + Usage(
        fake_api.side_usage.input_tokens * len(fake_api.side_requests()),
        fake_api.side_usage.output_tokens * len(fake_api.side_requests()),
    )
    # The CLI saw exactly what the fake answered (so its cost is for that usage).
    assert list(run.result["modelUsage"]) == [model]
    assert tokens_from_model_usage(run.result["modelUsage"]).as_dict() == totals(answered)

    session = sessionwatch_scan(claude_home.projects_dir).session(run.session_id)
    assert session["model"] == model
    assert session["tokens"] == totals(answered)
    assert_cost_close(session["cost_usd"], run.result["total_cost_usd"], model)


# --- a turn with a tool call ------------------------------------------------------


def test_tool_use_turn_counts_one_tool_call_and_costs_what_the_cli_says(
    fake_api: FakeAPI, claude_home: ClaudeHome
) -> None:
    first = Usage(1500, 80, 3000, 0)
    second = Usage(200, 40, 100, 4500)
    fake_api.reset(
        [
            Turn.tool_use("Bash", {"command": "echo hi", "description": "Print hi"}, first, text="I'll run it."),
            Turn.text("It printed hi.", second),
        ]
    )
    prompt = "run echo hi for me"
    run = run_claude(claude_home, fake_api.url, prompt).check()

    # The CLI really ran the command and sent its output back.
    agent = fake_api.agent_requests()
    assert len(agent) == 2
    assert [(r["content"], r.get("is_error")) for r in agent[1].tool_results()] == [("hi", False)]
    assert run.result["num_turns"] == 2

    session = sessionwatch_scan(claude_home.projects_dir).session(run.session_id)
    assert session["tool_calls"] == 1
    # prompt, tool_use response (two lines, one message), tool result, final reply
    assert session["message_count"] == 4
    assert session["title"] == prompt
    assert session["status"] == "waiting"
    assert session["tokens"] == totals(fake_api.answered_usage())
    assert_cost_close(session["cost_usd"], run.result["total_cost_usd"], "tool-use session")


# --- item 25: titles and recent activity show what a person typed ----------------

SUMMARY = "<analysis>Short.</analysis>\n<summary>The user started a background echo.</summary>"


def test_task_notification_and_compact_summary_are_not_prompts(
    fake_api: FakeAPI, claude_home: ClaudeHome, sw_server: Callable[..., Server]
) -> None:
    """A background task's ``<task-notification>`` and ``/compact``'s summary are user lines nobody typed."""
    typed = ["start a background echo", "/compact", "what next?"]
    fake_api.reset(
        [
            Turn.tool_use("Bash", {"command": "echo bg-done", "description": "bg", "run_in_background": True}),
            Turn.text("Started it."),
            Turn.text("The background echo finished."),  # answers the <task-notification>
            Turn.text(SUMMARY),  # /compact's summary request (it carries the tools list too)
            Turn.text("Nothing, we are done."),
        ]
    )
    with ClaudeProcess(claude_home, fake_api.url) as cli:
        cli.send(typed[0])
        cli.wait_result()
        cli.wait_result()  # the CLI answers the task notification on its own
        cli.send(typed[1])
        cli.wait_for(lambda m: m.get("type") == "system" and m.get("subtype") == "compact_boundary", what="compaction")
        cli.wait_result()
        cli.send(typed[2])
        last = cli.wait_result()
        assert cli.close() == 0
    session_id = str(last["session_id"])

    # What the CLI wrote: the lines this test is about are really there.
    lines = read_jsonl(claude_home.transcript(session_id))
    user_texts = [(ln["message"]["content"], ln) for ln in lines if ln.get("type") == "user"]
    assert any(isinstance(t, str) and t.startswith("<task-notification>") for t, _ in user_texts)
    assert any(ln.get("isCompactSummary") for _, ln in user_texts)
    assert any(ln.get("isMeta") for _, ln in user_texts)

    scan = sessionwatch_scan(claude_home.projects_dir).session(session_id)
    assert scan["title"] == typed[0]

    srv = sw_server(projects_dir=claude_home.projects_dir)
    detail = httpx.get(f"{srv.url}/sessions/{session_id}", timeout=10).json()
    assert detail["title"] == typed[0]
    recent = detail["recent"]  # the newest few items only: the first prompt may be cut
    prompts = [i["summary"] for i in recent if i["kind"] == "prompt"]
    assert prompts and prompts == [typed[0], typed[2]][-len(prompts):], recent
    assert not [i for i in recent if "<task-notification>" in i["summary"] or "previous conversation" in i["summary"]], recent
    # the task finishing and the compaction are listed, as what they are
    assert len([i for i in recent if i["kind"] not in ("prompt", "tool", "reply")]) == 2, recent


# --- item 23: status comes from the entries, never the file's mtime -------------


def _shift_timestamps(text: str, delta: timedelta) -> str:
    def shift(m: re.Match[str]) -> str:
        when = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")) + delta
        return '"timestamp":"' + when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z" + '"'

    return re.sub(r'"timestamp":"([0-9T:.\-]+Z)"', shift, text)


def test_restored_transcript_with_old_entries_is_idle(fake_api: FakeAPI, claude_home: ClaudeHome, tmp_path: Path) -> None:
    """A real transcript whose entries are 300 days old, copied now (mtime now), is idle."""
    fake_api.reset([Turn.text("Hello.")])
    run = run_claude(claude_home, fake_api.url, "hi").check()
    assert sessionwatch_scan(claude_home.projects_dir).session(run.session_id)["status"] == "waiting"

    restored = tmp_path / "restored"
    src = claude_home.transcript(run.session_id)
    dest = restored / src.parent.name / src.name
    dest.parent.mkdir(parents=True)
    dest.write_text(_shift_timestamps(src.read_text("utf-8"), timedelta(days=-300)), "utf-8")
    newest = max(ln["timestamp"] for ln in read_jsonl(dest) if "timestamp" in ln)
    assert newest < (datetime.now() - timedelta(days=299)).isoformat()

    session = sessionwatch_scan(restored).session(run.session_id)
    assert session["status"] == "idle"
    assert session["last_activity"][:19] == newest[:19]


def test_status_is_running_while_the_cli_waits_for_the_model(fake_api: FakeAPI, claude_home: ClaudeHome) -> None:
    gate = threading.Event()
    fake_api.reset([Turn.text("Done at last.", gate=gate)])
    with ClaudeProcess(claude_home, fake_api.url) as cli:
        cli.send("take your time")
        fake_api.wait_requests(1)  # the response is held until the gate opens

        def prompt_written() -> bool:
            paths = claude_home.transcripts()
            return bool(paths) and any(
                ln.get("type") == "user" and ln["message"]["content"] == "take your time"
                for ln in read_jsonl(paths[0], growing=True)
            )

        wait_for(prompt_written, 30, "the CLI to write the prompt line")
        sessions = sessionwatch_scan(claude_home.projects_dir).data["sessions"]
        assert [(s["title"], s["status"]) for s in sessions] == [("take your time", "running")]
        session = sessions[0]
        gate.set()
        cli.wait_result()
        assert cli.close() == 0
    assert sessionwatch_scan(claude_home.projects_dir).session(session["id"])["status"] == "waiting"


# --- a failing API ------------------------------------------------------------------


def test_overloaded_api_ends_the_turn_waiting_with_no_cost(fake_api: FakeAPI, claude_home: ClaudeHome) -> None:
    """529 twice: with CLAUDE_CODE_MAX_RETRIES=1 the CLI gives up after one retry (about 1 s)."""
    fake_api.reset([ApiError(529, "overloaded_error", "Overloaded")] * 2)
    run = run_claude(claude_home, fake_api.url, "hi")
    assert run.returncode != 0
    assert run.result["is_error"] and run.result["total_cost_usd"] == 0
    assert [r["error_status"] for r in run.of_type("system", "api_retry")] == [529]
    assert [r.status for r in fake_api.agent_requests()] == [529, 529]

    session = sessionwatch_scan(claude_home.projects_dir).session(run.session_id)
    # The CLI writes a <synthetic> assistant reply: the turn is over, nothing was spent.
    assert session["status"] == "waiting"
    assert session["tokens"] == totals(Usage())
    assert session["cost_usd"] in (0, None)
    assert session["title"] == "hi"


# --- the harness itself ----------------------------------------------------------


def test_cli_connects_to_nothing_but_the_fake_api(fake_api: FakeAPI, claude_home: ClaudeHome, tmp_path: Path) -> None:
    """Our environment keeps the CLI offline: its only socket connection is to the fake.

    (Without CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC, 2.1.330 does a DNS lookup
    and sends ``HEAD /api/hello`` first.) This is why the tests need no
    network namespace.
    """
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace is required to check that the Claude CLI stays offline (apt-get install strace)", pytrace=False)
    fake_api.reset([Turn.tool_use("Bash", {"command": "echo hi"}), Turn.text("Done.")])
    trace = tmp_path / "trace"
    proc = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=connect", "-o", str(trace), str(claude_bin()),
         "-p", "hi", "--output-format", "stream-json", "--verbose"],
        cwd=claude_home.cwd,
        env=clean_env(claude_home.home, fake_api.url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    inet = [ln for ln in trace.read_text().splitlines() if "AF_INET" in ln]
    assert inet, "strace saw no connection at all; is it tracing?"
    allowed = f'sin_port=htons({fake_api.port}), sin_addr=inet_addr("127.0.0.1")'
    assert [ln for ln in inet if allowed not in ln] == []
    assert {(r.method, r.path) for r in fake_api.requests} == {("POST", "/v1/messages?beta=true")}
    assert json.loads(proc.stdout.splitlines()[-1])["subtype"] == "success"
