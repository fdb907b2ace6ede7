"""``sessionwatch run`` and ``sessionwatch.run.run_claude`` with the real Claude
Code CLI against tests/fakeapi.py (issue 11, item 8).

The CLI's own figures are read from its stdout through a ``tee`` wrapper given
as ``--claude-bin``; reports go to a recording HTTP server standing in for
``POST /runs``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwatch.errors import ConfigError
from sessionwatch.run import EXIT_BUDGET, EXIT_INTERRUPTED, Progress, RunUpdate, claude_command, run_claude

from .claude_cli import ClaudeHome, claude_bin, clean_env, parse_stream
from .claude_fixtures import claude_home, fake_api  # noqa: F401 - fixtures
from .conftest import Server, free_port, wait_for
from .fakeapi import ApiError, FakeAPI, Turn, Usage

TOOL_TURNS = [
    Turn.tool_use("Bash", {"command": "echo hi", "description": "say hi"}, text="Let me check."),
    Turn.text("All done.", usage=Usage(1000, 200)),
]


class Recorder:
    """A stand-in for the server's ``POST /runs``: records each report and
    answers ``{"stop": ..., "max_cost_usd": ...}`` (or ``status``)."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.stop = False
        self.cap: float | None = None
        self.status = 200
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with recorder.lock:
                    recorder.reports.append(body)
                    recorder.headers.append(dict(self.headers))
                    answer = {"stop": recorder.stop, "max_cost_usd": recorder.cap} if recorder.status == 200 else {"error": "no"}
                data = json.dumps(answer).encode()
                self.send_response(recorder.status if self.path == "/runs" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def states(self) -> list[str]:
        with self.lock:
            return [r["state"] for r in self.reports]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


@pytest.fixture
def tee_claude(tmp_path: Path) -> tuple[Path, Path]:
    """A ``--claude-bin`` that runs the real CLI and copies its stdout to a file (the CLI's own figures)."""
    out = tmp_path / "claude-stdout.jsonl"
    wrapper = tmp_path / "claude-tee"
    wrapper.write_text(f'#!/bin/bash\nexec "{claude_bin()}" "$@" > >(tee -a "{out}")\n')
    wrapper.chmod(0o755)
    return wrapper, out


def cli_result(out: Path) -> dict[str, Any]:
    results = [m for m in parse_stream(out.read_text()) if m.get("type") == "result"]
    assert len(results) == 1, out.read_text()[-2000:]
    return results[0]


def claude_pids(marker: str) -> list[int]:
    """Processes whose command line holds ``marker`` (a session id passed to the CLI)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and b"sessionwatch" not in cmdline:
                found.append(int(entry.name))
    return found


def sessionwatch_run(where: ClaudeHome, api: FakeAPI, *args: str, claude_args: list[str], **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sessionwatch", "run", "--claude-bin", str(claude_bin()), *args, "--", *claude_args],
        cwd=where.cwd, env=clean_env(where.home, api.url), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )


# --- the command line --------------------------------------------------------------


def test_claude_command_adds_only_what_the_args_lack() -> None:
    cmd, sid = claude_command("claude", ["-p", "hi"])
    assert cmd[:4] == ["claude", "--output-format", "stream-json", "--verbose"] and cmd[-2:] == ["-p", "hi"]
    assert sid is not None and f"--session-id={sid}" in cmd
    cmd, sid = claude_command("claude", ["--print", "--verbose", "--output-format=stream-json", "--resume", "abc", "hi"])
    assert cmd == ["claude", "--print", "--verbose", "--output-format=stream-json", "--resume", "abc", "hi"] and sid is None
    assert claude_command("claude", ["-c", "go on"])[1] is None
    with pytest.raises(ConfigError, match="stream-json"):
        claude_command("claude", ["-p", "hi", "--output-format", "text"])


# --- the Python API ----------------------------------------------------------------


def test_run_ends_with_the_cli_figures_and_calls_back_on_each_change(
    fake_api: FakeAPI, claude_home: ClaudeHome, tee_claude: tuple[Path, Path]
) -> None:
    fake_api.reset(TOOL_TURNS)
    updates: list[RunUpdate] = []

    def broken(update: RunUpdate) -> None:
        updates.append(update)
        raise RuntimeError("a callback that fails is logged, not fatal")

    result = run_claude(
        ["-p", "hello"], on_update=broken, claude_bin=str(tee_claude[0]),
        cwd=claude_home.cwd, env=clean_env(claude_home.home, fake_api.url),
    )
    cli = cli_result(tee_claude[1])
    assert result.exit_code == 0 and result.state == "ended" and result.status_reason is None
    assert (result.figures.total_cost_usd, result.figures.num_turns, result.figures.duration_ms) == (
        cli["total_cost_usd"], cli["num_turns"], cli["duration_ms"],
    )
    assert result.session_id == cli["session_id"] and result.result == "All done."
    states = [u.state for u in updates]
    assert states[0] == "starting" and states[-1] == "ended"
    assert "running" in states and states.index("waiting") > states.index("running")
    assert [s for s in states if s in ("ended", "failed")] == ["ended"]
    last = updates[-1]
    assert (last.total_cost_usd, last.num_turns, last.duration_ms, last.exit_code) == (
        cli["total_cost_usd"], cli["num_turns"], cli["duration_ms"], 0,
    )
    assert last.cost_usd == cli["total_cost_usd"] and last.tools == 1 and last.turns == 2
    assert last.model == "claude-opus-5-5"
    # never the partial usage of stream-json assistant messages: no cost before the first result
    waiting = states.index("waiting")
    assert all(u.total_cost_usd is None for u in updates[:waiting])


def test_a_failing_run_exits_non_zero(fake_api: FakeAPI, claude_home: ClaudeHome) -> None:
    fake_api.reset([ApiError(529, "overloaded_error", "Overloaded")] * 2)
    result = run_claude(["-p", "hello"], claude_bin=str(claude_bin()), cwd=claude_home.cwd, env=clean_env(claude_home.home, fake_api.url))
    assert result.exit_code != 0 and result.state == "failed"
    assert result.figures.is_error and result.status_reason and "Overloaded" in result.status_reason


def test_budget_stops_the_cli_mid_turn(fake_api: FakeAPI, claude_home: ClaudeHome) -> None:
    """A -p run has one ``result``, at its end: the cost so far comes from the
    transcript, and passing the cap interrupts the turn still running."""
    gate = threading.Event()
    fake_api.reset([
        Turn.tool_use("Bash", {"command": "echo hi"}, usage=Usage(20_000, 500)),  # about $0.09
        Turn.text("never shown", gate=gate),
    ])
    sid = str(uuid.uuid4())
    updates: list[RunUpdate] = []
    try:
        result = run_claude(
            ["-p", "hello", "--session-id", sid], on_update=updates.append, max_cost_usd=0.01,
            claude_bin=str(claude_bin()), cwd=claude_home.cwd, env=clean_env(claude_home.home, fake_api.url),
        )
    finally:
        gate.set()
    assert result.exit_code == EXIT_BUDGET and result.status_reason == "budget reached" and result.state == "ended"
    assert result.update.cost_usd is not None and result.update.cost_usd > 0.01
    assert result.result is None  # interrupted before its answer
    assert claude_pids(sid) == []


def test_reports_reach_the_server(fake_api: FakeAPI, claude_home: ClaudeHome, recorder: Recorder, tee_claude: tuple[Path, Path]) -> None:
    gate = threading.Event()
    fake_api.reset([TOOL_TURNS[0], Turn.text("All done.", usage=Usage(1000, 200), gate=gate)])
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(result=run_claude(
        ["-p", "hello"], server=recorder.url, token="s3cret", name="nightly",
        claude_bin=str(tee_claude[0]), cwd=claude_home.cwd, env=clean_env(claude_home.home, fake_api.url),
    )))
    thread.start()
    try:
        fake_api.wait_requests(2)
        # the turn is held: the run keeps reporting (a heartbeat) with nothing new to say
        seen = len(recorder.reports)
        wait_for(lambda: len(recorder.reports) >= seen + 2, 15, "heartbeat reports while a turn is held")
    finally:
        gate.set()
        thread.join(60)
    result = box["result"]
    cli = cli_result(tee_claude[1])
    reports = recorder.reports
    assert all(h.get("Authorization") == "Bearer s3cret" for h in recorder.headers)
    assert reports[0]["state"] == "starting" and reports[-1]["state"] == "ended"
    assert {r["session_id"] for r in reports} == {cli["session_id"]}
    assert {r["name"] for r in reports} == {"nightly"} and {r["cwd"] for r in reports} == {str(claude_home.cwd)}
    last = reports[-1]
    assert last["figures"] == {k: cli[k] for k in ("total_cost_usd", "num_turns", "duration_ms")}
    assert last["exit_code"] == 0 == result.exit_code and last["model"] == "claude-opus-5-5"
    assert reports[0]["pid"] == last["pid"] != os.getpid()
    logs = [line for r in reports for line in r["logs"]]
    assert [line["content"] for line in logs if line["kind"] == "tool"] == ["Bash: echo hi"]
    assert [line["tool_name"] for line in logs if line["kind"] == "tool"] == ["Bash"]
    ended = [line for line in logs if line["kind"] == "result"]
    assert len(ended) == 1 and ended[0]["cost_usd"] == cli["total_cost_usd"]
    assert all(set(line) == {"ts", "level", "source", "kind", "content", "tool_name", "cost_usd"} for line in logs)
    assert len({json.dumps(line, sort_keys=True) for line in logs}) == len(logs), "a log line was sent twice"


def test_stop_from_the_dashboard_interrupts_the_cli(fake_api: FakeAPI, claude_home: ClaudeHome, recorder: Recorder) -> None:
    gate = threading.Event()
    fake_api.reset([Turn.text("never shown", gate=gate)])
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(result=run_claude(
        ["-p", "hello"], server=recorder.url, claude_bin=str(claude_bin()),
        cwd=claude_home.cwd, env=clean_env(claude_home.home, fake_api.url),
    )))
    thread.start()
    try:
        fake_api.wait_requests(1)
        recorder.stop = True
        thread.join(30)
    finally:
        gate.set()
    result = box["result"]
    assert result.exit_code == EXIT_INTERRUPTED and result.status_reason == "stopped from the dashboard"
    assert recorder.reports[-1]["state"] == "ended" and recorder.reports[-1]["status_reason"] == "stopped from the dashboard"
    assert claude_pids(str(result.session_id)) == []


def test_a_budget_set_on_the_dashboard_stops_the_run(fake_api: FakeAPI, claude_home: ClaudeHome, recorder: Recorder) -> None:
    """The answer's ``max_cost_usd`` (PUT /sessions/{id}/budget on the server) replaces the run's cap."""
    gate = threading.Event()
    fake_api.reset([Turn.tool_use("Bash", {"command": "echo hi"}, usage=Usage(20_000, 500)), Turn.text("never shown", gate=gate)])
    recorder.cap = 0.001
    try:
        result = run_claude(
            ["-p", "hello"], server=recorder.url, claude_bin=str(claude_bin()),
            cwd=claude_home.cwd, env=clean_env(claude_home.home, fake_api.url),
        )
    finally:
        gate.set()
    assert result.exit_code == EXIT_BUDGET and result.status_reason == "budget reached"
    assert recorder.reports[0]["max_cost_usd"] is None and recorder.reports[-1]["max_cost_usd"] == 0.001
    assert recorder.reports[-1]["state"] == "ended" and recorder.reports[-1]["status_reason"] == "budget reached"


def test_a_second_ctrl_c_terminates_a_cli_that_ignores_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first SIGINT goes to the CLI's group and is waited for (here: for
    ever); the second sends SIGTERM at once."""
    import sessionwatch.run as run_module

    monkeypatch.setattr(run_module, "INTERRUPT_GRACE_S", 3600.0)
    seen = tmp_path / "signals"
    stubborn = tmp_path / "claude"
    stubborn.write_text(
        f"#!/bin/bash\ntrap 'echo INT >> {seen}' INT\ntrap 'echo TERM >> {seen}; exit 143' TERM\n"
        f"echo started >> {seen}\nwhile true; do sleep 0.1; done\n"
    )
    stubborn.chmod(0o755)
    starting = threading.Event()
    done = threading.Event()

    def press_ctrl_c() -> None:
        starting.wait(30)
        wait_for(lambda: seen.exists() and "started" in seen.read_text(), 30, "the stub CLI to start")
        os.kill(os.getpid(), signal.SIGINT)
        wait_for(lambda: "INT" in seen.read_text(), 30, "the first SIGINT to reach the CLI")
        os.kill(os.getpid(), signal.SIGINT)
        if not done.wait(30):  # the deadline: never escalated; end the stub so the test fails, not hangs
            for pid in claude_pids(str(stubborn)):
                os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=press_ctrl_c, daemon=True)
    thread.start()
    try:
        result = run_claude(
            ["-p", "hello"], claude_bin=str(stubborn), cwd=tmp_path,
            on_update=lambda u: starting.set() if u.state == "starting" else None,
        )
    finally:
        done.set()
    assert seen.read_text().split() == ["started", "INT", "TERM"]
    assert result.exit_code == 143 and result.status_reason == "interrupted (Ctrl-C)"


