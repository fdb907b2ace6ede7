"""What ``POST /hooks`` answers Claude Code: the seam between the hooks and
whatever decides (away mode, approvals, budgets: the ``control`` package).

The route (server/api.py) does, for every event::

    event = decode_hook(body)
    hold = engine.answerer.holds(event)
    await engine.hook(event, hold=hold)          # state first: shown within 50 ms
    body = await engine.answerer.answer(event, engine.hub.sessions.get(event.session_id))

``holds`` says whether this event's hook request will be kept open for an
answer from a dashboard (a PermissionRequest in away mode): the pending
prompt is then ``answerable``. ``answer`` returns the hook's output as
Claude Code reads it (``{}``: no decision, carry on).
"""

from __future__ import annotations

from typing import Any, Protocol

from sessionwatch.model import Session
from sessionwatch.sources.hooks.events import HookEvent


class Answerer(Protocol):
    async def answer(self, event: HookEvent, session: Session | None) -> dict[str, Any]:
        """The hook's output for ``event`` (may wait, e.g. for an approval)."""

    def holds(self, event: HookEvent) -> bool:
        """True: a PermissionRequest whose answer will wait (away mode)."""


class AnswerAtOnce:
    """The default: no decision, at once; never holds a request."""

    async def answer(self, event: HookEvent, session: Session | None) -> dict[str, Any]:
        return {}

    def holds(self, event: HookEvent) -> bool:
        return False
