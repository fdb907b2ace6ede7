"""The server's side of agents: the ``agents`` facet source.

Each agent pushes whole Sessions (its own engine's projection of its
machine's transcripts, hooks, live registry and control); this source keeps
the latest of each, keyed by session id, in memory and in the store
(``agent_sessions``), and owns those rows (facets.py: an owner after the
server's own first-hand sources, before Panel trackers).

- **Idempotent** by (agent, seq): a batch whose seq the server already
  applied changes nothing; it only counts as a sign of life.
- **Stale**: an agent silent for ``--agent-stale-after-s`` has its sessions
  shown ``stale`` ("agent <host> silent"), not answerable, until it pushes again.
- **Down to the agent** (``GET /agents/{agent}/commands``, a long poll): an
  approval answered here for a prompt the agent holds, a budget set here, and
  the away switch with every answer.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import anyio
import msgspec
import orjson
from prometheus_client import Counter, Gauge

from sessionwatch.agents.wire import Push
from sessionwatch.model import Session, encode
from sessionwatch.store.base import Actor, Approval
from sessionwatch.store.postgres import AGENT_CHANNEL

if TYPE_CHECKING:
    from sessionwatch.control.core import Control, Decision
    from sessionwatch.engine import Engine

log = logging.getLogger(__name__)

#: How often agents' silence is looked at.
CHECK_S: Final = 1.0
#: Answered prompts remembered (a second answer gets 409).
KEEP: Final = 10_000
_decode = msgspec.json.Decoder(Session)


def silent_reason(host: str) -> str:
    return f"agent {host} silent"


@dataclass
class AgentState:
    host: str
    #: the last batch applied
    seq: int
    last_seen: float
    stale: bool = False
    ids: set[str] = field(default_factory=set)


@dataclass
class Row:
    agent: str
    host: str
    session: Session


class AgentRegistry:
    """Sessions pushed by agents (see the module's docstring)."""

    #: This source's name in the facet rules (facets.py).
    name = "agents"

    def __init__(self, engine: Engine, control: Control | None = None) -> None:
        self.engine = engine
        self.control = control
        self.stale_after_s = engine.settings.agent_stale_after_s
        self.rows: dict[str, Row] = {}
        self.agents: dict[str, AgentState] = {}
        self._wakes: dict[str, anyio.Event] = {}
        self._answered: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.batches = Counter(
            "sessionwatch_agent_batches",
            "Agent batches received: applied, or a seq already applied (re-sent after a lost answer, or a heartbeat)",
            ["result"],
            registry=engine.metrics.registry,
        )
        self.polls = Gauge(
            "sessionwatch_agent_polls_waiting",
            "Agents' long polls (GET /agents/{agent}/commands) waiting for a command now",
            registry=engine.metrics.registry,
        )

    @property
    def heartbeat_s(self) -> float:
        """How often an agent with nothing new says it is alive."""
        return max(0.2, min(15.0, self.stale_after_s / 4))

    # --- lifecycle -------------------------------------------------------------------------

    async def load(self) -> None:
        """What agents pushed before a restart (after ``engine.open``)."""
        store = self.engine.store
        now = self.engine.clock.now()
        for agent, host, seq, last_seen in await store.load_agents():
            # a restart is no news from an agent: its clock starts again now
            self.agents[agent] = AgentState(host, seq, max(last_seen, now))
        for sid, agent, host, body, _seq, _at in await store.load_agent_sessions():
            try:
                session = _decode.decode(body)
            except msgspec.DecodeError:
                log.warning("agent session %s: unreadable row skipped", sid)
                continue
            self._put(Row(agent, host, session))
        if self.rows:
            ids = list(self.rows)
            await self.engine.changed("agents", lambda: ids)

    async def run(self) -> None:
        """Until cancelled: agents going silent, and coming back, every :data:`CHECK_S`."""
        replicas = self.engine.replicas
        if replicas is not None:  # a command queued by another replica wakes a long poll here
            await replicas.subscribe(AGENT_CHANNEL, self._wake)
        while True:
            await self.engine.clock.sleep(CHECK_S)
            try:
                if any(self._stale_now(st) != st.stale for st in self.agents.values()):
                    await self.engine.changed("agents-stale", self._restale)
            except Exception:  # noqa: BLE001 - the next check may do better
                log.exception("agent staleness check failed")

    def _stale_now(self, st: AgentState) -> bool:
        return self.engine.clock.now() - st.last_seen > self.stale_after_s

    def _restale(self) -> set[str]:
        touched: set[str] = set()
        for st in self.agents.values():
            stale = self._stale_now(st)
            if stale != st.stale:
                st.stale = stale
                touched |= st.ids
                if stale:
                    log.warning("agent %s silent for %g s: its sessions are stale", st.host, self.stale_after_s)
        return touched

    def wake_all(self) -> None:
        """Answer every open ``GET /agents/{agent}/commands`` now (away changed, shutdown)."""
        for agent in list(self._wakes):
            self._wake(agent)

    def _wake(self, agent: str) -> None:
        event = self._wakes.pop(agent, None)
        if event is not None:
            event.set()

    # --- the facet source ------------------------------------------------------------------

    def facet(self, sid: str, now: float) -> Session | None:
        row = self.rows.get(sid)
        if row is None:
            return None
        st = self.agents.get(row.agent)
        s = row.session
        if st is not None and st.stale:
            pending = s.pending and msgspec.structs.replace(s.pending, answerable=False)
            return msgspec.structs.replace(
                s, status="stale", status_reason=silent_reason(row.host), is_stale=True, controls=(), pending=pending
            )
        return s

    def ids(self) -> list[str]:
        return list(self.rows)

    def claims(self, sid: str) -> bool:
        return sid in self.rows

    def _put(self, row: Row) -> None:
        old = self.rows.get(row.session.id)
        if old is not None and old.agent != row.agent:
            st = self.agents.get(old.agent)
            if st is not None:
                st.ids.discard(row.session.id)
        self.rows[row.session.id] = row
        st = self.agents.get(row.agent)
        if st is not None:
            st.ids.add(row.session.id)

    def _forget(self, agent: str, sid: str) -> bool:
        row = self.rows.get(sid)
        if row is None or row.agent != agent:
            return False
        del self.rows[sid]
        st = self.agents.get(agent)
        if st is not None:
            st.ids.discard(sid)
        return True

    # --- pushes ----------------------------------------------------------------------------

    async def push(self, p: Push) -> dict[str, Any]:
        """Apply one batch (as an engine command); the answer for the agent."""
        answer: dict[str, Any] = {}
        store = self.engine.store

        async def change() -> set[str]:
            now = self.engine.clock.now()
            st = self.agents.get(p.agent)
            known = st is not None
            if st is None:
                st = self.agents[p.agent] = AgentState(p.host, 0, now)
            touched: set[str] = set()
            if st.stale:
                st.stale = False
                touched |= st.ids
            st.last_seen = now
            st.host = p.host
            duplicate = known and p.seq <= st.seq
            if duplicate:
                await store.write(store.agent_seen(p.agent, p.host, st.seq, now))
            else:
                sessions = [s if s.host == p.host else msgspec.structs.replace(s, host=p.host) for s in p.upserts]
                deleted = [sid for sid in p.deletes if sid in st.ids]
                if p.sync is not None:
                    keep = set(p.sync) | {s.id for s in sessions}
                    deleted += [sid for sid in st.ids if sid not in keep]
                rows = [(s.id, encode(s)) for s in sessions]
                await store.write(
                    store.agent_sessions_put(p.agent, p.host, p.seq, now, rows, deleted)
                    + store.agent_seen(p.agent, p.host, p.seq, now)
                )
                for s in sessions:
                    self._put(Row(p.agent, p.host, s))
                    touched.add(s.id)
                for sid in deleted:
                    if self._forget(p.agent, sid):
                        touched.add(sid)
                st.seq = p.seq
            self.batches.labels("duplicate" if duplicate else "applied").inc()
            answer.update(
                seq=st.seq,
                duplicate=duplicate,
                heartbeat_s=self.heartbeat_s,
                resync=not known and p.sync is None,
            )
            return touched

        await self.engine.changed("agent-push", change)
        return answer

    # --- down to the agent -------------------------------------------------------------------

    def agent_of(self, sid: str) -> str | None:
        row = self.rows.get(sid)
        return row.agent if row is not None else None

    def has_pending(self, sid: str, pending_id: str) -> bool:
        """Whether ``pending_id`` is a prompt of an agent's session, held by
        that agent (answerable) and not answered here yet."""
        row = self.rows.get(sid)
        if row is None:
            return False
        p = row.session.pending
        st = self.agents.get(row.agent)
        return (
            p is not None and p.id == pending_id and p.answerable
            and st is not None and not st.stale and (sid, pending_id) not in self._answered
        )  # fmt: skip

    def waiting(self, sid: str | None = None) -> list[dict[str, Any]]:
        """Prompts agents hold that can be answered here (``GET /away``'s ``waiting``)."""
        if sid is None:
            rows: list[Row] = list(self.rows.values())
        else:
            rows = [self.rows[sid]] if sid in self.rows else []
        out = []
        for row in rows:
            p = row.session.pending
            if p is not None and self.has_pending(row.session.id, p.id):
                out.append({"session_id": row.session.id, "pending_id": p.id, "tool": p.tool, "summary": p.summary, "since": p.since, "host": row.host})
        return out

    async def approve(self, sid: str, pending_id: str, decision: Decision, message: str | None, by: Actor) -> dict[str, Any]:
        """Record the answer here, then send it down to the agent that holds the prompt."""
        row = self.rows[sid]
        p = row.session.pending
        assert p is not None
        key = (sid, pending_id)
        self._answered[key] = decision
        while len(self._answered) > KEEP:
            self._answered.popitem(last=False)
        store = self.engine.store
        now = self.engine.clock.now()
        approval = Approval(sid, pending_id, decision, message, p.tool, p.summary, now, by)
        try:
            await store.write(store.record_approval(approval))
        except BaseException:
            self._answered.pop(key, None)
            raise
        await self._command(row.agent, "approve", {
            "session_id": sid, "pending_id": pending_id, "decision": decision, "message": message, "by": by.to_json(),
        })  # fmt: skip
        return {
            "session_id": sid, "pending_id": pending_id, "decision": decision, "message": message,
            "tool": p.tool, "summary": p.summary, "decided_at": now, "by": by.to_json(), "agent": row.agent, "host": row.host,
        }  # fmt: skip

    async def budget(self, sid: str, max_cost_usd: float | None, by: Actor) -> None:
        """A budget set here for an agent's session goes down to its agent."""
        agent = self.agent_of(sid)
        if agent is not None:
            await self._command(agent, "budget", {"session_id": sid, "max_cost_usd": max_cost_usd, "by": by.to_json()})

    async def _command(self, agent: str, kind: str, body: dict[str, Any]) -> None:
        await self.engine.store.add_agent_command(agent, kind, orjson.dumps(body), self.engine.clock.now())
        self._wake(agent)

    async def commands(self, agent: str, after: int, wait_s: float) -> dict[str, Any]:
        """``agent``'s commands after ``after``; none yet: wait up to ``wait_s``
        for one (or for the away switch to change). Always the away switch."""
        store = self.engine.store
        waited = False
        while True:
            event = self._wakes.setdefault(agent, anyio.Event())
            rows, latest = await store.agent_commands(agent, after)
            if rows or waited or wait_s <= 0 or after > latest:
                break
            with self.polls.track_inprogress(), anyio.move_on_after(wait_s):
                await event.wait()
            waited = True
        away = self.control.away if self.control is not None else None
        return {
            "commands": [{"id": i, "kind": kind, **orjson.loads(body)} for i, kind, body in rows],
            # past it: the agent's last command came from another database (a new one here): start again from 0
            "latest": latest,
            "away": {"on": bool(away and away.on), "by": away.by if away else None},
        }