def test_a_rejected_token_is_one_line_and_reporting_stops(fake_api: FakeAPI, claude_home: ClaudeHome, recorder: Recorder) -> None:
    fake_api.reset([Turn.text("Hi.")])
    recorder.status = 401
    err, out = io.StringIO(), io.StringIO()
    result = run_claude(
        ["-p", "hello"], server=recorder.url, token="wrong", claude_bin=str(claude_bin()),
        cwd=claude_home.cwd, env=clean_env(claude_home.home, fake_api.url), progress=Progress(err, out),
    )
    assert result.exit_code == 0 and out.getvalue() == "Hi.\n"
    assert len(recorder.reports) == 1
    assert [line for line in err.getvalue().splitlines() if line.startswith("sessionwatch: the server")] == [
        f"sessionwatch: the server at {recorder.url} rejected the token (401); not reporting this run (set --token or SESSIONWATCH_TOKEN)"
    ]


# --- the command ---------------------------------------------------------------------


def test_command_without_a_server_prints_progress_and_the_answer(fake_api: FakeAPI, claude_home: ClaudeHome) -> None:
    """A pipe gets plain lines on stderr (no status line), the answer on stdout."""
    fake_api.reset(TOOL_TURNS)
    url = f"http://127.0.0.1:{free_port()}"
    proc = sessionwatch_run(claude_home, fake_api, "--server", url, claude_args=["-p", "hello"])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == "All done.\n"
    # the notice comes once the first report fails: before or after the session's first line
    notice = f"sessionwatch: no server at {url}; showing progress here only"
    assert err.splitlines().count(notice) == 1 and notice in err.splitlines()[:2]
    lines = [notice, *(line for line in err.splitlines() if line != notice)]
    assert sum("no server" in line for line in lines) == 1
    assert lines[1].startswith("sessionwatch: session ") and "started: model claude-opus-5-5" in lines[1]
    assert lines[2:5] == ["  Let me check.", "  → Bash: echo hi", "  All done."]
    assert lines[5].startswith("  turn ended: 2 turns, ") and lines[5].endswith(" so far")
    assert lines[6].startswith("sessionwatch: ended: 2 turns, 1 tool, $0.0") and lines[6].endswith(", exit status 0")
    assert len(lines) == 7 and "\r" not in err and "\x1b" not in err


