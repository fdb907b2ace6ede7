"""Run Claude Code headless in the foreground and watch it: ``sessionwatch run``
and its Python API, :func:`run_claude`.

    from sessionwatch.run import run_claude

    result = run_claude(["-p", "Summarise README.md"], on_update=print, max_cost_usd=0.50)
    result.exit_code, result.figures.total_cost_usd, result.figures.num_turns

The process is ``claude -p --output-format stream-json --verbose <args>``
(:mod:`sessionwatch.managed.protocol`: its own process group, stdin
``/dev/null``), with ``--session-id`` chosen here unless the arguments resume
or continue a session, so the id is known before the CLI prints a line.

Figures. The CLI's own ``total_cost_usd``, ``num_turns`` and ``duration_ms``
come from each turn's ``result``; the usage on stream-json ``assistant``
messages is the partial figure from the start of a response
(``output_tokens: 1``) and is never counted (issue 11, item 5). A ``-p`` run
has one ``result``, at its end, so the cost *so far* also reads the session's
transcript (final usage per response, priced like any session) while the turn
runs: the larger of the two is the cost so far, which ``--max-cost-usd``
is held to. At the end the CLI's own figures win.

Exit status: Claude Code's. Stopped here (Ctrl-C, Stop on the dashboard) the
CLI exits 0 after its interrupt, which would read as success to a script:
then :data:`EXIT_INTERRUPTED` (130, as a shell reports Ctrl-C) unless the CLI
said otherwise; stopped by ``max_cost_usd``, :data:`EXIT_BUDGET` (3).

Reporting (``server``): ``POST /runs`` with the state, the figures and the
log lines since the last report, on every state change and turn and every
:data:`HEARTBEAT_S` while the process runs, from one background task, so a
slow or absent server never slows the CLI. The answer may say ``stop`` (a
person pressed Stop on the dashboard) or give a new ``max_cost_usd``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TextIO

import msgspec

from sessionwatch.errors import ConfigError
from sessionwatch.managed.protocol import (
    STOP_STEP_S,
    ClaudeProcess,
    Figures,
    LogLine,
    cut,
    describe,
    find_claude,
    new_session_id,
)

__all__ = [
    "EXIT_BUDGET",
    "EXIT_INTERRUPTED",
    "Progress",
    "RunResult",
    "RunUpdate",
    "arun_claude",
    "claude_command",
    "run_claude",
]

log = logging.getLogger(__name__)

State = Literal["starting", "running", "waiting", "ended", "failed"]
#: Exit status of a run stopped by ``max_cost_usd``.
EXIT_BUDGET: Final = 3
#: Exit status of a run interrupted here (Ctrl-C, Stop on the dashboard) after which the CLI exited 0.
EXIT_INTERRUPTED: Final = 130
BUDGET_REACHED: Final = "budget reached"
STOPPED_HERE: Final = "interrupted (Ctrl-C)"
STOPPED_FROM_DASHBOARD: Final = "stopped from the dashboard"
#: A report at least this often while the process runs (the server marks a silent run gone).
HEARTBEAT_S: Final = 2.0
#: How long the last report (``ended``/``failed``) may take before the run returns anyway.
FINAL_REPORT_S: Final = 3.0
#: One report's request timeout.
REPORT_TIMEOUT_S: Final = 5.0
#: Log lines kept for the next report while the server does not answer (the oldest go first).
PENDING_LOGS_MAX: Final = 5000
#: Log lines in one report (the server takes at most 1000); more go in the next one, at once.
LOGS_PER_REPORT: Final = 1000
#: The longest ``status_reason`` and ``name`` the server takes.
REASON_MAX: Final = 120
NAME_MAX: Final = 100
#: How often the transcript is read for the cost so far.
TRANSCRIPT_POLL_S: Final = 0.5
#: After an interrupt, how long the CLI has to end its turn before SIGTERM (a second Ctrl-C: at once).
INTERRUPT_GRACE_S: Final = 10.0

_PRINT = frozenset({"-p", "--print"})
_SESSION = frozenset({"--session-id", "--resume", "-r", "--continue", "-c"})


@dataclass(frozen=True)
class RunUpdate:
    """What ``on_update`` gets: the run as of one status change or turn.

    ``turns`` and ``tools`` count the model's responses and tool calls seen so
    far; ``cost_usd`` is the cost so far; ``total_cost_usd``, ``num_turns``
    and ``duration_ms`` are the CLI's own, from its last ``result`` (None
    before the first); ``exit_code`` is set once the run is over.
    """

    session_id: str | None
    state: State
    status_reason: str | None = None
    model: str | None = None
    turns: int = 0
    tools: int = 0
    cost_usd: float | None = None
    total_cost_usd: float | None = None
    num_turns: int | None = None
    duration_ms: int | None = None
    exit_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunResult:
    """How a run ended: the exit status to use, the session and its figures
    (the CLI's own, from its last ``result``; empty if it printed none)."""

    exit_code: int
    session_id: str | None
    state: State
    status_reason: str | None
    figures: Figures
    #: the last update, with the cost so far of a run that ended without a ``result``
    update: RunUpdate
    #: the last ``result``'s text (the answer of a ``-p`` run)
    result: str | None = None


def claude_command(claude: str, args: Sequence[str]) -> tuple[list[str], str | None]:
    """The CLI's command line for ``args`` and the session id chosen for it
    (None when ``args`` resume or continue a session: the CLI's ``system/init`` says).

    >>> claude_command("claude", ["-p", "hi", "--session-id", "s1"])
    (['claude', '--output-format', 'stream-json', '--verbose', '-p', 'hi', '--session-id', 's1'], 's1')
    """
    names: set[str] = set()
    chosen: str | None = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        names.add(name)
        if not eq and i + 1 < len(args):
            value = args[i + 1]
        if name == "--output-format" and value != "stream-json":
            raise ConfigError(f"sessionwatch run reads Claude Code's stream-json output: leave out --output-format {value}".rstrip())
        if name == "--input-format" and value == "stream-json":
            raise ConfigError("sessionwatch run gives Claude Code no input: leave out --input-format stream-json and pass the prompt")
        if name == "--session-id":
            chosen = value or None
    cmd = [claude]
    if not names & _PRINT:
        cmd.append("-p")
    if "--output-format" not in names:
        cmd += ["--output-format", "stream-json"]
    if "--verbose" not in names:
        cmd.append("--verbose")
    if not names & _SESSION:
        chosen = new_session_id()
        cmd.append(f"--session-id={chosen}")
    return [*cmd, *args], chosen


def prompt_of(args: Sequence[str]) -> str | None:
    """The prompt of ``-p "prompt"`` / ``--print "prompt"`` (the usual spelling), else None.

    >>> prompt_of(["--model", "x", "-p", "fix the build"])
    'fix the build'
    """
    for i, arg in enumerate(args[:-1]):
        if arg == "--":
            break
        if arg in _PRINT and not args[i + 1].startswith("-"):
            return args[i + 1]
    return None


def claude_dir_of(env: dict[str, str] | None) -> Path:
    """Where the CLI started with ``env`` writes (``$CLAUDE_CONFIG_DIR``, else ``$HOME/.claude``)."""
    source = os.environ if env is None else env
    if source.get("CLAUDE_CONFIG_DIR"):
        return Path(source["CLAUDE_CONFIG_DIR"])
    return Path(source.get("HOME") or Path.home()) / ".claude"


class TranscriptCost:
    """The cost so far of a session from its transcript: the final usage of each
    response (deduplicated as for any session), priced from the embedded table.
    Only for a session this run created (a resumed one's file holds earlier spend)."""

    def __init__(self, claude_dir: Path, session_id: str) -> None:
        from sessionwatch.prices import PriceTable
        from sessionwatch.sources.claude.transcript import FileAgg

        self.projects = claude_dir / "projects"
        self.session_id = session_id
        self.prices = PriceTable.embedded()
        self._agg = FileAgg
        self.files: dict[Path, tuple[int, Any]] = {}  # path → (offset, FileAgg)
        self.main: Path | None = None

    def _paths(self) -> list[Path]:
        if self.main is None and self.projects.is_dir():
            self.main = next(iter(self.projects.glob(f"*/{self.session_id}.jsonl")), None)
        if self.main is None:
            return []
        return [self.main, *sorted((self.main.parent / self.session_id / "subagents").glob("*.jsonl"))]

    def read(self) -> float | None:
        """Read what was appended since the last call; the cost so far, None before any usage."""
        from sessionwatch.sources.claude.transcript import parse_bytes

        for path in self._paths():
            offset, agg = self.files.get(path, (0, None))
            if agg is None:
                agg = self._agg()
            try:
                with path.open("rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1
            if end:
                main = path.name == f"{self.session_id}.jsonl"
                parse_bytes(agg, data, kind="main" if main else "subagent", source=str(path), stop=end)
            self.files[path] = (offset + end, agg)
        total = 0.0
        seen = False
        for _, agg in self.files.values():
            for key, bucket in agg.buckets.items():
                model, long, fast = key.rsplit("|", 2)
                usd = self.prices.cost(model, bucket, long=long == "1", fast=fast == "1")
                if usd is not None:
                    total += usd
                    seen = True
        return total if seen else None


class Progress:
    """The run on the terminal (stderr): readable lines, and on a TTY one
    live status line redrawn in place and cleared at the end. The answer of
    each successful turn goes to stdout, so ``> out.txt`` keeps it."""

    def __init__(self, err: TextIO, out: TextIO) -> None:
        self.err = err
        self.out = out
        self.tty = err.isatty()
        self._status = ""

    def _clear(self) -> None:
        if self.tty and self._status:
            self.err.write("\r\x1b[K")

    def line(self, text: str) -> None:
        self._clear()
        self.err.write(text + "\n")
        if self.tty and self._status:
            self.err.write(self._status)
        self.err.flush()

    def status(self, text: str) -> None:
        if not self.tty:
            return
        self._clear()
        self._status = text[: max(20, _columns() - 1)]
        self.err.write(self._status)
        self.err.flush()

    def end_status(self) -> None:
        self._clear()
        self._status = ""
        self.err.flush()

    def answer(self, text: str) -> None:
        self.out.write(text if text.endswith("\n") else text + "\n")
        self.out.flush()


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns or 80
    except (OSError, ValueError):
        return 80


def _money(usd: float | None) -> str:
    return "$–" if usd is None else f"${usd:.4f}"


def _secs(ms: float | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.1f} s"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _shown(line: LogLine) -> str | None:
    """A log line as the terminal shows it, or None for what only the logs keep."""
    if line.level == "debug":
        return None
    text = line.content.splitlines()[0] if line.content else ""
    if line.kind == "reply":
        more = " …" if "\n" in line.content.strip() else ""
        return "  " + cut(text, 200) + more
    if line.kind == "tool":
        return "  → " + text
    if line.kind == "result":
        return "  " + cut(line.content.replace("\n", " "), 300)
    if line.kind == "system":
        return "sessionwatch: " + text
    if line.source == "stderr":
        return "  claude: " + text
    return "  " + text


class Reporter:
    """``POST /runs`` from one background task: latest state plus the log lines
    not yet sent; a failed report is retried on the next, a 401/403 or a
    refusal ends reporting with one line, as does no server at the first one."""

    def __init__(self, url: str, token: str | None, body: Callable[[list[LogLine]], dict[str, Any]],
                 on_answer: Callable[[dict[str, Any]], None], notice: Callable[[str], None]) -> None:
        self.url = url
        self.token = token
        self.body = body
        self.on_answer = on_answer
        self.notice = notice
        self.logs: deque[LogLine] = deque(maxlen=PENDING_LOGS_MAX)
        self.wake = asyncio.Event()
        self.final = False
        self.enabled = True
        self.sent = 0

    def add(self, lines: Sequence[LogLine]) -> None:
        if self.enabled:
            self.logs.extend(lines)

    def poke(self) -> None:
        self.wake.set()

    async def run(self) -> None:
        from sessionwatch.clients.http import ApiError, AsyncApi, AuthError, ServerUnreachable

        async with AsyncApi(self.url, self.token, timeout_s=REPORT_TIMEOUT_S) as api:
            while self.enabled:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), HEARTBEAT_S)
                self.wake.clear()
                final = self.final
                logs = [self.logs.popleft() for _ in range(min(LOGS_PER_REPORT, len(self.logs)))]
                if self.logs:
                    self.wake.set()  # the rest at once, in the next report
                try:
                    response = await api.request("POST", "/runs", json=self.body(logs))
                except AuthError as exc:
                    self._give_up(f"{exc}; not reporting this run (set --token or SESSIONWATCH_TOKEN)")
                    return
                except ServerUnreachable as exc:
                    if not self.sent:
                        self._give_up(f"no server at {self.url}; showing progress here only")
                        return
                    log.debug("report not sent (%s); retried with the next", exc)
                    self.logs.extendleft(reversed(logs))
                    if final:
                        await asyncio.sleep(0.2)
                        self.wake.set()
                    continue
                except ApiError as exc:
                    self._give_up(f"the server at {self.url} refused the run ({exc.status}: {exc}); showing progress here only")
                    return
                except Exception:  # noqa: BLE001 - reporting is best-effort: the run goes on
                    log.exception("reporting the run failed")
                    self._give_up(f"reporting to {self.url} failed; showing progress here only")
                    return
                self.sent += 1
                try:
                    answer = response.json()
                except ValueError:
                    answer = None
                if isinstance(answer, dict):
                    self.on_answer(answer)
                if final:
                    return

    def _give_up(self, why: str) -> None:
        self.enabled = False
        self.logs.clear()
        self.notice(why)


