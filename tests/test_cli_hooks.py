"""``sessionwatch hooks install|uninstall|status`` and ``sessionwatch hook``, as a person runs them.

Every test runs the real command line (``python -m sessionwatch ...``, its own
process) with HOME pointed at a temporary directory: the user scope's file is
``$HOME/.claude/settings.json``. The last test installs with the command and
runs the real Claude Code CLI against tests/fakeapi.py: the hooks reach a
recording server (tests/hookcapture.py), the SessionStart relay through
``sessionwatch hook``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sessionwatch.integrations.claude_settings import EVENT_FORMS

from .claude_cli import ClaudeHome, run_claude
from .claude_fixtures import claude_home, fake_api  # noqa: F401 - fixtures
from .fakeapi import FakeAPI, Turn
from .hookcapture import HookRecorder
from .test_claude_settings import USER_SETTINGS


def sw(home: Path, *args: str, stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "sessionwatch", *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def user_settings(home: Path) -> Path:
    path = home / ".claude" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class Health:
    """A tiny server answering GET /healthz (200 "ok" or ``status``) and recording POSTs."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[bytes] = []
        self.hold = threading.Event()
        self.holding = False
        health = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:
                code = health.status if self.path == "/healthz" else 404
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def do_POST(self) -> None:
                health.posts.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                if health.holding:
                    health.hold.wait(30)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health() -> Iterator[Health]:
    h = Health()
    try:
        yield h
    finally:
        h.stop()


def test_install_twice_then_uninstall_gives_back_the_users_bytes(tmp_path: Path) -> None:
    settings = user_settings(tmp_path)
    settings.write_bytes(USER_SETTINGS)
    first = sw(tmp_path, "hooks", "install", "--url", "http://127.0.0.1:8765", "--token-env", "SW_T")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("\n") == 1 and first.stderr == ""
    assert f"installed sessionwatch's hooks for {len(EVENT_FORMS)} events in {settings}" in first.stdout
    installed = settings.read_bytes()
    data = json.loads(installed)
    assert set(EVENT_FORMS) <= set(data["hooks"])
    assert data["hooks"]["Stop"][0] == json.loads(USER_SETTINGS)["hooks"]["Stop"][0]  # the user's stays first
    second = sw(tmp_path, "hooks", "install", "--url", "http://127.0.0.1:8765", "--token-env", "SW_T")
    assert second.returncode == 0 and "already installed" in second.stdout and second.stdout.count("\n") == 1
    assert settings.read_bytes() == installed
    gone = sw(tmp_path, "hooks", "uninstall")
    assert gone.returncode == 0, gone.stderr
    assert f"removed {len(EVENT_FORMS)} sessionwatch hooks from {settings}" in gone.stdout
    assert settings.read_bytes() == USER_SETTINGS
    again = sw(tmp_path, "hooks", "uninstall")
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert settings.read_bytes() == USER_SETTINGS


def test_project_and_local_scopes_write_the_projects_files(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    assert sw(tmp_path, "hooks", "install", "--scope", "project", cwd=project).returncode == 0
    assert sw(tmp_path, "hooks", "install", "--scope", "local", "--project", str(project)).returncode == 0
    assert (project / ".claude" / "settings.json").exists()
    assert (project / ".claude" / "settings.local.json").exists()
    assert not (tmp_path / ".claude" / "settings.json").exists()
    assert sw(tmp_path, "hooks", "uninstall", "--scope", "project", "--project", str(project)).returncode == 0
    assert not (project / ".claude" / "settings.json").exists()  # install created it: uninstall removes it


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"{not json", "is not valid JSON"), (b"[1, 2]", "does not hold a JSON object"), (b'{"hooks": 3}', "is not an object of lists")],
)
@pytest.mark.parametrize("action", ["install", "uninstall", "status"])
def test_unusable_settings_file_is_one_line_and_left_alone(tmp_path: Path, content: bytes, words: str, action: str) -> None:
    settings = user_settings(tmp_path)
    settings.write_bytes(content)
    proc = sw(tmp_path, "hooks", action)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("sessionwatch: error: ") and words in proc.stderr
    assert settings.read_bytes() == content
    assert not settings.with_name("settings.json.sessionwatch.bak").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["hooks", "reinstall"],
        ["hooks", "install", "--scope", "global"],
        ["hooks", "install", "--url", "ftp://127.0.0.1"],
        ["hooks", "install", "--token-env", "NOT A NAME"],
        ["hooks", "install", "--approval-wait-s", "-1"],
        ["hooks"],
    ],
)
def test_bad_flag_is_one_line_and_nonzero(tmp_path: Path, args: list[str]) -> None:
    proc = sw(tmp_path, *args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / ".claude" / "settings.json").exists()


