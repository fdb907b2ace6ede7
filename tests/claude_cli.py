"""Run the real Claude Code CLI offline against :mod:`tests.fakeapi`.

- :func:`claude_bin` finds the CLI: ``$SESSIONWATCH_TEST_CLAUDE_BIN``, else the
  native binary the Claude Agent SDK wheel bundles
  (``claude_agent_sdk/_bundled/claude``). Missing is a test *failure*.
- :func:`clean_env` builds the CLI's whole environment from nothing: a
  temporary HOME, a minimal PATH, the fake API's URL and the switches that
  keep it from calling anything else.
- :class:`ClaudeHome` is one temporary HOME plus a working directory, and
  knows where the CLI writes transcripts.
- :func:`run_claude` runs ``claude -p ... --output-format stream-json
  --verbose`` to completion; :class:`ClaudeProcess` keeps one running with
  ``--input-format stream-json`` to send several prompts.
- :func:`sessionwatch_scan` runs ``python -m sessionwatch scan --json``.

Network: ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` stops every request
but the Messages API (checked with strace: the CLI then makes no other
connection and no DNS lookup; see tests/test_claude_cli.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

BIN_ENV = "SESSIONWATCH_TEST_CLAUDE_BIN"
#: any string works against the fake; this one looks like a key so nothing balks
API_KEY = "sk-ant-api03-sessionwatch-test-0000000000000000"
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"


def claude_bin() -> Path:
    """The CLI to run, or fail the test (CI treats a missing tool as a failure, never a skip)."""
    override = os.environ.get(BIN_ENV)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            pytest.fail(f"${BIN_ENV}={override} is not an executable file", pytrace=False)
        return path
    spec = importlib.util.find_spec("claude_agent_sdk")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(
            "Claude Code CLI not found: install the test extra (claude-agent-sdk bundles it) "
            f"or set ${BIN_ENV} to a claude executable",
            pytrace=False,
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "_bundled" / "claude"
        if path.is_file() and os.access(path, os.X_OK):
            return path
    pytest.fail(f"claude-agent-sdk is installed but has no executable _bundled/claude; set ${BIN_ENV}", pytrace=False)


def clean_env(home: Path, base_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CLI's entire environment: nothing is inherited from the caller."""
    env = {
        "HOME": str(home),
        # Background tasks write their output under $TMPDIR/claude-<uid>/ (else /tmp).
        "TMPDIR": str(home / "tmp"),
        "PATH": MINIMAL_PATH,
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": API_KEY,
        # The one switch that stops update checks, telemetry, feature flags and
        # model lists (any value, even "0", counts as set).
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        # A failing request gives up after one retry instead of ~170 s.
        "CLAUDE_CODE_MAX_RETRIES": "1",
    }
    env.update(extra or {})
    return env


def project_folder(cwd: Path) -> str:
    """The folder name Claude Code gives a working directory: every non-alphanumeric becomes ``-``."""
    return re.sub(r"[^A-Za-z0-9]", "-", str(cwd))


@dataclass
class ClaudeHome:
    """A temporary HOME and the working directory the CLI runs in."""

    home: Path
    cwd: Path

    @classmethod
    def create(cls, root: Path) -> ClaudeHome:
        home = root / "home"
        cwd = home / "work"
        cwd.mkdir(parents=True, exist_ok=True)
        (home / "tmp").mkdir(exist_ok=True)
        return cls(home, cwd)

    @property
    def claude_dir(self) -> Path:
        return self.home / ".claude"

    @property
    def projects_dir(self) -> Path:
        return self.claude_dir / "projects"

    def transcript(self, session_id: str) -> Path:
        return self.projects_dir / project_folder(self.cwd) / f"{session_id}.jsonl"

    def transcripts(self) -> list[Path]:
        return sorted(self.projects_dir.rglob("*.jsonl")) if self.projects_dir.is_dir() else []

    def write_settings(self, settings: Mapping[str, Any]) -> Path:
        """``$HOME/.claude/settings.json`` (hooks, permissions, ...)."""
        path = self.claude_dir / "settings.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=2))
        return path


def parse_stream(text: str) -> list[dict[str, Any]]:
    """stream-json output → messages; a line that is not a JSON object fails the test."""
    messages: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise AssertionError(f"stream-json line {number} is not JSON: {line[:300]!r}") from None
        if not isinstance(value, dict):
            raise AssertionError(f"stream-json line {number} is not an object: {line[:300]!r}")
        messages.append(value)
    return messages


def read_jsonl(path: Path, *, growing: bool = False) -> list[dict[str, Any]]:
    """A transcript's lines (every line must be a JSON object).

    ``growing=True`` for a file the CLI may still be appending to: a last line
    without its newline yet is left out instead of failing.
    """
    text = path.read_text("utf-8")
    if growing:
        text = text[: text.rfind("\n") + 1]
    return parse_stream(text)


