"""Exact status from hooks and the live registry, end to end: the real Claude
Code CLI against tests/fakeapi.py, a real ``sessionwatch serve`` with the
hooks installed into the temporary HOME's settings (integrations/claude_settings),
statuses read from ``/stream``."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwatch.integrations.claude_settings import HookPlan, install
from sessionwatch.sources.claude.live import read_live

from .claude_cli import ClaudeHome, ClaudeProcess, run_claude, tokens_from_model_usage
from .claude_fixtures import claude_home, fake_api  # noqa: F401 - fixtures
from .conftest import Server, free_port, require_tool
from .fakeapi import ApiError, FakeAPI, Turn, Usage
from .hookcapture import Tmux, seed_interactive
from .sse import Received, SSEClient


@dataclass
class Seen:
    """One session as one stream event showed it."""

    status: str
    reason: str | None
    pending: dict[str, Any] | None
    session: dict[str, Any]
    #: the server's time of the event (its ``timestamp``)
    at: float


@dataclass
class Watch:
    """Follows ``/stream`` and keeps every state each session was shown in."""

    client: SSEClient
    seen: dict[str, list[Seen]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pump(self) -> None:
        for item in self.client.drain():
            self._take(item)

    def _take(self, item: Received) -> None:
        with self.lock:
            for s in item.data.get("sessions", []):
                if "status" not in s:
                    continue
                history = self.seen.setdefault(s["id"], [])
                history.append(Seen(s["status"], s.get("status_reason"), s.get("pending"), s, float(item.data["timestamp"])))

    def history(self, sid: str) -> list[Seen]:
        self.pump()
        return list(self.seen.get(sid, []))

    def statuses(self, sid: str) -> list[str]:
        out: list[str] = []
        for s in self.history(sid):
            if not out or out[-1] != s.status:
                out.append(s.status)
        return out

    def wait(self, sid: str, predicate: Callable[[Seen], bool], timeout: float, what: str) -> Seen:
        deadline = time.monotonic() + timeout
        while True:
            for s in self.history(sid):
                if predicate(s):
                    return s
            if time.monotonic() > deadline:
                raise AssertionError(f"{sid}: no {what} within {timeout} s; statuses {self.statuses(sid)}")
            try:
                self._take(self.client.next(timeout=min(0.5, max(0.01, deadline - time.monotonic()))))
            except AssertionError:
                pass


@contextmanager
def serving(claude_home: ClaudeHome, tmp_path: Path, *, hooks: bool) -> Iterator[tuple[Server, Watch]]:
    claude_home.projects_dir.mkdir(parents=True, exist_ok=True)
    srv = Server(
        claude_home.projects_dir, tmp_path / "sw.db", free_port(),
        ["--claude-dir", str(claude_home.claude_dir), "--idle-after-s", "600"], tmp_path / "server.log",
    ).start()
    if hooks:
        # SessionStart fires only as a command hook: the relay, run by this interpreter.
        plan = HookPlan(url=srv.url, hook_command=(sys.executable, "-m", "sessionwatch.integrations.hook_command"))
        install(claude_home.claude_dir / "settings.json", plan)
    client = SSEClient(srv.url + "/stream").start()
    watch = Watch(client)
    try:
        assert watch.client.next(timeout=10).event == "init"
        yield srv, watch
    finally:
        client.stop()
        srv.stop()


@pytest.fixture
def served(claude_home: ClaudeHome, tmp_path: Path) -> Iterator[tuple[Server, Watch]]:
    """A server over the temporary HOME's ~/.claude, its hooks installed there, and a /stream watch."""
    with serving(claude_home, tmp_path, hooks=True) as both:
        yield both


@pytest.fixture
def served_without_hooks(claude_home: ClaudeHome, tmp_path: Path) -> Iterator[tuple[Server, Watch]]:
    """The same server, no hooks installed: only the transcripts and the live registry."""
    with serving(claude_home, tmp_path, hooks=False) as both:
        yield both


def iso_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def approve_in_terminal(term: Tmux, watch: Watch, sid: str, asked: Seen, timeout: float = 30) -> Seen:
    """Press ``1`` in the dialog, again while it stays on screen (a key can land
    before the dialog takes input on a loaded machine); the first ``running`` after."""
    deadline = time.monotonic() + timeout
    while True:
        if "Do you want" in term.screen():
            term.keys("1")
        try:
            return watch.wait(sid, lambda s: s.status == "running" and s.at > asked.at, 2, "running after approval")
        except AssertionError:
            if time.monotonic() > deadline:
                raise AssertionError(f"not approved within {timeout} s:\n{term.screen()}") from None


