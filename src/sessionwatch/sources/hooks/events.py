"""Claude Code hook events → a session's exact live state.

Claude Code POSTs (``http`` hooks) or pipes (``command`` hooks, relayed by
``sessionwatch hook``) one JSON object per event. :func:`decode_hook` reads
the few fields sessionwatch uses; :func:`fold` turns an event into the
session's next :class:`HookState`. Both are pure: no clock (``now`` is
passed in), no I/O.

The rules (DESIGN.md, Status; payloads as recorded from Claude Code 2.1.330 in
``tests/vectors/hooks/``):

=====================================  ================  ======================================
event                                   status            status_reason
=====================================  ================  ======================================
SessionStart (startup/resume/clear)     waiting           "session started"
UserPromptSubmit                        running           "prompt submitted"
PreToolUse                              running           "tool: Bash"
PostToolUse                             running           "tool done: Bash"
PostToolUseFailure                      running           "tool failed: Bash"
PostToolUseFailure with is_interrupt    waiting           "interrupted"
PermissionDenied                        running           "denied: Bash"
PostToolBatch (all calls of a response  running           "tools done"
done; in -p also after a refused one)
PermissionRequest                       needs_approval    "permission: Bash" (+ pending)
PermissionRequest for AskUserQuestion   needs_approval    "question" (+ pending of kind question)
Notification permission_prompt          needs_approval    "permission: Bash" (+ pending)
Notification elicitation_dialog         needs_approval    "question" (+ pending)
Notification idle_prompt                waiting           "waiting for input"
SubagentStart                           running           "subagent: general-purpose"
Stop                                    waiting           "turn ended"
StopFailure                             failed            "API error: overloaded"
SessionEnd                              ended             "SessionEnd: prompt_input_exit"
=====================================  ================  ======================================

Every other event Claude Code knows (MessageDisplay,
SubagentStop, PreCompact, ...) only counts as activity. After SessionEnd only
a new SessionStart (``--resume``) changes the status; a SessionEnd right
after StopFailure keeps ``failed`` (a ``-p`` run whose API call failed ends
that way). Subagent events carry the parent's ``session_id`` (and an
``agent_id``), so they fold into the parent session; a subagent's tool events
do not clear a permission prompt the main thread is waiting on, and vice
versa.

Known gaps in what Claude Code sends (2.1.330): a prompt rejected in the
terminal (Escape, "No") is followed by no event at all, so ``needs_approval``
lasts until the next event (``idle_prompt`` ~60 s later, the next prompt, or
SessionEnd) unless the live registry's ``idle`` is folded in with
:func:`registry_idle`; PermissionRequest carries no ``tool_use_id`` (the pending id is
the preceding PreToolUse's when tool and input match).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final, Literal

import msgspec

from sessionwatch.errors import SessionwatchError
from sessionwatch.redact import mask

Status = Literal["running", "needs_approval", "waiting", "ended", "failed"]
PendingKind = Literal["permission", "question"]

#: Every hook event name Claude Code 2.1.330 accepts in its settings.
KNOWN_EVENTS: Final = frozenset(
    (
        "PreToolUse PostToolUse PostToolUseFailure PostToolBatch Notification UserPromptSubmit UserPromptExpansion "
        "SessionStart SessionEnd Stop StopFailure SubagentStart SubagentStop PreCompact PostCompact PreModelSwitch "
        "PostModelSwitch PermissionRequest PermissionDenied Setup TeammateIdle TaskCreated TaskCompleted Elicitation "
        "ElicitationResult ConfigChange WorktreeCreate WorktreeRemove InstructionsLoaded CwdChanged FileChanged "
        "DirectoryAdded MessageDisplay"
    ).split()
)

#: Tools whose "permission" is a question for the person, not a yes/no on an action.
QUESTION_TOOLS: Final = frozenset({"AskUserQuestion"})

SUMMARY_MAX: Final = 120
REASON_MAX: Final = 60
MAX_ID: Final = 200


class HookInputError(SessionwatchError):
    """A hook payload sessionwatch cannot use: not JSON, not an object, no session id or event name."""


class UnknownHookEvent(HookInputError):
    """A well-formed payload naming an event this version does not know (a newer Claude Code)."""

    def __init__(self, event: str) -> None:
        super().__init__(f"unknown hook event {event[:80]!r}")
        self.event = event


class HookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of a hook payload that sessionwatch reads (Claude Code sends many more)."""

    hook_event_name: str
    session_id: str
    cwd: str | None = None
    transcript_path: str | None = None
    permission_mode: str | None = None
    #: SessionStart: "startup" | "resume" | "clear" | "compact"
    source: str | None = None
    model: str | None = None
    tool_name: str | None = None
    tool_input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    #: PostToolUseFailure: the tool's error text; StopFailure: the error class ("server_error", "rate_limit")
    error: str | None = None
    #: StopFailure as documented (not sent by 2.1.330, which sends ``error``)
    error_type: str | None = None
    error_message: str | None = None
    last_assistant_message: str | None = None
    is_interrupt: bool | None = None
    #: Notification
    notification_type: str | None = None
    message: str | None = None
    #: SessionEnd: "prompt_input_exit" | "clear" | "logout" | "other" | ...
    reason: str | None = None
    #: set on events from a subagent (its tools, SubagentStart/Stop)
    agent_id: str | None = None
    agent_type: str | None = None