def test_command_no_server_flag_sends_nothing(fake_api: FakeAPI, claude_home: ClaudeHome, recorder: Recorder) -> None:
    fake_api.reset([Turn.text("Hi.")])
    proc = sessionwatch_run(claude_home, fake_api, "--server", recorder.url, "--no-server", claude_args=["-p", "hello"])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out == "Hi.\n" and "no server at" not in err
    assert recorder.reports == []


def test_ctrl_c_interrupts_the_cli_and_leaves_no_process(fake_api: FakeAPI, claude_home: ClaudeHome) -> None:
    gate = threading.Event()
    fake_api.reset([Turn.text("never shown", gate=gate)])
    sid = str(uuid.uuid4())
    proc = sessionwatch_run(claude_home, fake_api, "--no-server", claude_args=["-p", "hello", "--session-id", sid])
    try:
        fake_api.wait_requests(1)
        assert claude_pids(sid), "the CLI is running"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        gate.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert out == ""
    assert err.splitlines()[-1].startswith("sessionwatch: ended (interrupted (Ctrl-C)): ")
    assert err.splitlines()[-1].endswith("exit status 130")
    assert claude_pids(sid) == []


def test_command_errors_are_one_line(tmp_path: Path) -> None:
    for args, says in (
        ([], "nothing to run"),
        (["--claude-bin", str(tmp_path / "nope"), "--", "-p", "hi"], "not an executable file"),
        (["--max-cost-usd", "lots", "--", "-p", "hi"], "not a number"),
        (["--", "-p", "hi", "--output-format", "json"], "stream-json"),
    ):
        r = subprocess.run([sys.executable, "-m", "sessionwatch", "run", *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and r.stdout == "", (args, r.stderr)
        assert len(r.stderr.splitlines()) == 1 and says in r.stderr, (args, r.stderr)


def test_a_terminal_gets_one_live_status_line(fake_api: FakeAPI, claude_home: ClaudeHome) -> None:
    """stderr on a TTY: a status line redrawn in place (\\r, erase), cleared
    before each plain line and at the end; stdout (a pipe) gets the answer."""
    import pty

    fake_api.reset(TOOL_TURNS)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessionwatch", "run", "--no-server", "--claude-bin", str(claude_bin()), "--", "-p", "hello"],
        cwd=claude_home.cwd, env=clean_env(claude_home.home, fake_api.url), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=slave,
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(60) == 0
    assert proc.stdout is not None and proc.stdout.read() == b"All done.\n"
    shown = b"".join(chunks).decode()
    assert "claude running · 1 turn · 1 tool · " in shown
    # what a person sees at the end: each line, the status line erased, the summary last
    screen = [line.rsplit("\r\x1b[K", 1)[-1] for line in shown.replace("\r\n", "\n").split("\n")]
    assert screen[-2].startswith("sessionwatch: ended: 2 turns, 1 tool, ") and screen[-1] == ""
    assert "  → Bash: echo hi" in screen


# --- a real server ---------------------------------------------------------------------


def test_a_run_is_one_row_on_a_real_server(
    fake_api: FakeAPI, claude_home: ClaudeHome, sw_server: Callable[..., Server], tee_claude: tuple[Path, Path]
) -> None:
    """``sessionwatch run --server`` against ``sessionwatch serve`` watching the
    CLI's transcripts: one row under the CLI's session id, ``managed.kind``
    "run", live while the turn is held, with the CLI's figures at the end."""
    claude_home.projects_dir.mkdir(parents=True, exist_ok=True)
    srv = sw_server(projects_dir=claude_home.projects_dir)
    gate = threading.Event()
    fake_api.reset([TOOL_TURNS[0], Turn.text("All done.", usage=Usage(1000, 200), gate=gate)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessionwatch", "run", "--server", srv.url, "--name", "nightly",
         "--claude-bin", str(tee_claude[0]), "--", "-p", "fix the build"],
        cwd=claude_home.cwd, env=clean_env(claude_home.home, fake_api.url), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )

    def rows() -> list[dict[str, Any]]:
        return [s for s in httpx.get(srv.url + "/all", timeout=10).json()["sessions"] if s.get("managed")]

    try:
        fake_api.wait_requests(2)
        live = wait_for(lambda: [s for s in rows() if s["managed"]["state"] == "running"], 15, "the run's row, running")
        assert isinstance(live, list) and len(live) == 1 and live[0]["managed"]["kind"] == "run"
        assert live[0]["managed"]["name"] == "nightly" and live[0]["status"] == "running"
    finally:
        gate.set()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == "All done.\n" and "no server" not in err
    cli = cli_result(tee_claude[1])

    def ended() -> list[dict[str, Any]]:
        return [s for s in rows() if s["managed"]["state"] == "stopped" and s["managed"]["duration_ms"] is not None]

    try:
        found = wait_for(ended, 15, "the run's row, ended")
    except AssertionError:
        raise AssertionError(f"{rows()}\n{err}") from None
    assert isinstance(found, list)
    all_ids = [s["id"] for s in httpx.get(srv.url + "/all", timeout=10).json()["sessions"]]
    assert all_ids.count(cli["session_id"]) == 1, "the transcript and the run are one row"
    row = found[0]
    assert row["id"] == cli["session_id"] and row["status"] == "ended" and row["current_task"] == "fix the build"
    managed = row["managed"]
    assert managed["kind"] == "run" and managed["exit_code"] == 0 and managed["name"] == "nightly"
    assert (managed["total_cost_usd"], managed["num_turns"], managed["duration_ms"]) == (
        cli["total_cost_usd"], cli["num_turns"], cli["duration_ms"],
    )
    logs = httpx.get(srv.url + f"/sessions/{row['id']}/logs", timeout=10).json()["logs"]
    kinds = [x["kind"] for x in logs]
    assert kinds[0] == "prompt" and "tool" in kinds and kinds.count("result") == 1


def test_command_max_cost_usd_exits_3(fake_api: FakeAPI, claude_home: ClaudeHome) -> None:
    gate = threading.Event()
    fake_api.reset([Turn.tool_use("Bash", {"command": "echo hi"}, usage=Usage(20_000, 500)), Turn.text("never shown", gate=gate)])
    sid = str(uuid.uuid4())
    proc = sessionwatch_run(claude_home, fake_api, "--no-server", "--max-cost-usd", "0.01", claude_args=["-p", "hello", "--session-id", sid])
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        gate.set()
    assert proc.returncode == EXIT_BUDGET == 3, err
    assert "sessionwatch: stopping Claude Code: budget reached ($0.0" in err
    assert err.splitlines()[-1].startswith("sessionwatch: ended (budget reached): ") and err.endswith("exit status 3\n")
    assert out == "" and claude_pids(sid) == []
