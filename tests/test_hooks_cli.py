"""The real Claude Code CLI still sends what tests/vectors/hooks/ recorded.

Runs the capture scenarios of tests/hookcapture.py again (the CLI against
tests/fakeapi.py, both hook forms on every event) and checks what the other
modules rely on: the form Claude Code fires per event (claude_settings'
EVENT_FORMS), the events of each recorded run, and the statuses the live
events fold into. The interactive run needs tmux (`.ci/run` installs it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sessionwatch.integrations.claude_settings import EVENT_FORMS
from sessionwatch.sources.hooks.events import HookState, decode_hook, fold

from .claude_cli import ClaudeHome, ClaudeRun, claude_bin, run_claude
from .conftest import require_tool
from .fakeapi import FakeAPI, Turn
from .hookcapture import VECTORS, Capture, HookRecorder, Hit, interactive, p_api_error, p_tools

#: Events whose command hook may not finish before a -p process exits (StopFailure is the last
#: thing a failed -p run does): only their http form is required.
RACY_COMMAND = {"StopFailure"}


def fired(hits: list[Hit]) -> set[tuple[str, str]]:
    return {(h.event, h.form) for h in hits}


def recorded(scenario: str) -> set[tuple[str, str]]:
    calls = json.loads((VECTORS / f"{scenario}.json").read_text())["calls"]
    return {(c["event"], c["form"]) for c in calls}


def fold_hits(hits: list[Hit]) -> list[HookState]:
    """Fold each event once (both forms carry the same payload), in arrival order."""
    seen: set[str] = set()
    state: HookState | None = None
    states = []
    for h in hits:
        key = json.dumps(h.payload, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        state = fold(state, decode_hook(key), h.t)
        states.append(state)
    return states


def check_forms(cap: Capture) -> None:
    """Every event fired as a command hook; as an http hook exactly where EVENT_FORMS says http."""
    got = fired(cap.hits)
    for event in {e for e, _ in got}:
        if event not in RACY_COMMAND:
            assert (event, "command") in got, f"{event} did not fire as a command hook"
        if event in EVENT_FORMS:
            assert ((event, "http") in got) == (EVENT_FORMS[event] == "http"), f"{event}: http form {'missing' if EVENT_FORMS[event] == 'http' else 'fired'}"


def same_as_recorded(cap: Capture) -> None:
    now = {(e, f) for e, f in fired(cap.hits) if e not in RACY_COMMAND}
    then = {(e, f) for e, f in recorded(cap.name) if e not in RACY_COMMAND}
    assert now == then, f"the CLI now sends {sorted(now - then)} and no longer {sorted(then - now)}"


def test_print_mode_events_forms_and_statuses(tmp_path: Path) -> None:
    claude_bin()
    cap = p_tools(tmp_path)
    check_forms(cap)
    same_as_recorded(cap)
    states = fold_hits(cap.hits)
    assert states[-1].status == "ended" and states[-1].status_reason == "SessionEnd: other"
    assert "needs_approval" in [s.status for s in states]  # the refused Write asked first


def test_api_error_fails_the_session(tmp_path: Path) -> None:
    claude_bin()
    cap = p_api_error(tmp_path)
    assert ("StopFailure", "http") in fired(cap.hits)
    same_as_recorded(cap)
    final = fold_hits(cap.hits)[-1]
    assert (final.status, final.status_reason) == ("failed", "API error: overloaded")


def test_interactive_prompt_needs_approval_then_runs_then_ends(tmp_path: Path) -> None:
    require_tool("tmux")
    claude_bin()
    cap = interactive(tmp_path)
    check_forms(cap)
    same_as_recorded(cap)
    assert cap.notes["transcript_exists_at_session_start"] is False and cap.notes["file_written"] is True
    states = fold_hits(cap.hits)
    statuses = [s.status for s in states]
    assert statuses[0] == "waiting"  # SessionStart: listed before the first prompt
    asked = statuses.index("needs_approval")
    assert states[asked].pending is not None and states[asked].pending.tool == "Write"
    assert "running" in statuses[asked:] and statuses[-1] == "ended"
    assert states[-1].status_reason == "SessionEnd: prompt_input_exit"


@pytest.mark.parametrize("event", sorted(EVENT_FORMS))
def test_every_installed_event_is_one_the_cli_knows(event: str) -> None:
    from sessionwatch.sources.hooks.events import KNOWN_EVENTS

    assert event in KNOWN_EVENTS


# --- answers the real CLI takes from an http hook (what /hooks will answer) ---------------------


def allow_or_deny(behavior: str, message: str = "") -> dict[str, object]:
    decision: dict[str, object] = {"behavior": behavior}
    if message:
        decision["message"] = message
    return {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": decision}}


def run_with_answers(tmp_path: Path, answers: dict[str, object], turns: list[Turn]) -> tuple[ClaudeHome, ClaudeRun, FakeAPI, HookRecorder]:
    where = ClaudeHome.create(tmp_path)
    recorder = HookRecorder(tmp_path, answers)
    settings: dict[str, object] = {"hooks": {e: [{"hooks": [{"type": "http", "url": f"{recorder.url}/{e}", "timeout": 10}]}] for e in answers}}
    where.write_settings(settings)
    api = FakeAPI(turns).start()
    try:
        run = run_claude(where, api.url, "write the file")
    finally:
        api.stop()
        recorder.stop()
    return where, run, api, recorder


def test_permission_request_allow_from_the_hook_writes_the_file(tmp_path: Path) -> None:
    claude_bin()
    target = tmp_path / "home" / "work" / "allowed.txt"
    where, run, api, _ = run_with_answers(
        tmp_path, {"PermissionRequest": allow_or_deny("allow")}, [Turn.tool_use("Write", {"file_path": str(target), "content": "yes\n"}), Turn.text("ok")]
    )
    assert run.returncode == 0, run.describe()
    assert target.read_text() == "yes\n"


def test_permission_request_deny_from_the_hook_sends_the_message_to_the_model(tmp_path: Path) -> None:
    claude_bin()
    target = tmp_path / "home" / "work" / "denied.txt"
    where, run, api, _ = run_with_answers(
        tmp_path,
        {"PermissionRequest": allow_or_deny("deny", "sessionwatch: denied from the dashboard")},
        [Turn.tool_use("Write", {"file_path": str(target), "content": "no\n"}), Turn.text("ok")],
    )
    assert not target.exists()
    [result] = api.agent_requests()[1].tool_results()
    assert result.get("is_error") and "sessionwatch: denied from the dashboard" in json.dumps(result["content"])


def test_pre_tool_use_deny_reason_reaches_the_model(tmp_path: Path) -> None:
    claude_bin()
    reason = "sessionwatch: this session reached its $5.00 budget"
    deny = {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny", "permissionDecisionReason": reason}}
    where, run, api, _ = run_with_answers(tmp_path, {"PreToolUse": deny}, [Turn.tool_use("Bash", {"command": "echo hi"}), Turn.text("ok")])
    [result] = api.agent_requests()[1].tool_results()
    assert result.get("is_error") and reason in json.dumps(result["content"])


def test_user_prompt_submit_block_stops_the_prompt(tmp_path: Path) -> None:
    claude_bin()
    reason = "sessionwatch: this session reached its $5.00 budget"
    block = {"decision": "block", "reason": reason}
    where, run, api, _ = run_with_answers(tmp_path, {"UserPromptSubmit": block}, [Turn.text("never asked")])
    assert api.agent_requests() == []  # the prompt never reached the model
    assert reason in run.stdout + run.stderr, run.describe()
