"""Claude Code's stream-json protocol, spoken directly: one CLI process, its
lines, its control requests, and what each line means to a person.

Managed sessions (``serve``) and ``sessionwatch run`` both start ``claude -p
--output-format stream-json --verbose`` (managed sessions add
``--input-format stream-json --permission-prompt-tool stdio`` and choose the
session id with ``--session-id``, so ``POST /managed`` can answer before the
CLI has read a message). This module does not go through the Claude Agent
SDK's client, though the SDK is where the CLI comes from (its wheel bundles
it, :func:`find_claude`): sessionwatch needs what the client keeps to itself,
namely the process in its own process group (so a stop reaches the CLI's
children too), every raw line it reads and writes (the logs), and ``run``'s
pass-through of any CLI arguments. The wire format is the SDK's own
(``_internal/query.py``): ``control_request`` / ``control_response`` with
``subtype`` ``initialize``, ``interrupt`` and, from the CLI, ``can_use_tool``
answered with ``{"behavior": "allow", "updatedInput": ...}`` or ``{"behavior":
"deny", "message": ...}``. tests/test_managed_protocol.py checks it against
the real CLI.

Figures: the ``usage`` on stream-json ``assistant`` messages is the partial
figure from the start of a response (``output_tokens: 1``) and is never
counted; each turn's ``result`` carries ``total_cost_usd`` (the process's
running total), ``num_turns``, ``duration_ms`` and ``modelUsage``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from sessionwatch.errors import ConfigError
from sessionwatch.redact import mask

log = logging.getLogger(__name__)

Level = Literal["debug", "info", "warn", "error"]
LogSource = Literal["stdin", "stdout", "stderr", "system"]
LEVELS: Final[tuple[Level, ...]] = ("debug", "info", "warn", "error")
LOG_SOURCES: Final[tuple[LogSource, ...]] = ("stdin", "stdout", "stderr", "system")
#: What a log line is to a reader (the conversation view shows all but ``raw``).
Kind = Literal["prompt", "reply", "tool", "result", "permission", "system", "raw"]
#: The longest ``content`` a log line keeps (DESIGN.md: ≤ 4 KiB).
CONTENT_MAX: Final = 4096
#: A line longer than this from the CLI is not kept whole in memory while parsed.
LINE_MAX: Final = 16 * 1024 * 1024
#: How long a stop waits at each step (interrupt, close stdin, SIGTERM) before the next.
STOP_STEP_S: Final = 3.0
#: The permission modes a managed session may ask for (``bypassPermissions`` only when allowed).
PERMISSION_MODES: Final = ("default", "acceptEdits", "plan", "bypassPermissions")


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One thing the process read, wrote or went through (DESIGN.md, Managed sessions)."""

    ts: float
    level: Level
    source: LogSource
    kind: Kind
    content: str
    tool_name: str | None = None
    cost_usd: float | None = None


@dataclass
class Figures:
    """What the turns' ``result`` lines said, as of the last one."""

    total_cost_usd: float | None = None
    num_turns: int = 0
    duration_ms: int | None = None
    turns: int = 0
    is_error: bool = False
    subtype: str | None = None
    model_usage: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"total_cost_usd": self.total_cost_usd, "num_turns": self.num_turns, "duration_ms": self.duration_ms}


def cut(text: str, limit: int = CONTENT_MAX) -> str:
    """``text`` masked and cut to ``limit`` characters."""
    shown = mask(text[: limit * 4])
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def find_claude(explicit: str | None = None) -> str:
    """The CLI to start: ``explicit`` (``--claude-bin``), else ``claude`` on PATH,
    else the one the Claude Agent SDK bundles; :class:`ConfigError` if none."""
    if explicit:
        found = shutil.which(explicit) if os.sep not in explicit else explicit
        if not found or not os.access(found, os.X_OK) or not os.path.isfile(found):
            raise ConfigError(f"--claude-bin {explicit}: not an executable file")
        return found
    on_path = shutil.which("claude")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("claude_agent_sdk")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        bundled = Path(location) / "_bundled" / "claude"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    raise ConfigError(
        "Claude Code not found: put `claude` on PATH, pass --claude-bin, "
        "or install the managed extra (pip install 'sessionwatch[managed]', which bundles it)"
    )


def managed_command(
    claude: str,
    *,
    session_id: str | None = None,
    resume: str | None = None,
    model: str | None = None,
    system_prompt: str | None = None,
    permission_mode: str | None = None,
    allowed_tools: Sequence[str] = (),
    max_turns: int | None = None,
) -> list[str]:
    """The command line of a managed session (stream-json both ways, permission
    requests on stdio). ``resume`` continues a stopped session under its id."""
    cmd = [claude, "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose"]
    cmd += ["--permission-prompt-tool", "stdio"]
    if resume:
        cmd.append(f"--resume={resume}")
    elif session_id:
        cmd.append(f"--session-id={session_id}")
    if model:
        cmd += ["--model", model]
    if system_prompt:
        cmd += ["--append-system-prompt", system_prompt]
    if permission_mode:
        cmd += ["--permission-mode", permission_mode]
    if allowed_tools:
        cmd += ["--allowedTools", ",".join(allowed_tools)]
    if max_turns is not None:
        cmd += ["--max-turns", str(max_turns)]
    return cmd