def test_status_shows_each_event_and_form_and_that_the_server_answers(tmp_path: Path, health: Health) -> None:
    settings = user_settings(tmp_path)
    settings.write_bytes(USER_SETTINGS)
    assert sw(tmp_path, "hooks", "install", "--url", health.url, "--token-env", "SW_T").returncode == 0
    proc = sw(tmp_path, "hooks", "status")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{settings}: sessionwatch hooks for {len(EVENT_FORMS)} events"
    rows = {line.split()[0]: line.split()[1:] for line in lines[1 : 1 + len(EVENT_FORMS)]}
    assert {event: row[0] for event, row in rows.items()} == EVENT_FORMS
    assert rows["Stop"][1] == f"{health.url}/hooks" and rows["Stop"][-1] == "$SW_T)"
    assert rows["SessionStart"][1:3] == ["sessionwatch", "hook"] or "-m" in rows["SessionStart"]
    assert "  other hooks, left alone: PreToolUse 2, Stop 1" in lines
    assert lines[-1] == f"server {health.url}: answers (GET /healthz: 200)"


def test_status_says_when_the_server_does_not_answer(tmp_path: Path, health: Health) -> None:
    health.status = 503
    proc = sw(tmp_path, "hooks", "status", "--url", health.url)
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [
        f"{tmp_path / '.claude' / 'settings.json'}: no such file; no hooks installed",
        f"server {health.url}: does not answer (GET /healthz: 503)",
    ]
    health.stop()
    down = sw(tmp_path, "hooks", "status", "--url", health.url)
    assert down.returncode == 0 and f"server {health.url}: does not answer" in down.stdout


def test_hook_relays_through_the_sessionwatch_command(tmp_path: Path, health: Health) -> None:
    proc = sw(tmp_path, "hook", "--url", health.url, stdin=b'{"hook_event_name": "Stop", "session_id": "s1"}')
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert health.posts == [b'{"hook_event_name": "Stop", "session_id": "s1"}']


def test_hook_is_not_held_by_a_hanging_server(tmp_path: Path, health: Health) -> None:
    health.holding = True  # the server answers only after the command has exited
    proc = sw(tmp_path, "hook", "--url", health.url, stdin=b'{"hook_event_name": "Stop"}')
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert health.posts and not health.hold.is_set()


def test_hook_loads_nothing_but_the_relay(tmp_path: Path) -> None:
    """``sessionwatch hook`` is dispatched before argparse and every other subcommand load
    (python -X importtime lists each module the process imported)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sessionwatch", "hook", "--url", "http://127.0.0.1:1"],
        input=b"", capture_output=True, env=env, timeout=60,
    )
    assert proc.returncode == 0
    loaded = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines() if "|" in line}
    ours = {m for m in loaded if m.startswith("sessionwatch")}
    assert "sessionwatch.integrations.hook_command" in ours
    assert ours <= {"sessionwatch", "sessionwatch.__main__", "sessionwatch.cli", "sessionwatch.integrations", "sessionwatch.integrations.hook_command"}
    assert not loaded & {"argparse", "sessionwatch.config", "sessionwatch.cli.common", "msgspec", "orjson"}


def test_hook_help_documents_its_flags(tmp_path: Path) -> None:
    proc = sw(tmp_path, "hook", "--help")
    assert proc.returncode == 0 and "--url" in proc.stdout and "--token-env" in proc.stdout


def test_installed_hooks_reach_the_server_from_the_real_cli(fake_api: FakeAPI, claude_home: ClaudeHome, tmp_path: Path) -> None:
    """Installed by the command; the real CLI's events arrive, SessionStart through `sessionwatch hook`."""
    recorder = HookRecorder(tmp_path)
    try:
        base = recorder.url.removesuffix("/hooks")
        proc = sw(
            claude_home.home, "hooks", "install", "--url", base, "--token-env", "SW_E2E_TOKEN",
            "--hook-command", f"{sys.executable} -m sessionwatch",
        )
        assert proc.returncode == 0, proc.stderr
        fake_api.reset([Turn.text("Hello.")])
        env = {"SW_E2E_TOKEN": "e2e-token-456", "PATH": os.environ.get("PATH", "")}
        run = run_claude(claude_home, fake_api.url, "say hello", env=env).check()
        hits = recorder.wait(lambda hs: any(h.payload.get("hook_event_name") == "SessionEnd" for h in hs), 15, "SessionEnd")
    finally:
        recorder.stop()
    assert {h.headers.get("Authorization") for h in hits} == {"Bearer e2e-token-456"}
    events = [h.payload["hook_event_name"] for h in hits]
    assert events[0] == "SessionStart" and events[-1] == "SessionEnd" and "Stop" in events
    relayed = [h.payload["hook_event_name"] for h in hits if h.headers.get("User-Agent") == "sessionwatch-hook"]
    assert relayed == ["SessionStart"]
    assert {h.payload["session_id"] for h in hits} == {run.session_id}
