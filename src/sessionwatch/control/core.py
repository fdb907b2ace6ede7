"""Control: away mode and approvals, spend caps, and the "control" facet.

:class:`Control` answers Claude Code's hook events (the ``Answerer`` seam of
``sources/hooks/answer.py``: ``holds(event)`` then ``answer(event, session)``
for every event ``POST /hooks`` takes):

- **Away mode** (``PUT /away``, kept in the store): a PermissionRequest waits
  up to ``--approval-wait-s`` for ``POST /sessions/{id}/approve`` and gets
  Claude Code's decision (``{"hookSpecificOutput": {"hookEventName":
  "PermissionRequest", "decision": {"behavior": "allow"|"deny", "message"}}}``,
  the shape the real CLI 2.1.330 takes, tests/test_hooks_cli.py). Nobody
  answers: ``{}``, no decision, and the CLI asks in its terminal. A prompt
  stops being pending when it is answered here, when it times out, when away
  mode is turned off, or when a later hook event of that session shows it was
  answered in the terminal (the event folds to another pending or none,
  :func:`~sessionwatch.sources.hooks.events.fold`); ``approve`` then raises
  :class:`NotPending` (409). Away off: every event is answered at once.
- **Budgets** (``--max-cost-usd``, ``PUT /sessions/{id}/budget``,
  ``--max-daily-cost-usd``; control/budgets.py): past a cap, PreToolUse is
  denied and UserPromptSubmit blocked, with the reason Claude Code shows.
- Every decision and budget change is recorded with who, when and from where
  (store/base.py, :class:`~sessionwatch.store.base.Actor`).

The pending id a dashboard answers is the one the session shows
(``Session.pending.id``, from the hooks source's fold of the same events);
Control also folds the events itself (:func:`fold` is pure), which gives the
same id, and uses that when the session shows none.

As a FacetSource named ``control`` it gives ``max_cost_usd`` (the cap that
applies to the session) and, past a cap, ``status_reason`` "budget reached".
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio

from sessionwatch.control.budgets import (
    BUDGET_REACHED,
    DailySpend,
    block_prompt,
    daily_reason,
    deny_tool,
    local_midnight,
    over,
    session_reason,
)
from sessionwatch.errors import ApiError, SessionwatchError
from sessionwatch.model import Session
from sessionwatch.relay import Gone
from sessionwatch.sources.hooks.events import HookEvent, HookState, fold
from sessionwatch.store.base import Actor, Approval

if TYPE_CHECKING:
    from sessionwatch.agents.registry import AgentRegistry
    from sessionwatch.engine import Engine
    from sessionwatch.managed.manager import Manager
    from sessionwatch.relay import Relay

log = logging.getLogger(__name__)

Decision = Literal["allow", "deny"]
DECISIONS: Final[tuple[Decision, ...]] = ("allow", "deny")
#: The message Claude Code gets with a deny that names none.
DENIED: Final = "sessionwatch: denied from the dashboard"
#: How often today's spend is looked at for the daily cap.
CHECK_S: Final = 1.0
#: Sessions whose hook state Control keeps (least recently seen forgotten first),
#: and prompts remembered as no longer pending.
KEEP: Final = 10_000
AWAY: Final = "away"


class UnknownSession(SessionwatchError):
    """No session with that id (404)."""


class NotPending(SessionwatchError):
    """The prompt is no longer pending (409)."""


def permission_decision(decision: Decision, message: str | None) -> dict[str, Any]:
    """A PermissionRequest hook's answer, as Claude Code 2.1.330 takes it."""
    body: dict[str, Any] = {"behavior": decision}
    if decision == "deny":
        body["message"] = message or DENIED
    return {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": body}}


@dataclass
class Held:
    """A PermissionRequest whose hook request waits for an answer."""

    session_id: str
    pending_id: str
    tool: str | None
    summary: str
    since: float
    answer: asyncio.Future[dict[str, Any]]
    #: the id Control's own fold gave the prompt (equal to ``pending_id`` unless the session shows another)
    fold_id: str = ""
    #: an approval is being recorded: its answer comes at once, even past the wait
    claimed: bool = False

    def settle(self, answer: dict[str, Any]) -> None:
        if not self.answer.done():
            self.answer.set_result(answer)

    def to_json(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "pending_id": self.pending_id, "tool": self.tool, "summary": self.summary, "since": self.since}


@dataclass
class _Away:
    on: bool = False
    changed_at: float | None = None
    by: dict[str, Any] | None = None


def _run_by_a_server(session: Session | None) -> bool:
    """Whether ``session`` is a managed session whose process a server runs now."""
    m = session.managed if session is not None else None
    return m is not None and m.kind == "server" and m.state in ("starting", "running", "waiting")


def _shown_pending_id(session: Session | None, tool: str | None) -> str | None:
    """The pending id the session shows for this tool (once Session has ``pending``)."""
    p: Any = getattr(session, "pending", None)
    if p is None:
        return None
    if isinstance(p, dict):
        pid, ptool = p.get("id"), p.get("tool")
    else:
        pid, ptool = getattr(p, "id", None), getattr(p, "tool", None)
    return pid if isinstance(pid, str) and ptool == tool else None


class Control:
    """Away mode, approvals and budgets (see the module's docstring)."""

    #: This source's name in the facet rules (facets.py).
    name = "control"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        s = engine.settings
        self.wait_s = s.approval_wait_s
        self.max_cost_usd = s.max_cost_usd
        self.max_daily_cost_usd = s.max_daily_cost_usd
        self.away = _Away()
        #: each session's own cap (PUT /sessions/{id}/budget)
        self.budgets: dict[str, float] = {}
        self.daily = DailySpend()
        self.daily_reached = False
        #: today's spend as of (the hub's last event id, the day): recomputed when either moves
        self._daily_key: tuple[int, float] = (-1, 0.0)
        self._daily_spent = 0.0
        #: sessions the facet showed "budget reached" for the daily cap (published again when it lifts)
        self._daily_marked: set[str] = set()
        self._states: OrderedDict[str, HookState] = OrderedDict()
        self._held: dict[tuple[str, str], Held] = {}
        self._holds_trimmed = 0.0
        self._gone: OrderedDict[tuple[str, str], str] = OrderedDict()
        #: managed sessions (sessionwatch/managed): their processes' permission requests are answered here too
        self.managed: Manager | None = None
        #: agents' sessions (sessionwatch/agents): answers and budgets for them go down to their agent
        self.agents: AgentRegistry | None = None
        #: replicas (relay.py): prompts held here are listed in the store, and an
        #: answer for a prompt another replica holds is relayed to it
        self.relay: Relay | None = None
        self._bg: set[asyncio.Task[None]] = set()

    # --- lifecycle -----------------------------------------------------------------------

    async def load(self) -> None:
        """The away switch and the budgets from the store (after ``engine.open``)."""
        store = self.engine.store
        flag = (await store.flags()).get(AWAY)
        if flag is not None:
            self.away = _Away(flag["value"] == "on", flag["changed_at"], flag["by"])
        self.budgets = await store.budgets()
        if self.budgets:
            ids = list(self.budgets)
            await self.engine.changed("control", lambda: ids)

    async def run(self) -> None:
        """Until cancelled: today's spend against the daily cap, every :data:`CHECK_S`."""
        while True:
            try:
                if getattr(self.engine.log, "shared", False):
                    await self.sync()
                await self.check_daily()
            except Exception:  # noqa: BLE001 - the next check may do better
                log.exception("daily budget check failed")
            await self.engine.clock.sleep(CHECK_S)

    async def sync(self) -> None:
        """Replicas on one database: the away switch and the budgets another
        replica changed, read every :data:`CHECK_S` (two small queries)."""
        store = self.engine.store
        replicas = self.engine.replicas
        if replicas is not None and self.engine.clock.now() - self._holds_trimmed > 60 and await self.engine.leading():
            self._holds_trimmed = self.engine.clock.now()
            await replicas.trim_holds(self._holds_trimmed - self.wait_s - 60)  # a dead replica's
        flag = (await store.flags()).get(AWAY)
        if flag is not None and flag["changed_at"] != self.away.changed_at:
            on = flag["value"] == "on"
            self.away = _Away(on, flag["changed_at"], flag["by"])
            if self.agents is not None:
                self.agents.wake_all()
            if not on:
                self._release("away mode was turned off")
        budgets = await store.budgets()
        if budgets != self.budgets:
            touched = set(budgets) ^ set(self.budgets) | {k for k, v in budgets.items() if self.budgets.get(k) != v}

            def change() -> list[str]:
                self.budgets.clear()  # in place: the managed sessions' manager holds this dict
                self.budgets.update(budgets)
                return [sid for sid in touched if sid in self.engine.hub.sessions]

            await self.engine.changed("control", change)

    async def check_daily(self) -> bool:
        """Whether today's spend is past the daily cap; publishes the sessions of
        today when that changes (their ``status_reason``)."""
        reached = self._daily_now()
        if reached != self.daily_reached:
            self.daily_reached = reached
            hub = self.engine.hub

            def touched() -> set[str]:
                # on: today's sessions; off: every session shown "budget reached" for it
                ids = {sid for sid, s in hub.sessions.items() if s.source == "claude" and self.daily.active_today(s)}
                ids |= self._daily_marked
                self._daily_marked = set()
                return ids

            await self.engine.changed("control", touched)
        return reached

    def _daily_now(self) -> bool:
        cap = self.max_daily_cost_usd
        if cap is None:
            return False
        hub, now = self.engine.hub, self.engine.clock.now()
        key = (hub.last_id, local_midnight(now))
        if key != self._daily_key:  # sessions changed (an event), or a new day
            self._daily_key = key
            self._daily_spent = self.daily.total(hub.sessions.values(), now)
        return over(self._daily_spent, cap)

    # --- the Answerer seam ---------------------------------------------------------------

    def holds(self, event: HookEvent) -> bool:
        """True for a PermissionRequest that will wait for an answer (away mode).
        Never for a process the server runs: its requests come on stream-json
        (``can_use_tool``) right after the hook answers, and wait there."""
        if self.managed is not None and self.managed.runs_process(event.session_id):
            return False
        if self.engine.replicated and _run_by_a_server(self.engine.hub.sessions.get(event.session_id)):
            return False  # another replica's managed process
        return self.away.on and event.hook_event_name == "PermissionRequest"

    async def answer(self, event: HookEvent, session: Session | None) -> dict[str, Any]:
        """The hook's output for ``event`` (``{}``: no decision)."""
        now = self.engine.clock.now()
        sid = event.session_id
        name = event.hook_event_name
        hold = self.holds(event)
        state = fold(self._states.get(sid), event, now, hold=hold)
        if name == "SessionEnd":
            self._states.pop(sid, None)
        else:
            self._states[sid] = state
            self._states.move_to_end(sid)
            while len(self._states) > KEEP:
                self._states.popitem(last=False)
        self._answered_elsewhere(sid, state)
        if name in ("PreToolUse", "UserPromptSubmit"):
            reason = self.budget_reason(sid, session)
            if reason is None:
                return {}
            return deny_tool(reason) if name == "PreToolUse" else block_prompt(reason)
        if hold and state.pending is not None:
            pid = _shown_pending_id(session, event.tool_name) or state.pending.id
            p = state.pending
            return await self._wait(Held(sid, pid, p.tool, p.summary, now, asyncio.get_running_loop().create_future(), p.id))
        return {}

    def _answered_elsewhere(self, sid: str, state: HookState) -> None:
        """Prompts of ``sid`` that the event shows were answered (in the terminal)."""
        for key, held in list(self._held.items()):
            if key[0] == sid and (state.pending is None or state.pending.id != held.fold_id):
                if not held.claimed:
                    self._drop(key, "answered in the terminal")
                    held.settle({})

    async def _wait(self, held: Held) -> dict[str, Any]:
        key = (held.session_id, held.pending_id)
        old = self._held.get(key)
        if old is not None:
            self._drop(key, "asked again")
            old.settle({})
        self._held[key] = held
        self._gone.pop(key, None)
        replicas = self.engine.replicas
        me = self.relay.me if self.relay is not None else 0
        try:
            if replicas is not None:  # every replica can list it and relay an answer here
                try:
                    await replicas.hold_put(held.session_id, held.pending_id, me, held.tool, held.summary, held.since)
                except Exception:  # noqa: BLE001 - it can still be answered through this replica
                    log.warning("could not list a held prompt for the other replicas", exc_info=True)
            with anyio.move_on_after(self.wait_s):
                return await asyncio.shield(held.answer)
            if held.claimed:  # an answer is being recorded right now
                return await held.answer
            return {}
        finally:
            if self._held.get(key) is held:
                self._drop(key, "timed out")
            if replicas is not None:
                self._spawn(replicas.hold_drop(held.session_id, held.pending_id, me))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Store work nobody waits for (a reference kept until it ends)."""

        async def run() -> None:
            try:
                await work
            except Exception:  # noqa: BLE001 - a leftover row is trimmed later
                log.warning("store work after a held prompt failed", exc_info=True)

        task = asyncio.get_running_loop().create_task(run())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def _drop(self, key: tuple[str, str], why: str) -> None:
        self._held.pop(key, None)
        self._gone[key] = why
        self._gone.move_to_end(key)
        while len(self._gone) > KEEP:
            self._gone.popitem(last=False)

    # --- away mode and approvals ---------------------------------------------------------

    async def set_away(self, on: bool, by: Actor) -> dict[str, Any]:
        now = self.engine.clock.now()
        await self.engine.store.write(self.engine.store.set_flag(AWAY, "on" if on else "off", now, by))
        self.away = _Away(on, now, by.to_json())
        if self.agents is not None:
            self.agents.wake_all()  # the agents follow the switch
        if not on:
            self._release("away mode was turned off")
        return await self.away_json()

    def _release(self, why: str) -> None:
        """Every held prompt not being answered gets no decision (the terminal asks)."""
        for key, held in list(self._held.items()):
            if not held.claimed:
                self._drop(key, why)
                held.settle({})

    async def away_json(self) -> dict[str, Any]:
        """``GET /away``: the switch, who set it, and the prompts waiting for an answer now."""
        a = self.away
        return {
            "on": a.on,
            "changed_at": a.changed_at,
            "by": a.by,
            "approval_wait_s": self.wait_s,
            "waiting": await self.waiting(),
        }

    async def waiting(self, sid: str | None = None) -> list[dict[str, Any]]:
        """The prompts that can be answered now (of ``sid``, or all), oldest first:
        held here, held by other replicas, and held by agents."""
        held = [h.to_json() for (s, _), h in self._held.items() if sid is None or s == sid]
        replicas = self.engine.replicas
        if replicas is not None:
            here = {(h["session_id"], h["pending_id"]) for h in held}
            try:
                rows = await replicas.holds(self.engine.clock.now() - self.wait_s, sid)
            except Exception:  # noqa: BLE001 - this replica's own are still worth showing
                log.warning("could not read the other replicas' held prompts", exc_info=True)
                rows = []
            held += [
                {k: r[k] for k in ("session_id", "pending_id", "tool", "summary", "since")}
                for r in rows if (r["session_id"], r["pending_id"]) not in here
            ]  # fmt: skip
        held.sort(key=lambda h: h["since"])
        return held + (self.agents.waiting(sid) if self.agents is not None else [])

    def known(self, sid: str) -> bool:
        return sid in self.engine.hub.sessions or sid in self._states or (self.managed is not None and self.managed.knows(sid))

    async def approve(
        self, sid: str, pending_id: str, decision: Decision, message: str | None, by: Actor, *, relayed: bool = False
    ) -> dict[str, Any]:
        """Answer a held prompt; :class:`UnknownSession` or :class:`NotPending` if it cannot be.
        Replicas: a prompt another replica holds is answered there (``relayed``: asked by one)."""
        if self.managed is not None and self.managed.has_pending(sid, pending_id):
            return await self.managed.approve(sid, pending_id, decision, message, by)
        key = (sid, pending_id)
        held = self._held.get(key)
        if held is None and self.engine.replicated:
            # not held here: what the others committed first (an agent's row
            # with the prompt the client saw) before it is looked for
            await self.engine.catch_up()
        if self.agents is not None and self.agents.has_pending(sid, pending_id):
            return await self.agents.approve(sid, pending_id, decision, message, by)
        if held is None and not relayed and self.relay is not None and self.relay.on:
            holder = await self._holder(sid, pending_id)
            if holder is not None:
                body = {"session_id": sid, "pending_id": pending_id, "decision": decision, "message": message}
                try:
                    answer: dict[str, Any] = await self.relay.ask(holder, "approve", body, by)
                except Gone:
                    raise NotPending("that prompt is no longer pending (the replica that held it has stopped)") from None
                return answer
        if held is None or held.claimed or held.answer.done():
            if not self.known(sid):
                raise UnknownSession(f"no session with id {sid!r}")
            why = "being answered" if held is not None else self._gone.get(key)
            raise NotPending(f"that prompt is no longer pending ({why})" if why else "no prompt with that id is pending in this session")
        held.claimed = True
        approval = Approval(sid, pending_id, decision, message, held.tool, held.summary, self.engine.clock.now(), by)
        try:
            await self.engine.store.write(self.engine.store.record_approval(approval))
        except BaseException:
            # not recorded, so not given: the CLI asks in its terminal
            self._drop(key, "the answer could not be recorded")
            held.settle({})
            raise
        self._drop(key, f"already answered: {decision}")
        held.settle(permission_decision(decision, message))
        return {"session_id": sid, "pending_id": pending_id, "decision": decision, "message": message, "tool": held.tool, "summary": held.summary, "decided_at": approval.decided_at, "by": by.to_json()}

    async def _holder(self, sid: str, pending_id: str) -> int | None:
        """Replicas: the other replica that holds ``pending_id`` (a hook's
        request, or its managed process's question), if one does."""
        assert self.relay is not None
        me = self.relay.me
        rows = await self.relay.store.holds(self.engine.clock.now() - self.wait_s, sid)
        holder = next((r["origin"] for r in rows if r["pending_id"] == pending_id), None)
        if holder is None and self.managed is not None:
            holder = await self.managed.owner_elsewhere(sid)
        return holder if holder != me else None

    async def relayed_approve(self, body: dict[str, Any], by: Actor) -> dict[str, Any]:
        """An answer another replica relayed here (relay.py)."""
        decision = body.get("decision")
        message = body.get("message")
        sid, pending_id = body.get("session_id"), body.get("pending_id")
        if not isinstance(sid, str) or not isinstance(pending_id, str) or decision not in DECISIONS:
            raise ApiError(400, "a relayed approval needs session_id, pending_id and decision")
        try:
            return await self.approve(sid, pending_id, "allow" if decision == "allow" else "deny",
                                      message if isinstance(message, str) else None, by, relayed=True)  # fmt: skip
        except UnknownSession as exc:
            raise ApiError(404, str(exc)) from None
        except NotPending as exc:
            raise ApiError(409, str(exc)) from None

    # --- budgets ---------------------------------------------------------------------------

    def cap(self, sid: str) -> float | None:
        """The cap that applies to ``sid``: its own, else ``--max-cost-usd``."""
        return self.budgets.get(sid, self.max_cost_usd)

    def budget_reason(self, sid: str, session: Session | None) -> str | None:
        """Why ``sid`` may do nothing more, or None."""
        cap = self.cap(sid)
        if session is not None and over(session.cost_usd, cap) and session.cost_usd is not None:
            assert cap is not None
            return session_reason(cap)
        daily = self.max_daily_cost_usd
        if daily is not None and self._daily_now():
            return daily_reason(daily)
        return None

    async def set_budget(self, sid: str, max_cost_usd: float | None, by: Actor) -> dict[str, Any]:
        if sid not in self.engine.hub.sessions:
            raise UnknownSession(f"no session with id {sid!r}")
        store = self.engine.store
        writes = store.set_budget(sid, max_cost_usd, self.engine.clock.now(), by)

        async def change() -> list[str]:
            await store.write(writes)
            if max_cost_usd is None:
                self.budgets.pop(sid, None)
            else:
                self.budgets[sid] = max_cost_usd
            return [sid]

        await self.engine.changed("budget", change)
        if self.agents is not None:
            await self.agents.budget(sid, max_cost_usd, by)
        return await self.budget_json(sid)

    async def budget_json(self, sid: str) -> dict[str, Any]:
        return {
            "max_cost_usd": self.cap(sid),
            "own": self.budgets.get(sid),
            "default": self.max_cost_usd,
            "changes": await self.engine.store.budget_changes(sid),
        }

    async def detail(self, sid: str) -> dict[str, Any]:
        """What ``GET /sessions/{id}`` adds: the answered prompts, the budget, prompts waiting here."""
        return {
            "approvals": await self.engine.store.approvals(sid),
            "budget": await self.budget_json(sid),
            "waiting_approval": await self.waiting(sid),
        }

    # --- the "control" facet -------------------------------------------------------------

    def facet(self, sid: str, now: float) -> dict[str, Any] | None:
        cap = self.cap(sid)
        if cap is None and not self.daily_reached:
            return None
        s = self.engine.index.facet(sid, now)
        if s is None:
            return None
        f: dict[str, Any] = {}
        if cap is not None:
            f["max_cost_usd"] = cap
        if s.cost_usd is not None and over(s.cost_usd, cap):
            f["status_reason"] = BUDGET_REACHED
        elif self.daily_reached and self.daily.active_today(s):
            f["status_reason"] = BUDGET_REACHED
            self._daily_marked.add(sid)
        return f

    def ids(self) -> list[str]:
        return list(self.budgets)

    def claims(self, sid: str) -> bool:
        return False