def user_message(text: str, session_id: str | None = None) -> dict[str, Any]:
    return {"type": "user", "message": {"role": "user", "content": text}, "parent_tool_use_id": None, "session_id": session_id or ""}


def new_session_id() -> str:
    return str(uuid.uuid4())


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text" and isinstance(block.get("text"), str):
                    parts.append(block["text"])
                elif block.get("type") == "tool_result":
                    parts.append(_text_of(block.get("content")))
        return "\n".join(p for p in parts if p)
    return ""


def summarize_tool(tool: str | None, tool_input: Any, cwd: str | None = None) -> str:
    """One line, masked: what a tool call does (the hooks' summary)."""
    from sessionwatch.sources.hooks.events import summarize

    return summarize(tool, tool_input if isinstance(tool_input, dict) else None, cwd)


def describe(msg: dict[str, Any], ts: float, *, source: LogSource = "stdout", cwd: str | None = None) -> list[LogLine]:
    """What one stream-json message means to a reader, as log lines: a prompt,
    a reply's text, each tool call as one masked line, a turn's end with its
    cost; anything else one ``raw`` debug line (masked, ≤ 4 KiB)."""
    kind = msg.get("type")
    sub = msg.get("subtype")
    out: list[LogLine] = []
    if kind == "user":
        message = msg.get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            for b in content:
                if isinstance(b, dict) and b.get("type") == "tool_result":
                    text = _text_of(b.get("content"))
                    level: Level = "warn" if b.get("is_error") else "debug"
                    out.append(LogLine(ts=ts, level=level, source=source, kind="raw", content=cut(text or "(no output)", 400)))
            return out
        text = _text_of(content)
        return [LogLine(ts=ts, level="info", source=source, kind="prompt", content=cut(text))]
    if kind == "assistant":
        message = msg.get("message") or {}
        for block in message.get("content") or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and block.get("text"):
                out.append(LogLine(ts=ts, level="info", source=source, kind="reply", content=cut(block["text"])))
            elif block.get("type") == "tool_use":
                name = block.get("name")
                out.append(LogLine(ts=ts, level="info", source=source, kind="tool", content=summarize_tool(name, block.get("input"), cwd), tool_name=name))
        return out or [LogLine(ts=ts, level="debug", source=source, kind="raw", content=cut(msgspec.json.encode(msg).decode()))]
    if kind == "result":
        cost = msg.get("total_cost_usd")
        turns = msg.get("num_turns")
        secs = (msg.get("duration_ms") or 0) / 1000
        bad = bool(msg.get("is_error")) or (sub not in (None, "success"))
        what = "turn failed" if bad else "turn ended"
        detail = f"{what} ({sub})" if bad and sub else what
        text = f"{detail}: {turns} turns, {secs:.1f} s" + (f", ${cost:.4f} so far" if isinstance(cost, (int, float)) else "")
        if bad and isinstance(msg.get("result"), str) and msg["result"]:
            text += " — " + msg["result"]
        return [LogLine(ts=ts, level="error" if bad else "info", source=source, kind="result", content=cut(text, 600), cost_usd=float(cost) if isinstance(cost, (int, float)) else None)]
    if kind == "system" and sub == "init":
        text = f"session {msg.get('session_id')} started: model {msg.get('model')}, {msg.get('permissionMode')} permissions, in {msg.get('cwd')}"
        return [LogLine(ts=ts, level="info", source=source, kind="system", content=cut(text, 600))]
    if kind == "control_request":
        req = msg.get("request") or {}
        if req.get("subtype") == "can_use_tool":
            name = req.get("tool_name")
            return [LogLine(ts=ts, level="warn", source=source, kind="permission", content="asks: " + summarize_tool(name, req.get("input"), cwd), tool_name=name)]
    return [LogLine(ts=ts, level="debug", source=source, kind="raw", content=cut(msgspec.json.encode(msg).decode()))]


class ProcessGone(Exception):
    """The CLI is not running (any more)."""