@dataclass
class _Run:
    """One run's state, as it goes."""

    session_id: str | None
    state: State = "starting"
    status_reason: str | None = None
    model: str | None = None
    turns: int = 0
    tools: int = 0
    estimate: float | None = None
    figures: Figures = dataclasses.field(default_factory=Figures)
    exit_code: int | None = None
    result_text: str | None = None
    stop_reason: str | None = None
    #: how long the process ran (the summary's duration when the CLI gave none)
    wall_ms: int | None = None

    @property
    def cost(self) -> float | None:
        known = [c for c in (self.figures.total_cost_usd, self.estimate) if c is not None]
        return max(known) if known else None

    def update(self) -> RunUpdate:
        ended = self.state in ("ended", "failed")
        return RunUpdate(
            session_id=self.session_id,
            state=self.state,
            status_reason=self.status_reason,
            model=self.model,
            turns=self.turns,
            tools=self.tools,
            cost_usd=self.final_cost if ended else self.cost,
            total_cost_usd=self.figures.total_cost_usd,
            num_turns=self.figures.num_turns if self.figures.turns else None,
            duration_ms=self.figures.duration_ms,
            exit_code=self.exit_code,
        )

    @property
    def final_cost(self) -> float | None:
        """At the end the CLI's own total wins; without a ``result``, the cost so far."""
        return self.figures.total_cost_usd if self.figures.turns else self.estimate


