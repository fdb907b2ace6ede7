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

Replicas (PostgreSQL, ``engine.replicated``): an agent's batches reach
whichever replica nginx picks, so the rows, the agents' seqs, signs of life
and staleness are the database's, and memory is a copy kept fresh:

- a batch first reads its agent (seq, last sign of life, stale) and the seq
  of each of its rows from the database, reloading the rows this replica
  lacks or holds older (so ``deletes`` and ``sync`` see every row the agent
  has, wherever it was pushed); the batch's rows, its seq (a write that
  changes nothing when another replica applied the seq first: the batch is a
  duplicate, applied once) and its events are one transaction;
- another replica's event naming a session (the engine's followers) has the
  row and its agent read again before the next command: an approval or a
  budget on any replica goes down to the agent that holds the session;
- staleness is judged by the clock's leader only (``engine.leading()``),
  from every replica's signs of life in the database, and shared (``agents.stale``,
  written with the stale events): every replica projects the rows alike.
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
from sessionwatch.store.base import Actor, Approval, RowGone, Write
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
    #: the batch that wrote it
    seq: int = 0


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
        #: replicas: session ids other replicas' events named, read again before the next command
        self._foreign: set[str] = set()
        engine.followers.append(self)
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
        shared = self.engine.replicated
        for agent, host, seq, last_seen, stale in await store.agent_states():
            # a restart is no news from an agent: its clock starts again now
            # (replicas: whether it is shown stale is the leader's, shared)
            self.agents[agent] = AgentState(host, seq, max(last_seen, now), stale and shared)
        for sid, agent, host, body, seq, _at in await store.load_agent_sessions():
            row = _row(sid, agent, host, body, seq)
            if row is not None:
                self._put(row)
                self.engine.remote.discard(sid)  # replicas: shown from the current table at start, projected here
        if self.rows:
            ids = list(self.rows)
            await self.engine.changed("agents", lambda: ids)

    async def run(self) -> None:
        """Until cancelled: agents going silent, and coming back, every :data:`CHECK_S`
        (replicas: on the clock's leader only, from every replica's signs of life)."""
        replicas = self.engine.replicas
        if replicas is not None:  # a command queued by another replica wakes a long poll here
            await replicas.subscribe(AGENT_CHANNEL, self._wake)
        while True:
            await self.engine.clock.sleep(CHECK_S)
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - the next check may do better
                log.exception("agent staleness check failed")

    async def check(self) -> None:
        """One staleness check (see :meth:`run`)."""
        seen: dict[str, float] = {}
        if self.engine.replicated:
            if not await self.engine.leading():
                return
            seen = {agent: last_seen for agent, _h, _s, last_seen, _st in await self.engine.store.agent_states()}
        if any(self._stale_now(st, seen.get(a, 0.0)) != st.stale for a, st in self.agents.items()):
            await self.engine.command("agents-stale", self._restale)

    def _stale_now(self, st: AgentState, seen: float = 0.0) -> bool:
        return self.engine.clock.now() - max(st.last_seen, seen) > self.stale_after_s

    async def _restale(self) -> None:
        """In the applying task: publish the agents that went silent or came
        back, their shared flag written with the events."""
        store = self.engine.store
        if self.engine.replicated:
            await self._load_states(None)  # every replica's signs of life, as of now
        cutoff = self.engine.clock.now() - self.stale_after_s
        touched: set[str] = set()
        writes: list[Write] = []
        flipped: list[AgentState] = []
        for agent in [a for a, st in self.agents.items() if self._stale_now(st) != st.stale]:
            if self.engine.replicated:
                await self._refresh(agent)  # every row it has, wherever it was pushed
            st = self.agents[agent]
            stale = self._stale_now(st)
            if stale != st.stale:
                st.stale = stale
                flipped.append(st)
                touched |= st.ids
                writes += store.agent_stale(agent, stale, cutoff)
        try:
            await self.engine.publish(touched, writes)
        except RowGone:
            # an agent pushed (through another replica) since its last sign of life was read
            for st in flipped:
                st.stale = not st.stale
            log.debug("agent staleness changed meanwhile; judged again at the next check")
            return
        for st in flipped:
            if st.stale:
                log.warning("agent %s silent for %g s: its sessions are stale", st.host, self.stale_after_s)

    # --- replicas: the database's rows, read again ------------------------------------------

    def foreign(self, ids: set[str]) -> None:
        """Other replicas' events named ``ids`` (engine.Follower)."""
        self._foreign |= ids

    @property
    def dirty(self) -> bool:
        return bool(self._foreign)

    async def reload(self) -> None:
        """In the applying task: the rows other replicas' events named, and
        their agents, as the database has them (nothing published: the events
        showed them already)."""
        ids, self._foreign = self._foreign, set()
        found = {r[0]: r for r in await self.engine.store.agent_rows(sorted(ids))}
        owners = {r[1] for r in found.values()} | {row.agent for sid in ids if (row := self.rows.get(sid)) is not None}
        if owners:
            await self._load_states(owners)
        for sid in ids:
            r = found.get(sid)
            if r is None:
                old = self.rows.get(sid)
                if old is not None:
                    self._forget(old.agent, sid)
                continue
            row = _row(*r[:5])
            if row is not None:
                self._put(row)
                self.engine.remote.discard(sid)  # an agent's row: projected here too

    async def _load_states(self, agents: set[str] | None) -> None:
        """Agents as the database has them: seq and last sign of life never go
        back here; whether they are stale is the database's."""
        for agent, host, seq, last_seen, stale in await self.engine.store.agent_states(
            None if agents is None else sorted(agents)
        ):
            st = self.agents.get(agent)
            if st is None:
                st = self.agents[agent] = AgentState(host, seq, last_seen, stale)
                st.ids = {sid for sid, row in self.rows.items() if row.agent == agent}
            else:
                st.seq = max(st.seq, seq)
                st.last_seen = max(st.last_seen, last_seen)
                st.stale = stale
                st.host = host

    async def _refresh(self, agent: str, seq: int | None = None) -> None:
        """In the applying task, before batch ``seq`` of ``agent``: its state,
        and (unless the batch is a heartbeat of an agent shown fresh) every row
        it has, as the database has them (rows pushed or changed through
        another replica are read; rows deleted there are forgotten)."""
        store = self.engine.store
        await self._load_states({agent})
        st = self.agents.get(agent)
        if st is not None and not st.stale and seq is not None and seq <= st.seq:
            return  # a duplicate or a heartbeat: no row is read or changed
        stored = await store.agent_row_seqs(agent)
        mine = st.ids if st is not None else set()
        for sid in [sid for sid in mine if sid not in stored]:
            self._forget(agent, sid)
        behind = [sid for sid, at in stored.items() if (row := self.rows.get(sid)) is None or row.agent != agent or row.seq < at]
        if behind:
            for r in await store.agent_rows(behind):
                row = _row(*r[:5])
                if row is not None:
                    self._put(row)
                    self.engine.remote.discard(row.session.id)

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
        shared = self.engine.replicated

        async def change() -> None:
            if shared:
                # what the other replicas published first: the hub diffs this batch against it
                # (a session deleted here that this replica has not seen created yet is deleted)
                await self.engine.hub.follow()
                await self._refresh(p.agent, p.seq)
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
                writes = store.agent_seen(p.agent, p.host, st.seq, now)
            else:
                sessions = [s if s.host == p.host else msgspec.structs.replace(s, host=p.host) for s in p.upserts]
                deleted = [sid for sid in p.deletes if sid in st.ids]
                if p.sync is not None:
                    keep = set(p.sync) | {s.id for s in sessions}
                    deleted += [sid for sid in st.ids if sid not in keep]
                rows = [(s.id, encode(s)) for s in sessions]
                writes = store.agent_sessions_put(p.agent, p.host, p.seq, now, rows, deleted) + store.agent_applied(
                    p.agent, p.host, p.seq, now
                )
                for s in sessions:
                    self._put(Row(p.agent, p.host, s, p.seq))
                    touched.add(s.id)
                for sid in deleted:
                    if self._forget(p.agent, sid):
                        touched.add(sid)
                st.seq = p.seq
            self.engine.remote.difference_update(touched)  # an agent's sessions: shown and deleted here
            try:
                await self.engine.publish(touched, writes)
            except RowGone:
                if not shared:
                    raise
                # another replica applied this seq first (the same batch, re-sent after a
                # lost answer): its rows are the database's; this one is a duplicate
                self._foreign |= touched
                await self.reload()
                await self._refresh(p.agent)
                duplicate = True
            self.batches.labels("duplicate" if duplicate else "applied").inc()
            answer.update(
                seq=st.seq,
                duplicate=duplicate,
                heartbeat_s=self.heartbeat_s,
                resync=not known and p.sync is None,
            )

        await self.engine.command("agent-push", change)
        return answer

    # --- down to the agent -------------------------------------------------------------------

    def count(self, agent: str) -> int:
        """How many sessions ``agent`` has here."""
        st = self.agents.get(agent)
        return len(st.ids) if st is not None else 0

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
        self._answered[key] = decision  # before any await: a second answer here is refused at once
        while len(self._answered) > KEEP:
            self._answered.popitem(last=False)
        now = self.engine.clock.now()
        approval = Approval(sid, pending_id, decision, message, p.tool, p.summary, now, by)
        try:
            # decided once in the store: two replicas answering at the same instant both get here
            recorded = await self.engine.store.record_approval_once(approval)
        except BaseException:
            self._answered.pop(key, None)
            raise
        if not recorded:
            from sessionwatch.control.core import NotPending

            raise NotPending("that prompt is no longer pending (already answered on another replica)")
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
        if agent is None and self.engine.replicated:
            # pushed through another replica, not read here yet: the database knows
            agent = next((r[1] for r in await self.engine.store.agent_rows([sid])), None)
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


def _row(sid: str, agent: str, host: str, body: bytes, seq: int) -> Row | None:
    """A stored row, or None (logged) if it cannot be read."""
    try:
        session = _decode.decode(body)
    except msgspec.DecodeError:
        log.warning("agent session %s: unreadable row skipped", sid)
        return None
    return Row(agent, host, session, seq)
