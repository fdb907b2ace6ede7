"""The hooks source: what Claude Code's hook events say about each session.

:class:`HookSource` holds one :class:`~sessionwatch.sources.hooks.events.HookState`
per session id (events of subagents carry the parent's id, so they fold into
the parent) and gives the engine its facet (facets.py, source ``hooks``):

- when no transcript holds the id yet (SessionStart comes before the first
  prompt, so before the transcript exists), a whole :class:`Session`: a
  Claude row with ``project`` = the event's ``cwd`` and what the events tell;
- else the fields hooks know best, which win over the transcript's guess
  (``RULES``): ``status``, ``status_reason``, ``pending``, ``controls``, and
  ``last_activity`` when the last event is newer than the transcript's
  newest entry.

The idle rule holds as for a transcript (DESIGN.md, Status): ``running`` or
``waiting`` with no activity (hook event or transcript entry, the newer) for
``idle_after_s`` is ``idle``; ``needs_approval``, ``ended`` and ``failed``
stay. State lives in memory only: after a restart the transcript and the
live registry speak until the next event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import msgspec

from sessionwatch.model import Control, Pending, Session, Status, before_transcript, iso
from sessionwatch.sources.hooks.events import HookEvent, HookState, fold, registry_idle

IDLE_REASON = "no activity"


class Transcripts(Protocol):
    """What the hooks source asks the Claude index."""

    def shows(self, sid: str) -> bool: ...

    def last_ts(self, sid: str) -> float | None: ...


def idle_status(status: Status, reason: str | None, activity: float | None, now: float, idle_after_s: float) -> tuple[Status, str | None]:
    """``running``/``waiting`` with no activity for ``idle_after_s`` → ``idle``; anything else stays."""
    if status in ("running", "waiting") and (activity is None or now - activity >= idle_after_s):
        return "idle", IDLE_REASON
    return status, reason


class HookSource:
    #: This source's name in the facet rules (facets.py).
    name = "hooks"

    def __init__(self, transcripts: Transcripts, *, idle_after_s: float) -> None:
        self.transcripts = transcripts
        self.idle_after_s = idle_after_s
        self.states: dict[str, HookState] = {}
        #: when each session's first event arrived (a hooks-only row's ``started_at``)
        self.first_seen: dict[str, float] = {}

    # --- changes (run by the engine's applying task) ---------------------------------

    def fold(self, event: HookEvent, now: float, *, hold: bool = False) -> str:
        """Fold one event into its session's state; returns the session id."""
        sid = event.session_id
        self.states[sid] = fold(self.states.get(sid), event, now, hold=hold)
        self.first_seen.setdefault(sid, now)
        return sid

    def registry_idle(self, sid: str, idle_since: float) -> bool:
        """The live registry says the process is idle since ``idle_since``: a
        prompt pending from before then was dismissed (Escape sends no event).
        True if that changed the state."""
        state = self.states.get(sid)
        if state is None:
            return False
        after = registry_idle(state, idle_since)
        if after is state:
            return False
        self.states[sid] = after
        return True

    def unhold(self, sid: str) -> bool:
        """The hook request that held the session's prompt has been answered
        (or gave up): the prompt, if still pending, is no longer ``answerable``
        from here. True if that changed the state."""
        state = self.states.get(sid)
        if state is None or state.pending is None or not state.pending.answerable:
            return False
        pending = msgspec.structs.replace(state.pending, answerable=False)
        self.states[sid] = msgspec.structs.replace(state, pending=pending)
        return True

    # --- the facet -----------------------------------------------------------------

    def ids(self) -> Iterable[str]:
        return list(self.states)

    def claims(self, sid: str) -> bool:
        return sid in self.states

    def status(self, sid: str) -> Status | None:
        """The status the events last set (before the idle rule), or None."""
        state = self.states.get(sid)
        return state.status if state is not None else None

    def facet(self, sid: str, now: float) -> Session | Mapping[str, Any] | None:
        state = self.states.get(sid)
        if state is None:
            return None
        transcript_ts = self.transcripts.last_ts(sid)
        activity = max((t for t in (state.last_event, transcript_ts) if t is not None), default=None)
        fields: dict[str, Any] = {}
        if state.status is not None:
            fields["status"], fields["status_reason"] = idle_status(
                state.status, state.status_reason, activity, now, self.idle_after_s
            )
        p = state.pending
        fields["pending"] = (
            None if p is None else Pending(p.id, p.kind, p.tool, p.summary, iso(p.since), p.answerable)
        )
        controls: tuple[Control, ...] = ()
        # "approve" while sessionwatch holds the hook open (away mode, the approvals' Answerer)
        if p is not None and p.answerable:
            controls = ("approve",)
        fields["controls"] = controls
        if state.last_event is not None and (transcript_ts is None or state.last_event > transcript_ts):
            fields["last_activity"] = iso(state.last_event)
        if self.transcripts.shows(sid):
            return fields
        first = self.first_seen.get(sid, state.last_event or now)
        last = state.last_event if state.last_event is not None else first
        return before_transcript(
            sid,
            project=state.cwd,
            status=fields.get("status", "waiting"),
            started=first,
            last=last,
            model=state.model,
            status_reason=fields.get("status_reason"),
            pending=fields["pending"],
            controls=controls,
        )