def test_print_run_is_running_then_waiting_then_ended_with_exact_tokens_and_cost(
    fake_api: FakeAPI, claude_home: ClaudeHome, served: tuple[Server, Watch]
) -> None:
    _, watch = served
    fake_api.reset(
        [
            Turn.tool_use("Bash", {"command": "echo hi", "description": "Print hi"}, Usage(1500, 80, 3000, 0), text="I'll run it."),
            Turn.text("It printed hi.", Usage(200, 40, 100, 4500)),
        ]
    )
    run = run_claude(claude_home, fake_api.url, "run echo hi for me").check()
    sid = run.session_id
    final = watch.wait(sid, lambda s: s.status == "ended", 15, "ended")
    assert final.reason == "SessionEnd: other" and final.pending is None
    statuses = watch.statuses(sid)
    first_run = statuses.index("running")
    assert statuses[first_run:] == ["running", "waiting", "ended"], statuses
    assert "tool: Bash" in [s.reason for s in watch.history(sid)]
    # The transcript's numbers arrive through the watcher; the status stays the hooks'.
    want = tokens_from_model_usage(run.result["modelUsage"]).as_dict()
    # (the transcript's last lines may land before or after SessionEnd: the last state has both)
    done = watch.wait(sid, lambda s: s.session["tokens"] == want and s.status == "ended", 15, "ended with the CLI's exact tokens")
    assert done.reason == "SessionEnd: other"
    cost, cli = done.session["cost_usd"], run.result["total_cost_usd"]
    assert cost is not None and abs(cost - cli) <= 0.01 * cli, (cost, cli)


def test_api_error_fails_the_session_with_the_reason(
    fake_api: FakeAPI, claude_home: ClaudeHome, served: tuple[Server, Watch]
) -> None:
    _, watch = served
    fake_api.reset([ApiError(529, "overloaded_error", "Overloaded")] * 3)
    run = run_claude(claude_home, fake_api.url, "this fails", timeout=120)  # CLAUDE_CODE_MAX_RETRIES=1
    sid = run.session_id
    failed = watch.wait(sid, lambda s: s.status == "failed", 15, "failed")
    assert failed.reason == "API error: overloaded"
    # SessionEnd and the process's exit come after: failed stays, with its reason.
    with httpx.Client(timeout=5) as http:
        deadline = time.monotonic() + 15
        while not (claude_home.claude_dir / "sessions").exists() or any((claude_home.claude_dir / "sessions").glob("*.json")):
            assert time.monotonic() < deadline, "the CLI's registry entry outlived it"
            time.sleep(0.1)
        shown = http.get(served[0].url + f"/sessions/{sid}").json()
    assert (shown["status"], shown["status_reason"]) == ("failed", "API error: overloaded")


