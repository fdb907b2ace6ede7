"""Record every hook event the real Claude Code CLI sends, in both hook forms.

A temporary HOME's ``settings.json`` gets, for every event name the CLI
knows, one ``command`` hook (a tiny recorder that appends its stdin to a
JSON-lines file) and one ``http`` hook (POST to :class:`HookRecorder`, a real
HTTP server on 127.0.0.1, with a token header from an environment variable).
Comparing the two tells which events fire in which form.

Scenarios run the CLI against :mod:`tests.fakeapi`: ``-p`` runs (tool calls,
a failing tool, a denied Write, a subagent, an API error) and, with tmux, an
interactive run with ``--permission-mode default`` and a Write that prompts.

Regenerate the vectors in ``tests/vectors/hooks/`` with::

    python -m tests.hookcapture            # all scenarios
    python -m tests.hookcapture p_tools    # one

Payloads are saved with temporary paths, session ids and tool-use ids
normalized (:func:`normalize`) so a regenerated file differs only where the
CLI changed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .claude_cli import API_KEY, ClaudeHome, claude_bin, clean_env, project_folder, run_claude
from .fakeapi import ApiError, Block, FakeAPI, Turn, Usage

VECTORS = Path(__file__).resolve().parent / "vectors" / "hooks"

#: Every hook event name Claude Code 2.1.330 accepts in settings (from its own list).
EVENTS = (
    "PreToolUse PostToolUse PostToolUseFailure PostToolBatch Notification UserPromptSubmit UserPromptExpansion "
    "SessionStart SessionEnd Stop StopFailure SubagentStart SubagentStop PreCompact PostCompact PreModelSwitch "
    "PostModelSwitch PermissionRequest PermissionDenied Setup TeammateIdle TaskCreated TaskCompleted Elicitation "
    "ElicitationResult ConfigChange WorktreeCreate WorktreeRemove InstructionsLoaded CwdChanged FileChanged "
    "DirectoryAdded MessageDisplay"
).split()
#: Events whose hooks may *create* things (a worktree) or whose output the CLI uses as data:
#: a recorder that prints nothing could change behaviour, so they are left out.
SKIP = {"WorktreeCreate", "WorktreeRemove"}

TOKEN_VAR = "SW_CAPTURE_TOKEN"
TOKEN = "capture-token-0123456789"

_RECORDER = """\
import fcntl, json, sys, time
raw = sys.stdin.read()
line = json.dumps({"t": time.time(), "form": "command", "event": sys.argv[2], "raw": raw})
with open(sys.argv[1], "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.write(line + "\\n")
"""


@dataclass
class Hit:
    """One hook call as it arrived."""

    t: float
    form: str  # "command" | "http"
    event: str  # the settings key that fired
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


class HookRecorder:
    """An HTTP server recording every POST (the ``http`` hooks) plus the command recorder's file."""

    def __init__(self, root: Path, answers: Mapping[str, Any] | None = None) -> None:
        """``answers``: per event name, the JSON the http hook answers with (default: an empty 200)."""
        self.root = root
        self.answers = dict(answers or {})
        self.command_log = root / "command-hooks.jsonl"
        self.script = root / "record_hook.py"
        self.script.write_text(_RECORDER)
        self._http: list[Hit] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload: Any = json.loads(raw)
                except ValueError:
                    payload = raw.decode("utf-8", "replace")
                hit = Hit(time.time(), "http", self.path.rsplit("/", 1)[-1], payload, dict(self.headers))
                with recorder._lock:
                    recorder._http.append(hit)
                event = payload.get("hook_event_name") if isinstance(payload, dict) else None
                answer = json.dumps(recorder.answers[event]).encode() if event in recorder.answers else b""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def settings(self, events: tuple[str, ...] = EVENTS) -> dict[str, Any]:
        """``settings.json`` with a command and an http hook on every event."""
        hooks: dict[str, Any] = {}
        for event in events:
            if event in SKIP:
                continue
            hooks[event] = [
                {
                    "hooks": [
                        {"type": "command", "command": f"{sys.executable} {self.script} {self.command_log} {event}", "timeout": 10},
                        {
                            "type": "http",
                            "url": f"{self.url}/{event}",
                            "headers": {"Authorization": f"Bearer ${TOKEN_VAR}"},
                            "allowedEnvVars": [TOKEN_VAR],
                            "timeout": 10,
                        },
                    ]
                }
            ]
        return {"hooks": hooks}

    def hits(self) -> list[Hit]:
        found: list[Hit] = []
        if self.command_log.exists():
            text = self.command_log.read_text()
            # a hook script may be writing its line right now: only whole lines count
            for line in text[: text.rfind("\n") + 1].splitlines():
                rec = json.loads(line)
                try:
                    payload = json.loads(rec["raw"])
                except ValueError:
                    payload = rec["raw"]
                found.append(Hit(rec["t"], "command", rec["event"], payload))
        with self._lock:
            found.extend(self._http)
        return sorted(found, key=lambda h: h.t)

    def wait(self, predicate: Callable[[list[Hit]], bool], timeout: float, what: str) -> list[Hit]:
        deadline = time.monotonic() + timeout
        while True:
            hits = self.hits()
            if predicate(hits):
                return hits
            if time.monotonic() > deadline:
                seen = [f"{h.form}:{h.event}" for h in hits]
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; hook calls so far: {seen}")
            time.sleep(0.05)


def has(event: str, form: str = "command", **match: Any) -> Callable[[list[Hit]], bool]:
    def check(hits: list[Hit]) -> bool:
        return any(
            h.event == event and h.form == form and all(isinstance(h.payload, dict) and h.payload.get(k) == v for k, v in match.items())
            for h in hits
        )

    return check


# --- normalizing -----------------------------------------------------------------


def normalize(value: Any, home: Path, cwd: Path, ids: dict[str, str]) -> Any:
    """Temporary paths → ``$HOME``/``$CWD``; session, tool-use and agent ids → stable placeholders."""
    if isinstance(value, dict):
        return {k: normalize(v, home, cwd, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v, home, cwd, ids) for v in value]
    if not isinstance(value, str):
        return value
    text = value.replace(project_folder(cwd), "<project>").replace(str(cwd), "$CWD").replace(str(home), "$HOME")

    def stable(prefix: str) -> Callable[[re.Match[str]], str]:
        def sub(m: re.Match[str]) -> str:
            key = m.group(0)
            if key not in ids:
                n = int(ids.get(f"#{prefix}", "0")) + 1  # a counter per kind of id
                ids[f"#{prefix}"] = str(n)
                ids[key] = f"00000000-0000-4000-8000-{n:012d}" if prefix == "uuid-" else f"{prefix}{n}"
            return ids[key]

        return sub

    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", stable("uuid-"), text)
    text = re.sub(r"toolu_[0-9a-f]{24}", stable("toolu_"), text)
    text = re.sub(r"\ba[0-9a-f]{16}\b", stable("agent-"), text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    return text


@dataclass
class Capture:
    """What one scenario recorded, ready to save."""

    name: str
    description: str
    hits: list[Hit]
    home: Path
    cwd: Path
    start: float
    notes: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        ids: dict[str, str] = {}
        calls = []
        for h in self.hits:
            entry: dict[str, Any] = {
                "form": h.form,
                "event": h.event,
                "after_s": round(h.t - self.start, 2),
                "payload": normalize(h.payload, self.home, self.cwd, ids),
            }
            if h.form == "http":
                entry["authorization"] = h.headers.get("Authorization", "").replace(TOKEN, "<token>")
            calls.append(entry)
        return {"scenario": self.name, "description": self.description, "cli": cli_version(), "notes": self.notes, "calls": calls}

    def save(self, folder: Path = VECTORS) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.json"
        path.write_text(json.dumps(self.as_json(), indent=1, ensure_ascii=False) + "\n")
        return path


def cli_version() -> str:
    out = subprocess.run([str(claude_bin()), "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.split()[0] if out else "?"


@contextmanager
def capturing(root: Path) -> Iterator[tuple[ClaudeHome, HookRecorder, FakeAPI]]:
    where = ClaudeHome.create(root)
    recorder = HookRecorder(root)
    where.write_settings(recorder.settings())
    api = FakeAPI().start()
    try:
        yield where, recorder, api
    finally:
        api.stop()
        recorder.stop()


# --- scenarios: -p -----------------------------------------------------------------


def p_tools(root: Path) -> Capture:
    """-p: a Bash call, a Read that fails, a Write the default mode denies, then a text answer."""
    with capturing(root) as (where, rec, api):
        api.reset(
            [
                Turn.tool_use("Bash", {"command": "echo hello", "description": "Say hello"}),
                Turn.tool_use("Read", {"file_path": str(where.cwd / "missing.txt")}),
                Turn.tool_use("Write", {"file_path": str(where.cwd / "out.txt"), "content": "password=hunter2\n"}),
                Turn.text("Done."),
            ]
        )
        start = time.time()
        run = run_claude(where, api.url, "use some tools", env={TOKEN_VAR: TOKEN})
        hits = rec.wait(has("SessionEnd"), 15, "SessionEnd")
        return Capture("p_tools", p_tools.__doc__ or "", hits, where.home, where.cwd, start, {"exit": run.returncode, "wrote_file": (where.cwd / "out.txt").exists()})


def p_subagent(root: Path) -> Capture:
    """-p: the model starts a subagent (Agent tool) that answers in text."""
    with capturing(root) as (where, rec, api):
        api.reset(
            [
                Turn.tool_use("Agent", {"description": "Look around", "prompt": "Say hi.", "subagent_type": "general-purpose"}),
                # The subagent runs in the background: its request and the parent's
                # next one race, so every later answer is plain text.
                *[Turn.text("Hi.") for _ in range(4)],
            ]
        )
        start = time.time()
        run = run_claude(where, api.url, "ask a subagent", env={TOKEN_VAR: TOKEN})
        hits = rec.wait(has("SessionEnd"), 15, "SessionEnd")
        tools = api.agent_requests()[0].tools
        return Capture(
            "p_subagent", p_subagent.__doc__ or "", hits, where.home, where.cwd, start, {"exit": run.returncode, "agent_tool_offered": "Agent" in tools}
        )


def p_api_error(root: Path) -> Capture:
    """-p: the API answers 529 overloaded (CLAUDE_CODE_MAX_RETRIES=1, so twice)."""
    with capturing(root) as (where, rec, api):
        api.reset([ApiError(529, "overloaded_error", "Overloaded")] * 3)
        start = time.time()
        run = run_claude(where, api.url, "this fails", env={TOKEN_VAR: TOKEN}, timeout=120)
        hits = rec.wait(has("SessionEnd"), 15, "SessionEnd")
        return Capture(
            "p_api_error", p_api_error.__doc__ or "", hits, where.home, where.cwd, start, {"exit": run.returncode, "requests": len(api.agent_requests())}
        )


# --- scenarios: interactive in tmux ----------------------------------------------------


def seed_interactive(where: ClaudeHome) -> None:
    """``$HOME/.claude.json`` that skips onboarding, the key approval and the trust dialog."""
    (where.home / ".claude.json").write_text(
        json.dumps(
            {
                "hasCompletedOnboarding": True,
                "lastOnboardingVersion": cli_version(),
                "customApiKeyResponses": {"approved": [API_KEY[-20:]], "rejected": []},
                "projects": {str(where.cwd): {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True}},
            }
        )
    )


class Tmux:
    """One interactive CLI in a detached tmux session on a private socket (killed on exit)."""

    def __init__(self, where: ClaudeHome, base_url: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.tmux = shutil.which("tmux")
        if self.tmux is None:
            raise RuntimeError("tmux is not installed")
        self.socket = f"sw-capture-{uuid.uuid4().hex[:8]}"
        full = clean_env(where.home, base_url, env)
        full["TERM"] = "xterm-256color"
        command = ["env", "-i", *(f"{k}={v}" for k, v in full.items()), str(claude_bin()), *args]
        subprocess.run(
            [self.tmux, "-L", self.socket, "new-session", "-d", "-s", "cc", "-x", "160", "-y", "50", "-c", str(where.cwd), *command],
            check=True,
            timeout=10,
        )

    def keys(self, *keys: str) -> None:
        assert self.tmux is not None
        subprocess.run([self.tmux, "-L", self.socket, "send-keys", "-t", "cc", *keys], check=True, timeout=10)

    def type_line(self, text: str) -> None:
        self.keys("-l", text)
        time.sleep(0.3)  # the TUI drops an Enter that arrives with the text (claude-code-offline.md)
        self.keys("Enter")

    def screen(self) -> str:
        assert self.tmux is not None
        return subprocess.run([self.tmux, "-L", self.socket, "capture-pane", "-p", "-t", "cc"], capture_output=True, text=True, timeout=10).stdout

    def wait_screen(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.screen():
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not on screen after {timeout} s:\n{self.screen()}")
            time.sleep(0.1)

    def alive(self) -> bool:
        assert self.tmux is not None
        return subprocess.run([self.tmux, "-L", self.socket, "has-session", "-t", "cc"], capture_output=True, timeout=10).returncode == 0

    def close(self) -> None:
        assert self.tmux is not None
        subprocess.run([self.tmux, "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


def interactive(root: Path) -> Capture:
    """Interactive (tmux), --permission-mode default: a Write prompts, approved with 1, a text turn, then /exit."""
    with capturing(root) as (where, rec, api):
        seed_interactive(where)
        target = where.cwd / "note.txt"
        api.reset([Turn.tool_use("Write", {"file_path": str(target), "content": "api_key=sk-ant-api03-" + "x" * 30 + "\n"}), Turn.text("Written.")])
        start = time.time()
        term = Tmux(where, api.url, "--permission-mode", "default", env={TOKEN_VAR: TOKEN})
        notes: dict[str, Any] = {}
        try:
            rec.wait(has("SessionStart"), 30, "SessionStart")
            notes["transcript_exists_at_session_start"] = bool(where.transcripts())
            term.wait_screen("? for shortcuts", 30)  # the prompt box is ready for typing
            term.type_line("write a note")
            hits = rec.wait(has("PermissionRequest"), 30, "PermissionRequest")
            asked = next(h.t for h in hits if h.event == "PermissionRequest")
            # Wait for the Notification (permission_prompt) that comes seconds later, then approve.
            hits = rec.wait(has("Notification"), 20, "Notification permission_prompt")
            notes["notification_after_permission_request_s"] = round(next(h.t for h in hits if h.event == "Notification") - asked, 2)
            term.keys("1")
            rec.wait(has("Stop"), 30, "Stop")
            notes["file_written"] = target.exists()
            term.type_line("/exit")
            rec.wait(has("SessionEnd"), 30, "SessionEnd")
            deadline = time.monotonic() + 15
            while term.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            term.close()
        return Capture("interactive", interactive.__doc__ or "", rec.hits(), where.home, where.cwd, start, notes)


def interactive_reject(root: Path) -> Capture:
    """Interactive (tmux), --permission-mode default: a Write prompts and is rejected with Escape; then /exit."""
    with capturing(root) as (where, rec, api):
        seed_interactive(where)
        api.reset([Turn.tool_use("Write", {"file_path": str(where.cwd / "no.txt"), "content": "no\n"})])
        start = time.time()
        term = Tmux(where, api.url, "--permission-mode", "default", env={TOKEN_VAR: TOKEN})
        try:
            rec.wait(has("SessionStart"), 30, "SessionStart")
            term.wait_screen("? for shortcuts", 30)
            term.type_line("write something")
            rec.wait(has("PermissionRequest"), 30, "PermissionRequest")
            term.wait_screen("Do you want", 30)
            deadline = time.monotonic() + 30
            while "Do you want" in term.screen():  # again while it stays (a key can land before it takes input)
                assert time.monotonic() < deadline, f"the dialog did not close:\n{term.screen()}"
                term.keys("Escape")
                time.sleep(0.5)  # let the dialog redraw before looking again
            # Record whatever fires after a rejection for a while: the observation is that nothing does.
            time.sleep(2.0)
            term.type_line("/exit")
            rec.wait(has("SessionEnd"), 30, "SessionEnd")
        finally:
            term.close()
        return Capture("interactive_reject", interactive_reject.__doc__ or "", rec.hits(), where.home, where.cwd, start)


def interactive_question(root: Path) -> Capture:
    """Interactive (tmux), --permission-mode default: the model asks with AskUserQuestion; the first option is chosen."""
    question = {
        "questions": [
            {
                "question": "Which colour should the button be?",
                "header": "Colour",
                "options": [{"label": "Red", "description": "warm"}, {"label": "Blue", "description": "cool"}],
                "multiSelect": False,
            }
        ]
    }
    with capturing(root) as (where, rec, api):
        seed_interactive(where)
        api.reset([Turn.tool_use("AskUserQuestion", question), Turn.text("Red it is.")])
        start = time.time()
        term = Tmux(where, api.url, "--permission-mode", "default", env={TOKEN_VAR: TOKEN})
        notes: dict[str, Any] = {}
        try:
            rec.wait(has("SessionStart"), 30, "SessionStart")
            term.wait_screen("? for shortcuts", 30)
            term.type_line("ask me")
            rec.wait(has("PreToolUse"), 30, "PreToolUse")
            term.wait_screen("Which colour", 30)
            asked = time.time()
            # Whatever the CLI sends while the question waits (a Notification comes ~6 s after a prompt).
            try:
                rec.wait(has("Notification"), 12, "Notification")
                notes["notification_after_question_s"] = round(next(h.t for h in rec.hits() if h.event == "Notification") - asked, 2)
            except AssertionError:
                notes["notification_after_question_s"] = None
            term.keys("Enter")  # the first option
            rec.wait(has("Stop"), 30, "Stop")
            term.type_line("/exit")
            rec.wait(has("SessionEnd"), 30, "SessionEnd")
        finally:
            term.close()
        return Capture("interactive_question", interactive_question.__doc__ or "", rec.hits(), where.home, where.cwd, start, notes)


SCENARIOS: dict[str, Callable[[Path], Capture]] = {
    "p_tools": p_tools,
    "p_subagent": p_subagent,
    "p_api_error": p_api_error,
    "interactive": interactive,
    "interactive_reject": interactive_reject,
    "interactive_question": interactive_question,
}


def fired_table(captures: list[dict[str, Any]]) -> str:
    """README table: per event, which forms fired in which scenarios."""
    rows: dict[str, dict[str, set[str]]] = {}
    for cap in captures:
        for call in cap["calls"]:
            rows.setdefault(call["event"], {}).setdefault(call["form"], set()).add(cap["scenario"])
    lines = ["| event | command hook fired in | http hook fired in |", "|---|---|---|"]
    for event in EVENTS:
        if event in rows:
            forms = rows[event]
            lines.append(f"| {event} | {', '.join(sorted(forms.get('command', set()))) or '—'} | {', '.join(sorted(forms.get('http', set()))) or '**never**'} |")
    silent = [e for e in EVENTS if e not in rows and e not in SKIP]
    lines.append("")
    lines.append("Configured but never fired in these scenarios: " + ", ".join(silent) + ".")
    return "\n".join(lines)


README_HEAD = """\
# Claude Code hook payloads, as the real CLI sends them

Recorded from Claude Code {cli} against tests/fakeapi.py by `python -m tests.hookcapture`
(which rewrites this file). Every event had one `command` hook and one `http` hook
(`headers` `Authorization: Bearer $SW_CAPTURE_TOKEN`, `allowedEnvVars`); each `<scenario>.json`
holds the calls in arrival order with `after_s` (seconds after the CLI started), temporary paths as
`$HOME` / `$CWD` / `<project>`, ids renumbered.

"""

README_TAIL = """
Notes (see the scenario files for the numbers):

- `http` hooks never fire for SessionStart (the CLI logs "HTTP hooks are not supported for SessionStart";
  the same code path names Setup): install the `sessionwatch hook` command form there.
- The `http` hooks carried `Authorization: Bearer <token>` from the environment variable named in
  `allowedEnvVars`.
- StopFailure's payload has `error` (e.g. `server_error` for a 529) and `last_assistant_message`
  (the CLI's "API Error: 529 Overloaded ..." text); no `error_type` / `error_message`. In `-p` the process
  exits right after it: the command form was not always recorded before exit, the http form was.
- Interactive: SessionStart fires before the transcript exists; Notification `permission_prompt`
  comes ~6 s after PermissionRequest; a prompt rejected with Escape is followed by nothing (no
  PostToolUse, no Stop) until the next prompt or SessionEnd (`prompt_input_exit` after `/exit`).
- AskUserQuestion (interactive) goes through the permission path: PreToolUse, PermissionRequest, then
  Notification `permission_prompt` ("Claude needs your permission") ~6 s later; the answer comes back in
  PostToolUse's `tool_response.answers`.
- `-p`: a Write the default mode refuses still fires PermissionRequest (then nothing for that tool);
  SessionEnd `reason` is `other`.
- Subagents (the `Agent` tool, run in the background in this version): SubagentStart/SubagentStop carry
  the parent's `session_id` plus `agent_id`, `agent_type`, `agent_transcript_path`; the finished agent's
  `<task-notification>` arrives as a UserPromptSubmit.
- MessageDisplay (new, not in the hook docs) fires for each displayed assistant text, also for API errors.
"""


def main(names: list[str]) -> int:
    chosen = names or list(SCENARIOS)
    for name in chosen:
        with tempfile.TemporaryDirectory(prefix=f"hookcap-{name}-") as tmp:
            cap = SCENARIOS[name](Path(tmp))
            path = cap.save()
            print(f"{name}: {len(cap.hits)} hook calls -> {path}", file=sys.stderr)
    captures = [json.loads(p.read_text()) for p in sorted(VECTORS.glob("*.json"))]
    readme = VECTORS / "README.md"
    readme.write_text(README_HEAD.format(cli=captures[0]["cli"] if captures else "?") + fired_table(captures) + "\n" + README_TAIL)
    print(readme.read_text())
    return 0


if __name__ == "__main__":
    os.environ.pop("SESSIONWATCH_TOKEN", None)
    raise SystemExit(main(sys.argv[1:]))