@dataclass
class ClaudeRun:
    """What one CLI run printed."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    messages: list[dict[str, Any]]

    def of_type(self, type_: str, subtype: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == type_ and (subtype is None or m.get("subtype") == subtype)]

    @property
    def init(self) -> dict[str, Any]:
        found = self.of_type("system", "init")
        assert found, f"no system/init message; {self.describe()}"
        return found[0]

    @property
    def results(self) -> list[dict[str, Any]]:
        return self.of_type("result")

    @property
    def result(self) -> dict[str, Any]:
        """The last ``result`` (``total_cost_usd``, ``usage``, ``modelUsage`` of the whole run so far)."""
        found = self.results
        assert found, f"no result message; {self.describe()}"
        return found[-1]

    @property
    def session_id(self) -> str:
        return str(self.init["session_id"])

    def describe(self) -> str:
        return f"claude {' '.join(self.args)} exited {self.returncode}\nstderr: {self.stderr[-2000:]}\nstdout tail: {self.stdout[-2000:]}"

    def check(self) -> ClaudeRun:
        """Fail unless the run exited 0 with a successful result."""
        assert self.returncode == 0, self.describe()
        assert self.result.get("subtype") == "success" and not self.result.get("is_error"), self.describe()
        return self


def _base_args(prompt: str | None, args: Sequence[str]) -> list[str]:
    head = ["-p", prompt] if prompt is not None else ["-p"]
    return [*head, "--output-format", "stream-json", "--verbose", *args]


def run_claude(
    where: ClaudeHome,
    base_url: str,
    prompt: str,
    *args: str,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> ClaudeRun:
    """Run ``claude -p PROMPT --output-format stream-json --verbose ARGS`` to its end (deadline ``timeout``)."""
    argv = _base_args(prompt, args)
    try:
        proc = subprocess.run(
            [str(claude_bin()), *argv],
            cwd=where.cwd,
            env=clean_env(where.home, base_url, env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"claude {' '.join(argv)} did not finish within {timeout} s; stderr: {exc.stderr!r}") from None
    return ClaudeRun(argv, proc.returncode, proc.stdout, proc.stderr, parse_stream(proc.stdout))


def user_message(text: str) -> dict[str, Any]:
    """One ``--input-format stream-json`` line: a prompt typed by the user."""
    return {"type": "user", "message": {"role": "user", "content": text}}


class ClaudeProcess:
    """A running ``claude -p --input-format stream-json --output-format stream-json --verbose``.

    Send prompts with :meth:`send`; read stdout messages with :meth:`next` /
    :meth:`wait_for` (each with a deadline); :meth:`close` ends stdin and
    waits for exit. Use as a context manager so the process never outlives
    the test.
    """

    def __init__(self, where: ClaudeHome, base_url: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.args = _base_args(None, ["--input-format", "stream-json", *args])
        self.messages: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: list[str] = []
        self.proc = subprocess.Popen(
            [str(claude_bin()), *self.args],
            cwd=where.cwd,
            env=clean_env(where.home, base_url, env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._read_stdout, args=(self.proc.stdout,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.proc.stderr,), daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            if line.strip():
                try:
                    value = json.loads(line)
                except ValueError:
                    value = {"type": "_unparsed", "line": line}
                self._queue.put(value)
        self._queue.put(None)

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def send(self, message: dict[str, Any] | str) -> None:
        """Write one stdin line (a string is sent as a user prompt)."""
        assert self.proc.stdin is not None
        payload = user_message(message) if isinstance(message, str) else message
        self.proc.stdin.write(json.dumps(payload) + "\n")
        self.proc.stdin.flush()

    def next(self, timeout: float = 30.0) -> dict[str, Any] | None:
        """The next stdout message, None at end of output; fails at the deadline."""
        try:
            value = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from claude within {timeout} s; stderr: {self.stderr[-2000:]}") from None
        if value is not None:
            if value.get("type") == "_unparsed":
                raise AssertionError(f"claude printed a non-JSON line: {value['line'][:300]!r}")
            self.messages.append(value)
        return value

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0, what: str = "message") -> dict[str, Any]:
        """Read messages until one matches ``predicate``; fail at the deadline or at end of output."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; stderr: {self.stderr[-2000:]}")
            value = self.next(left)
            if value is None:
                raise AssertionError(f"claude ended before {what}; exit {self.proc.poll()}; stderr: {self.stderr[-2000:]}")
            if predicate(value):
                return value

    def wait_result(self, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait_for(lambda m: m.get("type") == "result", timeout, "a result message")

    def close(self, timeout: float = 30.0) -> int:
        """Close stdin (no more prompts), drain output and wait for the exit status."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        deadline = time.monotonic() + timeout
        while self.next(max(0.01, deadline - time.monotonic())) is not None:
            pass
        try:
            return self.proc.wait(max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"claude did not exit within {timeout} s of closing stdin") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ClaudeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


@dataclass
class Totals:
    """Token totals in sessionwatch's vocabulary."""

    input: int = 0
    output: int = 0
    cache_creation: int = 0
    cache_read: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"input": self.input, "output": self.output, "cache_creation": self.cache_creation, "cache_read": self.cache_read}


def tokens_from_model_usage(model_usage: Mapping[str, Any]) -> Totals:
    """The CLI's ``modelUsage`` (``result`` or ``cost-state``) summed over models."""
    t = Totals()
    for usage in model_usage.values():
        t.input += int(usage.get("inputTokens", 0))
        t.output += int(usage.get("outputTokens", 0))
        t.cache_creation += int(usage.get("cacheCreationInputTokens", 0))
        t.cache_read += int(usage.get("cacheReadInputTokens", 0))
    return t


@dataclass
class Scan:
    """``sessionwatch scan --json`` output."""

    data: dict[str, Any]
    stderr: str = ""
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def session(self, session_id: str) -> dict[str, Any]:
        assert session_id in self.sessions, f"scan has no session {session_id}; it has {sorted(self.sessions)}"
        return self.sessions[session_id]


def sessionwatch_scan(projects_dir: Path, *args: str, timeout: float = 60.0) -> Scan:
    """Run ``python -m sessionwatch scan --json --projects-dir DIR`` with this interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    proc = subprocess.run(
        [sys.executable, "-m", "sessionwatch", "scan", "--json", "--projects-dir", str(projects_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, f"sessionwatch scan exited {proc.returncode}: {proc.stderr[-2000:]}"
    data = json.loads(proc.stdout)
    return Scan(data, proc.stderr, {s["id"]: s for s in data["sessions"]})