def test_interactive_session_listed_then_needs_approval_then_running_then_ended(
    fake_api: FakeAPI, claude_home: ClaudeHome, served: tuple[Server, Watch]
) -> None:
    require_tool("tmux")
    srv, watch = served
    seed_interactive(claude_home)
    target = claude_home.cwd / "note.txt"
    fake_api.reset([Turn.tool_use("Write", {"file_path": str(target), "content": "hello\n"}), Turn.text("Written.")])
    sid = str(uuid.uuid4())
    term = Tmux(claude_home, fake_api.url, "--permission-mode", "default", "--session-id", sid)
    try:
        # Listed before its first prompt (no transcript yet).
        listed = watch.wait(sid, lambda s: True, 30, "the session listed")
        assert listed.session["project"] == str(claude_home.cwd)
        term.wait_screen("? for shortcuts", 30)
        assert not claude_home.transcripts()
        assert watch.statuses(sid)[-1] == "waiting"
        term.type_line("write a note")
        asked = watch.wait(sid, lambda s: s.status == "needs_approval" and s.pending is not None, 30, "needs_approval with pending")
        assert asked.pending is not None and asked.pending["tool"] == "Write"
        assert asked.pending["summary"] == "Write: note.txt" and asked.reason == "permission: Write"
        # Shown within 1 s of the PermissionRequest hook's arrival (pending.since), not ~6 s later
        # with the Notification.
        assert asked.at - iso_ts(asked.pending["since"]) < 1.0, (asked.at, asked.pending["since"])
        # the dialog is up once the registry says so; approve it in the terminal
        registry = claude_home.claude_dir / "sessions"
        deadline = time.monotonic() + 30
        while getattr(read_live(registry).live.get(sid), "waiting_for", None) != "permission prompt":
            assert time.monotonic() < deadline, f"no permission dialog:\n{term.screen()}"
            time.sleep(0.1)
        term.wait_screen("Do you want", 30)  # drawn a moment after the registry says so
        approved = approve_in_terminal(term, watch, sid, asked)
        assert approved.reason == "tool done: Write"
        watch.wait(sid, lambda s: s.status == "waiting" and s.reason == "turn ended", 30, "the turn's end")
        assert target.read_text() == "hello\n"
        term.type_line("/exit")
        # the registry may see the process gone ("process exited") a moment
        # before the SessionEnd hook arrives; then the hook's reason follows
        watch.wait(sid, lambda s: s.status == "ended" and s.reason == "SessionEnd: prompt_input_exit", 30, "ended by SessionEnd")
    finally:
        term.close()
    statuses = watch.statuses(sid)
    assert statuses.index("needs_approval") < statuses.index("running", statuses.index("needs_approval")) < statuses.index("ended")


def test_without_hooks_the_live_registry_lists_a_process_at_start_and_ends_it_when_killed(
    fake_api: FakeAPI, claude_home: ClaudeHome, served_without_hooks: tuple[Server, Watch]
) -> None:
    _, watch = served_without_hooks
    sid = str(uuid.uuid4())
    with ClaudeProcess(claude_home, fake_api.url, "--session-id", sid) as cli:
        listed = watch.wait(sid, lambda s: s.status == "waiting", 30, "the session listed from the registry")
        assert (listed.session["project"], listed.session["version"], listed.reason) == (str(claude_home.cwd), "2.1.330", "idle")
        assert not claude_home.transcripts()  # before any prompt, so before any transcript
        os.kill(cli.pid, signal.SIGKILL)  # no SessionEnd, and its registry file stays behind
        cli.proc.wait(10)
    assert any((claude_home.claude_dir / "sessions").glob("*.json"))
    ended = watch.wait(sid, lambda s: s.status == "ended", 10, "ended once the process is gone")
    assert ended.reason == "process exited"


def test_prompt_dismissed_with_escape_is_cleared_by_the_registry(
    fake_api: FakeAPI, claude_home: ClaudeHome, served: tuple[Server, Watch]
) -> None:
    """Escape sends no hook event at all; the registry's idle clears the prompt (not ~60 s later)."""
    require_tool("tmux")
    _, watch = served
    seed_interactive(claude_home)
    fake_api.reset([Turn.tool_use("Write", {"file_path": str(claude_home.cwd / "no.txt"), "content": "no\n"})])
    sid = str(uuid.uuid4())
    term = Tmux(claude_home, fake_api.url, "--permission-mode", "default", "--session-id", sid)
    try:
        watch.wait(sid, lambda s: True, 30, "the session listed")
        term.wait_screen("? for shortcuts", 30)
        term.type_line("write something")
        asked = watch.wait(sid, lambda s: s.status == "needs_approval" and s.pending is not None, 30, "needs_approval")
        term.wait_screen("Do you want", 30)
        deadline = time.monotonic() + 30
        while True:  # again while the dialog stays on screen (a key can land before it takes input)
            if "Do you want" in term.screen():
                term.keys("Escape")
            try:
                cleared = watch.wait(sid, lambda s: s.at > asked.at and s.status != "needs_approval", 3, "the prompt cleared")
                break
            except AssertionError:
                assert time.monotonic() < deadline, f"the prompt was not cleared:\n{term.screen()}"
        assert (cleared.status, cleared.reason, cleared.pending) == ("waiting", "prompt dismissed", None)
        assert not (claude_home.cwd / "no.txt").exists()
        term.type_line("/exit")
        watch.wait(sid, lambda s: s.status == "ended", 30, "ended")
    finally:
        term.close()