@dataclass
class ClaudeProcess:
    """One CLI process in its own process group, speaking stream-json.

    ``lines()`` yields each stdout message (a dict) as it comes, and handles
    control responses to requests sent with :meth:`control`; the caller
    answers the CLI's own requests (``can_use_tool``) with :meth:`respond`.
    ``stderr`` lines go to ``on_stderr``. Nothing here logs to the store: the
    caller sees every line and decides.
    """

    cmd: list[str]
    cwd: str
    env: dict[str, str] | None = None
    #: stdin is the stream-json input (managed) or nothing (``run``'s ``-p "prompt"``)
    interactive: bool = True
    on_stderr: Any = None
    #: called with every message written to stdin (for the logs)
    on_stdin: Any = None
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    _pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _stderr_task: asyncio.Task[None] | None = None
    _write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.PIPE if self.interactive else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: a stop reaches its children
            limit=LINE_MAX,
        )
        self.started_at = time.time()
        self._stderr_task = asyncio.create_task(self._read_stderr())

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while True:
            try:
                line = await self.proc.stderr.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if text and self.on_stderr is not None:
                try:
                    self.on_stderr(text)
                except Exception:  # noqa: BLE001 - a logging callback must not end the reader
                    log.exception("stderr callback failed")

    async def lines(self) -> AsyncIterator[dict[str, Any]]:
        """Every stdout message until the process closes stdout. A line that is
        not a JSON object is yielded as ``{"type": "text", "text": ...}``."""
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        while True:
            try:
                raw = await stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                # a line over LINE_MAX: skip to its end
                with contextlib.suppress(Exception):
                    await stdout.readuntil(b"\n")
                yield {"type": "text", "text": f"(a line over {LINE_MAX} bytes was skipped)"}
                continue
            if not raw:
                break
            try:
                msg = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                text = raw.decode("utf-8", "replace").strip()
                if text:
                    yield {"type": "text", "text": text}
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("type") == "control_response":
                resp = msg.get("response") or {}
                fut = self._pending.pop(str(resp.get("request_id")), None)
                if fut is not None and not fut.done():
                    fut.set_result(resp)
            yield msg
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ProcessGone("Claude Code exited"))
        self._pending.clear()

    async def send(self, obj: dict[str, Any]) -> None:
        if not self.interactive:
            raise ProcessGone("this process reads no input")
        if not self.running or self.proc is None or self.proc.stdin is None or self.proc.stdin.is_closing():
            raise ProcessGone("Claude Code is not running")
        data = msgspec.json.encode(obj) + b"\n"
        async with self._write_lock:
            try:
                self.proc.stdin.write(data)
                await self.proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise ProcessGone("Claude Code is not running") from exc
        if self.on_stdin is not None:
            self.on_stdin(obj)

    async def control(self, subtype: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Send a control request and wait for its response."""
        rid = f"req_{uuid.uuid4().hex[:16]}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            await self.send({"type": "control_request", "request_id": rid, "request": {"subtype": subtype, **fields}})
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(rid, None)

    async def respond(self, request_id: str, response: dict[str, Any]) -> None:
        await self.send({"type": "control_response", "response": {"subtype": "success", "request_id": request_id, "response": response}})

    async def initialize(self) -> None:
        """Send ``initialize`` (no wait: the CLI answers it with its first output)."""
        rid = f"init_{uuid.uuid4().hex[:12]}"
        await self.send({"type": "control_request", "request_id": rid, "request": {"subtype": "initialize", "hooks": None}})

    async def interrupt(self, timeout: float = STOP_STEP_S) -> bool:
        """End the current turn; True if the CLI confirmed it."""
        if not self.interactive:
            return self.signal(signal.SIGINT)
        try:
            await self.control("interrupt", timeout=timeout)
            return True
        except (ProcessGone, asyncio.TimeoutError):
            return False

    def signal(self, sig: int) -> bool:
        """``sig`` to the whole process group; False if it is gone."""
        if self.proc is None or self.proc.returncode is not None:
            return False
        try:
            os.killpg(self.proc.pid, sig)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - not ours any more
            return False

    async def wait(self, timeout: float | None = None) -> int | None:
        if self.proc is None:
            return None
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            return None

    async def stop(self, step_s: float = STOP_STEP_S) -> int | None:
        """Interrupt, close stdin, then SIGTERM, then SIGKILL the group, each
        after ``step_s`` of the previous not ending it. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None and self.interactive:
            await self.interrupt(timeout=min(step_s, 2.0))
            if self.proc.stdin is not None and not self.proc.stdin.is_closing():
                with contextlib.suppress(Exception):
                    self.proc.stdin.close()
            code = await self.wait(step_s)
            if code is not None:
                self._reap_group()
                return code
        elif self.proc.returncode is None:
            self.signal(signal.SIGINT)
            code = await self.wait(step_s)
            if code is not None:
                self._reap_group()
                return code
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self.signal(sig):
                break
            code = await self.wait(step_s if sig == signal.SIGTERM else None)
            if code is not None:
                break
        self._reap_group()
        return self.proc.returncode

    def _reap_group(self) -> None:
        """Whatever the CLI left behind in its group (a background shell) goes too."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    async def close(self) -> None:
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(BaseException):
                await self._stderr_task


def proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat
    field 22), or None if it is gone: with the pid, it names one process even
    after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def kill_leftover(pid: int, start: int | None) -> bool:
    """Kill the process group of a CLI that an earlier server started (its pid
    and start time recorded), if that very process still runs. True if it did."""
    if start is None or proc_start_time(pid) != start:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_STEP_S
    while time.monotonic() < deadline:
        if proc_start_time(pid) != start:
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return True