def _fold_result(fig: Figures, msg: dict[str, Any]) -> None:
    cost = msg.get("total_cost_usd")
    if isinstance(cost, (int, float)):
        fig.total_cost_usd = float(cost)
    if isinstance(msg.get("num_turns"), int):
        fig.num_turns = msg["num_turns"]
    if isinstance(msg.get("duration_ms"), int):
        fig.duration_ms = msg["duration_ms"]
    fig.turns += 1
    fig.subtype = msg.get("subtype") if isinstance(msg.get("subtype"), str) else None
    fig.is_error = bool(msg.get("is_error")) or fig.subtype not in (None, "success")
    if isinstance(msg.get("modelUsage"), dict):
        fig.model_usage = msg["modelUsage"]


async def arun_claude(
    args: Sequence[str],
    *,
    on_update: Callable[[RunUpdate], object] | None = None,
    server: str | None = None,
    token: str | None = None,
    name: str | None = None,
    max_cost_usd: float | None = None,
    claude_bin: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run ``claude -p ... <args>`` to its end; see :func:`run_claude`.

    On the main thread, SIGINT (Ctrl-C) is taken for the run's length: the
    first interrupts the CLI (SIGINT to its process group) and waits for it,
    a second one terminates it (SIGTERM, then SIGKILL).
    """
    claude = find_claude(claude_bin)
    cmd, session_id = claude_command(claude, list(args))
    workdir = str(Path(cwd) if cwd is not None else Path.cwd())
    if not Path(workdir).is_dir():
        raise ConfigError(f"{workdir}: not a directory")
    if max_cost_usd is not None and not max_cost_usd >= 0:
        raise ConfigError(f"max_cost_usd must not be negative: {max_cost_usd}")
    run = _Run(session_id=session_id)
    prompt = prompt_of(args)
    current_task = cut(" ".join(prompt.split()), 200) if prompt else None
    cap: list[float | None] = [max_cost_usd]
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()  # a stop was asked for (Ctrl-C, dashboard, budget)
    escalate = asyncio.Event()  # a second Ctrl-C
    interrupts = 0

    def notice(text: str) -> None:
        if progress is not None:
            progress.line(f"sessionwatch: {text}")
        else:
            log.warning("%s", text)

    def body(logs: list[LogLine]) -> dict[str, Any]:
        ended = run.state in ("ended", "failed")
        return {
            "session_id": run.session_id or "",
            "name": name[:NAME_MAX] if name else None,
            "cwd": workdir,
            "current_task": current_task,
            "pid": proc.pid or os.getpid(),
            "state": run.state,
            "status_reason": run.status_reason,
            "model": run.model,
            "figures": {
                "total_cost_usd": run.final_cost if ended else run.cost,
                "num_turns": run.figures.num_turns if run.figures.turns else run.turns,
                "duration_ms": run.figures.duration_ms,
            },
            "exit_code": run.exit_code,
            "max_cost_usd": cap[0],
            "logs": msgspec.to_builtins(logs),
        }

    def on_answer(answer: dict[str, Any]) -> None:
        new_cap = answer.get("max_cost_usd")
        if isinstance(new_cap, (int, float)) and not isinstance(new_cap, bool) and new_cap != cap[0]:
            cap[0] = float(new_cap)
            check_budget()
        if answer.get("stop") is True:
            stop(STOPPED_FROM_DASHBOARD)

    reporter = Reporter(server, token, body, on_answer, notice) if server else None

    def emit(lines: Sequence[LogLine]) -> None:
        if reporter is not None:
            reporter.add(lines)
        if progress is not None:
            for line in lines:
                shown = _shown(line)
                if shown is not None:
                    progress.line(shown)

    def status_line() -> None:
        if progress is None or run.state in ("ended", "failed"):
            return
        started = proc.started_at or time.time()
        progress.status(
            f"claude {run.state} · {_count(run.turns, 'turn')} · {_count(run.tools, 'tool')} · {_money(run.cost)} · "
            f"{time.time() - started:.0f} s"
        )

    def changed(*, turn: bool = False, state: State | None = None) -> None:
        """A status change or a turn: tell the callback and the server."""
        if state is not None:
            if state == run.state and not turn:
                return
            run.state = state
        if reporter is not None:
            reporter.poke()
        status_line()
        if on_update is not None:
            try:
                on_update(run.update())
            except Exception:  # noqa: BLE001 - the caller's callback must not end the run
                log.exception("on_update callback failed")

    def system(text: str, level: Literal["info", "warn", "error"] = "info") -> None:
        emit([LogLine(ts=time.time(), level=level, source="system", kind="system", content=text)])

    def stop(reason: str) -> None:
        if run.stop_reason is None:
            run.stop_reason = reason
            system(f"stopping Claude Code: {reason}", "warn")
            wake.set()

    def check_budget() -> None:
        cost, limit = run.cost, cap[0]
        if limit is not None and cost is not None and cost > limit:
            stop(f"{BUDGET_REACHED} ({_money(cost)} of {_money(limit)})")

    def on_stderr(text: str) -> None:
        emit([LogLine(ts=time.time(), level="warn", source="stderr", kind="raw", content=cut(text))])

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            stop(STOPPED_HERE)
        else:
            escalate.set()

    proc = ClaudeProcess(cmd, workdir, env=env, interactive=False, on_stderr=on_stderr)
    try:
        await proc.start()
    except OSError as exc:
        raise ConfigError(f"could not start Claude Code ({claude}): {exc.strerror or exc}") from exc
    if prompt and reporter is not None:  # the conversation view starts with it (stream-json does not echo it)
        reporter.add([LogLine(ts=proc.started_at, level="info", source="stdin", kind="prompt", content=cut(prompt))])

    sigint = threading.current_thread() is threading.main_thread()
    if sigint:
        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        except (NotImplementedError, RuntimeError, ValueError):
            sigint = False
    tasks: list[asyncio.Task[Any]] = []
    reporter_task = asyncio.create_task(reporter.run()) if reporter is not None else None
    code: int | None = None
    finished = False
    try:
        changed()  # starting
        tasks.append(asyncio.create_task(_read(proc, run, emit, changed, check_budget, progress)))
        tasks.append(asyncio.create_task(_stopper(proc, wake, escalate)))
        if session_id is not None:  # a new session: its transcript holds only this run's spend
            tasks.append(asyncio.create_task(_watch_cost(TranscriptCost(claude_dir_of(env), session_id), run, status_line, check_budget)))
        if progress is not None and progress.tty:
            tasks.append(asyncio.create_task(_tick(status_line)))
        await tasks[0]  # stdout closed
        code = await proc.wait()
        finished = True
    finally:
        for task in tasks[1:]:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if proc.running:  # cancelled from outside: never leave the CLI behind
            await proc.stop()
        await proc.close()
        if sigint:
            loop.remove_signal_handler(signal.SIGINT)
        if not finished and reporter_task is not None:  # cancelled or failed: no final report
            reporter_task.cancel()
    run.wall_ms = int((time.time() - proc.started_at) * 1000)
    rc = code if code is not None else -signal.SIGKILL
    exit_code = 128 - rc if rc < 0 else rc
    reason = run.stop_reason
    if reason is not None and reason.startswith(BUDGET_REACHED):
        exit_code, run.status_reason, run.state = EXIT_BUDGET, BUDGET_REACHED, "ended"
    elif reason is not None:
        exit_code = exit_code or EXIT_INTERRUPTED
        run.status_reason, run.state = reason, "ended"
    elif rc != 0 or run.figures.is_error:
        run.state = "failed"
        run.status_reason = _failure(rc, run)
        exit_code = exit_code or 1
    else:
        run.state = "ended"
    run.exit_code = exit_code
    if progress is not None:
        progress.end_status()
    changed(turn=True)
    if reporter is not None and reporter_task is not None:
        reporter.final = True
        reporter.poke()
        try:
            await asyncio.wait_for(asyncio.shield(reporter_task), FINAL_REPORT_S)
        except asyncio.TimeoutError:
            reporter.enabled = False
            reporter_task.cancel()
            with contextlib.suppress(BaseException):
                await reporter_task
        except Exception:  # noqa: BLE001 - reporting is best-effort
            log.exception("reporting the run failed")
    if progress is not None:
        progress.line(_summary(run))
    return RunResult(
        exit_code=exit_code,
        session_id=run.session_id,
        state=run.state,
        status_reason=run.status_reason,
        figures=run.figures,
        update=run.update(),
        result=run.result_text,
    )


def _failure(rc: int, run: _Run) -> str:
    if run.figures.is_error and run.result_text:
        return cut(run.result_text.splitlines()[0], REASON_MAX)
    if rc < 0:
        return f"Claude Code died of signal {-rc}"
    return f"Claude Code exited with status {rc}"


def _summary(run: _Run) -> str:
    what = run.state if not run.status_reason else f"{run.state} ({run.status_reason})"
    turns = run.figures.num_turns if run.figures.turns else run.turns
    return (
        f"sessionwatch: {what}: {_count(turns, 'turn')}, {_count(run.tools, 'tool')}, {_money(run.final_cost)}, "
        f"{_secs(run.figures.duration_ms if run.figures.turns else run.wall_ms)}, exit status {run.exit_code}"
    )


async def _read(
    proc: ClaudeProcess,
    run: _Run,
    emit: Callable[[Sequence[LogLine]], None],
    changed: Callable[..., None],
    check_budget: Callable[[], None],
    progress: Progress | None,
) -> None:
    responses: set[str] = set()
    async for msg in proc.lines():
        kind = msg.get("type")
        lines = describe(msg, time.time(), cwd=proc.cwd)
        emit(lines)
        if kind == "system" and msg.get("subtype") == "init":
            if isinstance(msg.get("session_id"), str):
                run.session_id = msg["session_id"]
            if isinstance(msg.get("model"), str):
                run.model = msg["model"]
            changed(state="running")
        elif kind == "assistant":
            # one message per content block, each with the response's id: count responses
            # (a "<synthetic>" one is the CLI's own error or interrupt notice, no response)
            message = msg.get("message")
            mid = message.get("id") if isinstance(message, dict) else None
            new = isinstance(message, dict) and message.get("model") != "<synthetic>" and mid not in responses
            if new:
                run.turns += 1
                if mid is not None:
                    responses.add(mid)
            tools = sum(1 for line in lines if line.kind == "tool")
            run.tools += tools
            changed(state="running", turn=bool(new or tools))
        elif kind == "user":
            changed(state="running")
        elif kind == "result":
            _fold_result(run.figures, msg)
            text = msg.get("result")
            run.result_text = text if isinstance(text, str) else None
            if progress is not None and run.result_text and not run.figures.is_error:
                progress.end_status()
                progress.answer(run.result_text)
            check_budget()
            changed(state="waiting", turn=True)


async def _stopper(proc: ClaudeProcess, wake: asyncio.Event, escalate: asyncio.Event) -> None:
    """Interrupt as a terminal would (SIGINT to the group), then, after
    INTERRUPT_GRACE_S or a second Ctrl-C, SIGTERM and SIGKILL."""
    await wake.wait()
    proc.signal(signal.SIGINT)
    ended = asyncio.ensure_future(proc.wait())
    more = asyncio.ensure_future(escalate.wait())
    try:
        await asyncio.wait({ended, more}, timeout=INTERRUPT_GRACE_S, return_when=asyncio.FIRST_COMPLETED)
        if proc.running:
            proc.signal(signal.SIGTERM)
            if await proc.wait(STOP_STEP_S) is None:
                proc.signal(signal.SIGKILL)
    finally:
        more.cancel()
        ended.cancel()


async def _watch_cost(costs: TranscriptCost, run: _Run, status_line: Callable[[], None], check_budget: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(TRANSCRIPT_POLL_S)
        try:
            estimate = await asyncio.to_thread(costs.read)
        except Exception:  # noqa: BLE001 - a cost estimate must not end the run
            log.exception("reading the transcript for the cost so far failed")
            return
        if estimate is not None and estimate != run.estimate:
            run.estimate = estimate
            status_line()
            check_budget()


async def _tick(status_line: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(1.0)
        status_line()


def run_claude(
    args: Sequence[str],
    *,
    on_update: Callable[[RunUpdate], object] | None = None,
    server: str | None = None,
    token: str | None = None,
    name: str | None = None,
    max_cost_usd: float | None = None,
    claude_bin: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run ``claude -p --output-format stream-json --verbose <args>`` to its end
    in an event loop of its own; returns how it ended.

    ``on_update(RunUpdate)`` is called on each status change (starting →
    running → waiting → ended/failed) and after each turn; one that raises is
    logged. ``server`` (and ``token``) put the run on that sessionwatch
    server's dashboards under ``name``; ``max_cost_usd`` stops the CLI once the
    cost so far passes it (``status_reason`` "budget reached", exit status
    :data:`EXIT_BUDGET`). ``claude_bin`` picks the CLI (default: ``claude`` on
    PATH, else the one the Claude Agent SDK bundles); ``cwd`` and ``env`` are
    its working directory and whole environment (default: this process's).
    ``progress`` prints the run (what ``sessionwatch run`` passes); without it
    nothing is printed. :class:`~sessionwatch.errors.ConfigError` if the CLI
    cannot be found or the arguments cannot be run.
    """
    return asyncio.run(
        arun_claude(
            args,
            on_update=on_update,
            server=server,
            token=token,
            name=name,
            max_cost_usd=max_cost_usd,
            claude_bin=claude_bin,
            cwd=cwd,
            env=env,
            progress=progress,
        )
    )
