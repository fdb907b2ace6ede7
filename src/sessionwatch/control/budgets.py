"""Spend caps: what a session may still spend, today's spend, and the answers
that stop a session past its cap.

Hook input carries no running cost: a session's cost is the index's
(``Session.cost_usd``, from its transcripts). Today's spend, for
``--max-daily-cost-usd``, is computed from the same sessions (:class:`DailySpend`):
the index keeps one total per session, not one per day, so

- a session started today (local time) counts in full;
- a session started before today counts with what it spent since this server
  first saw it today (its cost then is the day's baseline, kept in memory).

So today's spend is exact for sessions started today, and for older ones
when the server ran since midnight; after a restart during the day, what an
older session spent earlier that day is not counted (never more than was spent).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Final

from sessionwatch.model import Session, iso

#: ``status_reason`` of a session past a cap (DESIGN.md, Session).
BUDGET_REACHED: Final = "budget reached"


def session_reason(cap: float) -> str:
    """What Claude Code shows the person when a session is past its own cap."""
    return f"sessionwatch: this session reached its {dollars(cap)} budget"


def daily_reason(cap: float) -> str:
    """What Claude Code shows the person when today's spend is past the daily cap."""
    return f"sessionwatch: today's spend across all sessions reached the {dollars(cap)} daily budget"


def dollars(value: float) -> str:
    """``5`` → ``$5.00``."""
    return f"${value:,.2f}"


def over(cost: float | None, cap: float | None) -> bool:
    """A cap is reached when the cost is at it or past it (a cap of 0 stops everything)."""
    return cap is not None and (cost or 0.0) >= cap


def deny_tool(reason: str) -> dict[str, Any]:
    """PreToolUse's answer that refuses the call (verified with Claude Code 2.1.330: the
    reason reaches the model as the tool's error; tests/test_hooks_cli.py)."""
    return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny", "permissionDecisionReason": reason}}


def block_prompt(reason: str) -> dict[str, Any]:
    """UserPromptSubmit's answer that stops the prompt before the model sees it (the CLI prints the reason)."""
    return {"decision": "block", "reason": reason}


def local_midnight(now: float) -> float:
    """The Unix time at which the local day of ``now`` began."""
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))


class DailySpend:
    """Today's spend across Claude sessions (see the module's docstring for the rule)."""

    def __init__(self) -> None:
        self.day_start = 0.0
        #: ``started_at`` / ``last_activity`` at or after this are today (ISO, as sessions spell them)
        self.day_start_iso = ""
        #: session id → its cost when this server first saw it today (sessions started before today)
        self.baseline: dict[str, float] = {}

    def today(self, now: float) -> str:
        """Roll over to a new local day if ``now`` is in one; the day's start as ISO."""
        start = local_midnight(now)
        if start != self.day_start:
            self.day_start = start
            self.day_start_iso = iso(start) or ""
            self.baseline = {}
        return self.day_start_iso

    def total(self, sessions: Iterable[Session], now: float) -> float:
        start = self.today(now)
        total = 0.0
        seen: set[str] = set()
        for s in sessions:
            if s.source != "claude" or s.cost_usd is None:
                continue
            if s.started_at is not None and s.started_at >= start:
                total += s.cost_usd
                continue
            seen.add(s.id)
            base = self.baseline.setdefault(s.id, s.cost_usd)
            total += max(0.0, s.cost_usd - base)
        if len(self.baseline) > len(seen):  # sessions that went away
            self.baseline = {sid: c for sid, c in self.baseline.items() if sid in seen}
        return round(total, 6)

    def active_today(self, s: Session) -> bool:
        return s.last_activity is not None and s.last_activity >= self.day_start_iso
