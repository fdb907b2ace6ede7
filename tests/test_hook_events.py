"""Hook payloads → session state (sources/hooks/events.py), driven by the real CLI's payloads.

The vectors in tests/vectors/hooks/ were recorded from Claude Code 2.1.330 by
tests/hookcapture.py; every rule is checked on the events the CLI actually
sent, in the order it sent them.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sessionwatch.redact import MASK
from sessionwatch.sources.hooks.events import (
    KNOWN_EVENTS,
    HookInputError,
    HookState,
    UnknownHookEvent,
    decode_hook,
    fold,
    registry_idle,
    summarize,
)

from .hookcapture import EVENTS

VECTORS = Path(__file__).parent / "vectors" / "hooks"
SCENARIOS = sorted(p.stem for p in VECTORS.glob("*.json"))


def payloads(scenario: str) -> list[dict[str, Any]]:
    """The events of one recorded run in arrival order, each once (both hook forms carry the same JSON)."""
    seen: set[str] = set()
    found = []
    for call in json.loads((VECTORS / f"{scenario}.json").read_text())["calls"]:
        key = json.dumps(call["payload"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            found.append(call["payload"])
    return found


def first(events: list[dict[str, Any]], name: str, **match: Any) -> dict[str, Any]:
    return next(e for e in events if e["hook_event_name"] == name and all(e.get(k) == v for k, v in match.items()))


def replay(events: list[dict[str, Any]], start: float = 1000.0, state: HookState | None = None) -> list[HookState]:
    """Fold each payload (as JSON bytes, the way /hooks receives them) at one-second steps."""
    states = []
    for i, payload in enumerate(events):
        state = fold(state, decode_hook(json.dumps(payload).encode()), start + i)
        states.append(state)
    return states


def upto(events: list[dict[str, Any]], name: str, **match: Any) -> list[dict[str, Any]]:
    """The events up to and including the first ``name``."""
    end = events.index(first(events, name, **match))
    return events[: end + 1]


# --- decoding ---------------------------------------------------------------------------


def test_capture_knows_the_same_events_as_the_decoder() -> None:
    assert set(EVENTS) == KNOWN_EVENTS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_recorded_payload_decodes(scenario: str) -> None:
    for payload in payloads(scenario):
        event = decode_hook(json.dumps(payload))
        assert event.hook_event_name == payload["hook_event_name"]
        assert event.session_id == payload["session_id"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "not a JSON object"),
        (b"{not json", "not a JSON object"),
        (b"\xff\xfe{}", "not a JSON object"),
        (b"[1, 2]", "wrong field"),
        (b'"Stop"', "wrong field"),
        (b'{"hook_event_name": "Stop"}', "wrong field"),  # no session_id
        (b'{"hook_event_name": "Stop", "session_id": ""}', "session_id"),
        (b'{"hook_event_name": "Stop", "session_id": 7}', "wrong field"),
        (b'{"hook_event_name": "PreToolUse", "session_id": "s", "tool_input": "rm -rf /"}', "wrong field"),
        (b'{"hook_event_name": "Stop", "session_id": "' + b"x" * 300 + b'"}', "session_id"),
        (b"[" * 100_000, "wrong field"),
        (b'{"x": ' * 100_000, "hook payload"),
    ],
)
def test_bad_payload_is_a_hook_input_error(body: bytes, words: str) -> None:
    with pytest.raises(HookInputError, match=words):
        decode_hook(body)


def test_unknown_event_is_its_own_error() -> None:
    with pytest.raises(UnknownHookEvent, match="unknown hook event 'Teleport'") as info:
        decode_hook(b'{"hook_event_name": "Teleport", "session_id": "s"}')
    assert info.value.event == "Teleport"
    assert isinstance(info.value, HookInputError)


def test_mangled_real_payloads_raise_nothing_but_hook_input_error() -> None:
    rng = random.Random(10)
    bodies = [json.dumps(p).encode() for s in SCENARIOS for p in payloads(s)]
    for _ in range(3000):
        body = bytearray(rng.choice(bodies))
        for _ in range(rng.randint(1, 4)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        try:
            event = decode_hook(bytes(body))
        except HookInputError:
            continue
        fold(None, event, 1.0)  # whatever decodes also folds


# --- the rules, on the CLI's own events ----------------------------------------------------


def test_session_start_creates_the_session_waiting_before_any_prompt() -> None:
    events = payloads("interactive")
    state = replay(events[:1])[-1]
    assert (state.status, state.status_reason, state.pending) == ("waiting", "session started", None)
    assert state.session_id == events[0]["session_id"]
    assert state.model == "claude-opus-5-5"
    assert state.cwd == "$CWD" and state.last_event == 1000.0


def test_prompt_submitted_is_running() -> None:
    state = replay(upto(payloads("interactive"), "UserPromptSubmit"))[-1]
    assert (state.status, state.status_reason) == ("running", "prompt submitted")


def test_pre_tool_use_is_running_with_the_tool() -> None:
    state = replay(upto(payloads("p_tools"), "PreToolUse"))[-1]
    assert (state.status, state.status_reason) == ("running", "tool: Bash")


def test_post_tool_use_and_failure_are_running() -> None:
    events = payloads("p_tools")
    assert replay(upto(events, "PostToolUse"))[-1].status_reason == "tool done: Bash"
    failed = replay(upto(events, "PostToolUseFailure"))[-1]
    assert (failed.status, failed.status_reason) == ("running", "tool failed: Read")


def test_interrupted_tool_is_waiting() -> None:
    events = upto(payloads("p_tools"), "PostToolUseFailure")
    events[-1] = {**events[-1], "is_interrupt": True}
    state = replay(events)[-1]
    assert (state.status, state.status_reason) == ("waiting", "interrupted")


def test_permission_request_needs_approval_with_the_tool_and_what_it_wants() -> None:
    events = payloads("interactive")
    states = replay(upto(events, "PermissionRequest"))
    state = states[-1]
    assert (state.status, state.status_reason) == ("needs_approval", "permission: Write")
    assert state.pending is not None
    pre = first(events, "PreToolUse")
    assert state.pending.to_json() == {
        # PermissionRequest has no tool_use_id: the PreToolUse before it (same tool and input) gives it
        "id": pre["tool_use_id"],
        "kind": "permission",
        "tool": "Write",
        "summary": "Write: note.txt",  # relative to the session's cwd
        "since": 1000.0 + len(states) - 1,
        "answerable": False,
    }


def test_permission_request_held_open_is_answerable() -> None:
    events = upto(payloads("interactive"), "PermissionRequest")
    state = replay(events[:-1])[-1]
    held = fold(state, decode_hook(json.dumps(events[-1])), 2000.0, hold=True)
    assert held.pending is not None and held.pending.answerable


def test_permission_notification_after_the_request_keeps_the_pending_prompt() -> None:
    events = payloads("interactive")
    asked = replay(upto(events, "PermissionRequest"))[-1]
    notified = replay(upto(events, "Notification")[len(upto(events, "PermissionRequest")) :], 5000.0, asked)[-1]
    assert notified.status == "needs_approval"
    assert notified.pending == asked.pending  # same id, and since = when it was first asked


def test_permission_notification_alone_gives_the_pending_tool() -> None:
    # Without a PermissionRequest hook (older CLI, or not installed) the Notification alone says it.
    events = [e for e in upto(payloads("interactive"), "Notification") if e["hook_event_name"] != "PermissionRequest"]
    state = replay(events)[-1]
    assert (state.status, state.status_reason) == ("needs_approval", "permission: Write")
    assert state.pending is not None
    assert (state.pending.id, state.pending.kind, state.pending.tool) == (first(events, "PreToolUse")["tool_use_id"], "permission", "Write")
    assert state.pending.summary == "Claude needs your permission"


def test_approved_in_the_terminal_runs_again() -> None:
    events = payloads("interactive")
    after = replay(upto(events, "PostToolUse"))[-1]
    assert (after.status, after.status_reason, after.pending) == ("running", "tool done: Write", None)


def test_stop_is_waiting_for_the_next_prompt() -> None:
    state = replay(upto(payloads("interactive"), "Stop"))[-1]
    assert (state.status, state.status_reason, state.pending) == ("waiting", "turn ended", None)


def test_session_end_is_ended_with_the_reason() -> None:
    assert replay(payloads("interactive"))[-1].status_reason == "SessionEnd: prompt_input_exit"
    final = replay(payloads("p_tools"))[-1]
    assert (final.status, final.status_reason) == ("ended", "SessionEnd: other")


def test_api_error_is_failed_and_stays_failed_at_session_end() -> None:
    events = payloads("p_api_error")
    failed = replay(upto(events, "StopFailure"))[-1]
    assert (failed.status, failed.status_reason) == ("failed", "API error: overloaded")
    assert replay(events)[-1].status == "failed"  # -p: SessionEnd follows the failure


def test_api_error_without_a_message_names_the_error_class() -> None:
    payload = {**first(payloads("p_api_error"), "StopFailure"), "last_assistant_message": "", "error": "rate_limit"}
    assert fold(None, decode_hook(json.dumps(payload)), 1.0).status_reason == "API error: rate limit"


def test_rejected_prompt_needs_approval_until_idle_prompt_or_session_end() -> None:
    # The CLI sends nothing when a prompt is rejected in the terminal (recorded: Escape).
    events = payloads("interactive_reject")
    asked = replay(upto(events, "PermissionRequest"))[-1]
    assert asked.status == "needs_approval"
    idle = {**first(payloads("interactive"), "Notification"), "notification_type": "idle_prompt", "message": "Claude is waiting for your input"}
    idle["session_id"] = asked.session_id
    after = fold(asked, decode_hook(json.dumps(idle)), 9999.0)
    assert (after.status, after.status_reason, after.pending) == ("waiting", "waiting for input", None)
    assert after.last_event == asked.last_event  # the CLI saying it is idle is not activity
    assert replay(events)[-1].status == "ended"


def test_events_after_session_end_change_nothing_but_a_resume_does() -> None:
    events = payloads("p_tools")
    ended = replay(events)[-1]
    late = fold(ended, decode_hook(json.dumps(first(events, "PreToolUse"))), 5000.0)
    assert (late.status, late.status_reason) == ("ended", "SessionEnd: other")
    resume = {**first(events, "SessionStart"), "source": "resume"}
    assert fold(ended, decode_hook(json.dumps(resume)), 5001.0).status == "waiting"


def test_subagent_events_fold_into_the_parent_session() -> None:
    events = payloads("p_subagent")
    assert len({e["session_id"] for e in events}) == 1
    started = replay(upto(events, "SubagentStart"))[-1]
    assert (started.status, started.status_reason) == ("running", "subagent: general-purpose")
    stopped = replay(upto(events, "SubagentStop"))[-1]
    assert stopped.status == "running"  # the parent's turn goes on
    assert stopped.transcript_path == events[0]["transcript_path"]  # not the agent's transcript
    assert replay(events)[-1].status == "ended"


def test_a_subagent_tool_does_not_clear_the_main_threads_prompt() -> None:
    events = upto(payloads("interactive"), "PermissionRequest")
    asked = replay(events)[-1]
    agent_tool = {**first(events, "PreToolUse"), "agent_id": "a0123456789abcdef", "tool_name": "Read", "tool_use_id": "toolu_x"}
    after = fold(asked, decode_hook(json.dumps(agent_tool)), 5000.0)
    assert after.status == "needs_approval" and after.pending == asked.pending
    main_done = {**first(payloads("interactive"), "PostToolUse")}
    assert fold(after, decode_hook(json.dumps(main_done)), 5001.0).pending is None


def test_activity_only_events_change_no_status() -> None:
    events = payloads("p_tools")
    before = replay(upto(events, "PostToolUse"))[-1]
    shown = fold(before, decode_hook(json.dumps(first(events, "MessageDisplay"))), 7000.0)
    assert (shown.status, shown.status_reason) == (before.status, before.status_reason)
    assert shown.last_event == 7000.0


def test_refused_call_in_print_mode_clears_the_prompt_at_post_tool_batch() -> None:
    events = payloads("p_tools")
    asked = upto(events, "PermissionRequest")
    batch = events[len(asked)]
    assert batch["hook_event_name"] == "PostToolBatch" and "haven't granted" in batch["tool_calls"][0]["tool_response"]
    state = replay(events[: len(asked) + 1])[-1]
    assert (state.status, state.status_reason, state.pending) == ("running", "tools done", None)


@pytest.mark.parametrize(
    ("scenario", "statuses"),
    [
        # -p refuses the Write itself after PermissionRequest; PostToolBatch says the call is over
        ("p_tools", ["waiting", "running", "running", "running", "running", "running", "running", "running", "running", "needs_approval", "running", "running", "waiting", "ended"]),
        ("interactive", ["waiting", "running", "running", "needs_approval", "needs_approval", "running", "running", "running", "waiting", "ended"]),
    ],
)
def test_whole_run_status_sequence(scenario: str, statuses: list[str]) -> None:
    assert [s.status for s in replay(payloads(scenario))] == statuses


# --- summaries ---------------------------------------------------------------------------


def test_summary_masks_secrets_in_the_tool_input() -> None:
    pre = copy.deepcopy(first(payloads("p_tools"), "PermissionRequest"))
    pre.update(tool_name="Bash", tool_input={"command": "curl -H 'Authorization: Bearer abcdef1234567890abcdef' https://x"})
    state = fold(None, decode_hook(json.dumps(pre)), 1.0)
    assert state.pending is not None
    assert "abcdef1234567890abcdef" not in state.pending.summary and MASK in state.pending.summary


def test_summary_of_a_written_secret_names_only_the_file() -> None:
    state = replay(upto(payloads("p_tools"), "PermissionRequest"))[-1]
    assert state.pending is not None and state.pending.summary == "Write: out.txt"  # content held password=hunter2


@pytest.mark.parametrize(
    ("tool", "tool_input", "expected"),
    [
        ("Bash", {"command": "ls\n  -la", "description": "List"}, "Bash: ls -la"),
        ("Read", {"file_path": "/elsewhere/a.txt"}, "Read: /elsewhere/a.txt"),
        ("WebFetch", {"url": "https://example.org", "prompt": "x"}, "WebFetch: https://example.org"),
        ("Agent", {"description": "Look around", "prompt": "long"}, "Agent: Look around"),
        ("mcp__db__query", {"sql": "select 1"}, "mcp__db__query: select 1"),
        ("Mystery", {}, "Mystery"),
        (None, None, "tool"),
    ],
)
def test_summary_per_tool(tool: str | None, tool_input: dict[str, Any] | None, expected: str) -> None:
    assert summarize(tool, tool_input, "/work") == expected


def test_summary_is_one_line_of_at_most_120_characters() -> None:
    text = summarize("Bash", {"command": "echo " + "word " * 200})
    assert len(text) <= 120 and "\n" not in text and text.endswith("…")


def test_ask_user_question_is_a_question_until_answered() -> None:
    events = payloads("interactive_question")
    asked = replay(upto(events, "PermissionRequest"))[-1]
    assert (asked.status, asked.status_reason) == ("needs_approval", "question")
    assert asked.pending is not None
    assert (asked.pending.kind, asked.pending.tool) == ("question", "AskUserQuestion")
    assert asked.pending.summary == "AskUserQuestion: Which colour should the button be?"
    # the CLI's Notification calls it a permission prompt: it is still the same question
    notified = replay(upto(events, "Notification"))[-1]
    assert (notified.status_reason, notified.pending) == ("question", asked.pending)
    answered = replay(upto(events, "PostToolUse"))[-1]
    assert (answered.status, answered.pending) == ("running", None)


def test_state_round_trips_through_msgspec() -> None:
    state = replay(upto(payloads("interactive"), "PermissionRequest"))[-1]
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=HookState) == state


def test_registry_idle_after_the_prompt_means_it_was_dismissed() -> None:
    # Escape on a permission dialog: no hook event, but the live registry turns idle at once.
    asked = replay(upto(payloads("interactive_reject"), "PermissionRequest"))[-1]
    assert asked.pending is not None
    after = registry_idle(asked, asked.pending.since + 0.5)
    assert (after.status, after.status_reason, after.pending) == ("waiting", "prompt dismissed", None)
    assert after.last_event == asked.last_event


def test_registry_idle_from_before_the_prompt_changes_nothing() -> None:
    asked = replay(upto(payloads("interactive_reject"), "PermissionRequest"))[-1]
    assert asked.pending is not None
    assert registry_idle(asked, asked.pending.since - 0.5) == asked  # an old idle, read late
    running = replay(upto(payloads("interactive"), "PreToolUse"))[-1]
    assert registry_idle(running, 1e12) == running