_decoder = msgspec.json.Decoder(HookEvent)


def decode_hook(body: bytes | str) -> HookEvent:
    """The event in a hook payload, or :class:`HookInputError` (never another exception).

    >>> decode_hook(b'{"hook_event_name": "Stop", "session_id": "s1"}').hook_event_name
    'Stop'
    """
    try:
        event = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise HookInputError(f"hook payload has a wrong field: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HookInputError(f"hook payload is not a JSON object: {str(exc)[:120]}") from None
    if not event.session_id or len(event.session_id) > MAX_ID:
        raise HookInputError("hook payload has no usable session_id")
    if event.hook_event_name not in KNOWN_EVENTS:
        raise UnknownHookEvent(event.hook_event_name)
    return event


class Pending(msgspec.Struct, frozen=True, kw_only=True):
    """What a session waits for a person to answer (DESIGN.md, Session ``pending``)."""

    id: str
    kind: PendingKind
    tool: str | None
    summary: str
    since: float
    #: sessionwatch can answer it now (a PermissionRequest hook held open for the answer)
    answerable: bool = False
    #: the subagent that asked, if any (not part of the API's ``pending``)
    agent_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The API's ``pending`` object."""
        return {"id": self.id, "kind": self.kind, "tool": self.tool, "summary": self.summary, "since": self.since, "answerable": self.answerable}


class HookState(msgspec.Struct, frozen=True, kw_only=True):
    """What a session's hook events say about it now."""

    session_id: str
    status: Status | None = None
    status_reason: str | None = None
    pending: Pending | None = None
    #: unix seconds of the last event that counts as activity (``idle_prompt`` does not)
    last_event: float | None = None
    last_event_name: str | None = None
    cwd: str | None = None
    transcript_path: str | None = None
    model: str | None = None
    permission_mode: str | None = None
    #: the last PreToolUse per thread ("" = main, else agent_id): (tool_use_id, tool, input digest)
    last_tool: dict[str, tuple[str, str, str]] = msgspec.field(default_factory=dict)


def new_state(session_id: str) -> HookState:
    return HookState(session_id=session_id)


def fold(state: HookState | None, event: HookEvent, now: float, *, hold: bool = False) -> HookState:
    """The session's state after ``event`` arrived at ``now`` (unix seconds).

    ``hold``: the caller keeps this PermissionRequest's hook request open for
    an answer from a dashboard (away mode), so the pending prompt is
    ``answerable``.
    """
    s = state if state is not None else new_state(event.session_id)
    name = event.hook_event_name
    thread = event.agent_id or ""
    changes: dict[str, Any] = {
        "last_event_name": name,
        "cwd": event.cwd or s.cwd,
        "transcript_path": event.transcript_path if event.transcript_path and not event.agent_id else s.transcript_path,
        "permission_mode": event.permission_mode or s.permission_mode,
        "model": event.model or s.model,
    }
    idle_notice = name == "Notification" and event.notification_type == "idle_prompt"
    if not idle_notice:
        changes["last_event"] = now

    if s.status == "ended" and not (name == "SessionStart" and event.source != "compact"):
        return msgspec.structs.replace(s, **changes)

    tool = event.tool_name
    status: Status | None = s.status
    reason = s.status_reason
    pending = s.pending

    def clears(p: Pending | None) -> Pending | None:
        """Pending survives an event from another thread (a subagent's tool while the main thread asks)."""
        return p if p is not None and (p.agent_id or "") != thread else None

    if name == "SessionStart":
        if event.source != "compact":
            status, reason, pending = "waiting", "session started", None
    elif name == "UserPromptSubmit":
        status, reason, pending = "running", "prompt submitted", None
    elif name == "PreToolUse":
        pending = clears(pending)
        if pending is None:
            status, reason = "running", _reason("tool", tool)
        if event.tool_use_id and tool:
            changes["last_tool"] = {**s.last_tool, thread: (event.tool_use_id, tool, _digest(event.tool_input))}
    elif name in ("PostToolUse", "PostToolUseFailure", "PermissionDenied", "PostToolBatch"):
        pending = clears(pending)
        if pending is None:
            if name == "PostToolUseFailure" and event.is_interrupt:
                status, reason = "waiting", "interrupted"
            else:
                word = {"PostToolUse": "tool done", "PostToolUseFailure": "tool failed", "PermissionDenied": "denied", "PostToolBatch": "tools done"}[name]
                status, reason = "running", _reason(word, tool)
    elif name == "PermissionRequest":
        kind: PendingKind = "question" if tool in QUESTION_TOOLS else "permission"
        pending = Pending(
            id=_pending_id(s, event, thread),
            kind=kind,
            tool=tool,
            summary=summarize(tool, event.tool_input, event.cwd or s.cwd),
            since=now,
            answerable=hold,
            agent_id=event.agent_id,
        )
        status, reason = "needs_approval", _pending_reason(pending)
    elif name == "Notification":
        ntype = event.notification_type
        if ntype == "permission_prompt":
            if pending is None:
                # No PermissionRequest hook seen (not installed, or an older CLI): the tool is the
                # last one this thread started, or the one the message names.
                last = s.last_tool.get(thread)
                named = _NAMED_TOOL.search(event.message or "")
                tool = named.group(1) if named else (last[1] if last else None)
                pending = Pending(
                    id=last[0] if last else _hash_id(s.session_id, "notification", str(now)),
                    kind="permission",
                    tool=tool,
                    summary=_one_line(mask(event.message or "permission requested"), SUMMARY_MAX),
                    since=now,
                    agent_id=event.agent_id,
                )
            status, reason = "needs_approval", _pending_reason(pending)
        elif ntype == "elicitation_dialog":
            pending = Pending(
                id=_hash_id(s.session_id, "elicitation", str(now)),
                kind="question",
                tool=tool,
                summary=_one_line(mask(event.message or "a question"), SUMMARY_MAX),
                since=now,
                agent_id=event.agent_id,
            )
            status, reason = "needs_approval", "question"
        elif idle_notice and status in ("running", "needs_approval", None):
            # The prompt box has been idle ~60 s: whatever was asked was answered or dismissed
            # in the terminal (a rejection sends no event of its own).
            status, reason, pending = "waiting", "waiting for input", None
    elif name == "SubagentStart":
        if pending is None:
            status, reason = "running", _reason("subagent", event.agent_type)
    elif name == "Stop":
        if not event.agent_id:
            status, reason, pending = "waiting", "turn ended", None
    elif name == "StopFailure":
        status, reason, pending = "failed", _api_error(event), None
    elif name == "SessionEnd":
        pending = None
        if status != "failed":
            status, reason = "ended", _cut(f"SessionEnd: {event.reason or 'unknown'}", REASON_MAX)
    changes.update(status=status, status_reason=reason, pending=pending)
    return msgspec.structs.replace(s, **changes)


def registry_idle(state: HookState, idle_since: float) -> HookState:
    """The live registry says the process has been idle since ``idle_since`` (unix seconds).

    A permission prompt rejected in the terminal sends no hook event, but the
    registry's status turns ``idle`` at once (sources/claude/live.py): a
    prompt still pending from before that moment was dismissed. Anything else
    is left as the hooks said (an idle process after Stop is already
    ``waiting``; a running turn's next event will follow).
    """
    p = state.pending
    if state.status != "needs_approval" or p is None or idle_since <= p.since:
        return state
    return msgspec.structs.replace(state, status="waiting", status_reason="prompt dismissed", pending=None)


# --- helpers -------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_NAMED_TOOL = re.compile(r"permission to use (\S+)")
#: "API Error: 529 Overloaded. This is a server-side issue..." → "overloaded"
_API_ERROR = re.compile(r"API Error: (?:\d{3} )?([A-Za-z][A-Za-z ]{1,40}?)(?:[.:(\n]|$)")


def _one_line(text: str, limit: int) -> str:
    flat = _WS.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reason(word: str, what: str | None) -> str:
    return _cut(f"{word}: {what}", REASON_MAX) if what else word


def _pending_reason(p: Pending) -> str:
    return "question" if p.kind == "question" else _reason("permission", p.tool)


def _api_error(event: HookEvent) -> str:
    for text in (event.error_message, event.last_assistant_message):
        if text and (m := _API_ERROR.search(text)):
            return _cut(f"API error: {m.group(1).strip().lower()}", REASON_MAX)
    kind = event.error_type or event.error
    return _cut(f"API error: {kind.replace('_', ' ')}", REASON_MAX) if kind else "API error"


def _digest(tool_input: dict[str, Any] | None) -> str:
    raw = msgspec.json.encode(tool_input, order="sorted") if tool_input is not None else b""
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def _hash_id(*parts: str) -> str:
    return "p_" + hashlib.blake2b("\0".join(parts).encode(), digest_size=8).hexdigest()


def _pending_id(s: HookState, event: HookEvent, thread: str) -> str:
    """The PreToolUse's tool_use_id when it asked for the same tool and input, else a digest of both."""
    last = s.last_tool.get(thread)
    digest = _digest(event.tool_input)
    if last is not None and last[1] == event.tool_name and last[2] == digest:
        return last[0]
    return _hash_id(s.session_id, thread, event.tool_name or "", digest)


#: The tool_input field that says what a call does, per tool (first present wins).
_WHAT: Final[dict[str, tuple[str, ...]]] = {
    "Bash": ("command",),
    "BashOutput": ("bash_id",),
    "Read": ("file_path",),
    "Write": ("file_path",),
    "Edit": ("file_path",),
    "MultiEdit": ("file_path",),
    "NotebookEdit": ("notebook_path",),
    "Glob": ("pattern",),
    "Grep": ("pattern",),
    "WebFetch": ("url",),
    "WebSearch": ("query",),
    "Agent": ("description", "prompt"),
    "Task": ("description", "prompt"),
    "Skill": ("skill", "command"),
}
_FALLBACK_KEYS: Final = ("command", "file_path", "path", "url", "query", "description", "prompt", "pattern")


def summarize(tool: str | None, tool_input: dict[str, Any] | None, cwd: str | None = None) -> str:
    """One line saying what a tool call wants to do, secrets masked, ≤ 120 characters.

    >>> summarize("Bash", {"command": "export TOKEN=ghp_" + "a1" * 15 + " && make"})
    'Bash: export TOKEN=ghp_•••• && make'
    """
    name = tool or "tool"
    data = tool_input or {}
    what: Any = None
    if name in QUESTION_TOOLS:
        questions = data.get("questions")
        if isinstance(questions, list) and questions and isinstance(questions[0], dict):
            what = questions[0].get("question")
    else:
        for key in _WHAT.get(name, _FALLBACK_KEYS):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                what = value
                break
        if what is None:
            what = next((v for v in data.values() if isinstance(v, str) and v.strip()), None)
    if not isinstance(what, str) or not what.strip():
        return name
    if cwd and what.startswith(cwd.rstrip("/") + "/"):
        what = what[len(cwd.rstrip("/")) + 1 :]
    # mask before cutting, so a key the cut would halve is still recognised (as transcript.shown does)
    shown = _one_line(mask(_one_line(what[:16384], SUMMARY_MAX + 1024)), max(20, SUMMARY_MAX - len(name) - 2))
    return f"{name}: {shown}"
