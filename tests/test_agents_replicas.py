"""Agents pushing through several replicas on one PostgreSQL database (issue 13).

nginx sends an agent's batches to whichever replica it picks, so each
replica's agents registry holds a copy of the database's rows: a batch reads
its agent and rows first, another replica's event has the rows it names read
again, the seq decides once across replicas, and only the clock's leader
judges staleness, from every replica's signs of life.

- in one process, two engines on one database (fast and exact): a batch
  through A then one through B; an approval and a budget answered on B for a
  session pushed through A go down to the agent; a batch re-sent to the other
  replica, or sent to both at once, applies once; no stale flapping;
- for real: replicas (``serve``) on one database behind nginx (round robin),
  ``sessionwatch agent`` processes on their own HOMEs pushing through it;
  every replica's ``/all`` ends with every machine's sessions exactly once,
  and an approval answered through nginx reaches the agent.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwatch.agents.registry import AgentRegistry
from sessionwatch.agents.wire import Push
from sessionwatch.control.core import Control, NotPending
from sessionwatch.engine import Engine
from sessionwatch.model import Pending, Session
from sessionwatch.store.base import Actor

from .clock import FakeClock
from .conftest import FIXTURES, Server, wait_for
from .sessions import session
from .stores import Backend
from .test_agents import Agent, agents, central_all, machine, new_session  # noqa: F401 - the agents fixture
from .test_nginx import Nginx
from .test_replicas import replica_settings, replicas_conf, until

T0 = 1_800_000_000.0
BOSS = Actor("boss")


@dataclass
class Replica:
    engine: Engine
    control: Control
    agents: AgentRegistry


def replica(settings: Any, clock: FakeClock) -> Replica:
    """What ``create_app`` wires for agents, without the HTTP part."""
    engine = Engine(settings, clock=clock)
    control = Control(engine)
    engine.add_source(control)
    engine.answerer = control
    agents = AgentRegistry(engine, control)
    engine.add_source(agents)
    control.agents = agents
    return Replica(engine, control, agents)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def pair(tmp_path: Path, pg_url: str, clock: FakeClock) -> AsyncIterator[tuple[Replica, Replica]]:
    made = []
    for name in ("a", "b"):
        r = replica(replace(replica_settings(tmp_path, name, pg_url), agent_stale_after_s=5.0), clock)
        await r.engine.open()  # A first: it takes the clock's lock
        made.append(r)
    try:
        for r in made:
            await r.control.load()
            await r.agents.load()
        yield made[0], made[1]
    finally:
        for r in made:
            await r.engine.close()


def batch(seq: int, *upserts: Session, deletes: list[str] | None = None, sync: list[str] | None = None, agent: str = "ag1") -> Push:
    return Push(agent=agent, host="laptop", seq=seq, upserts=list(upserts), deletes=deletes or [], sync=sync)


def asking(sid: str, pending_id: str = "p1", **kw: Any) -> Session:
    p = Pending(pending_id, "permission", "Bash", "Bash: ls", None, True)
    return session(sid, status="needs_approval", pending=p, **kw)


async def same(a: Replica, b: Replica) -> None:
    """Both replicas have followed each other and show the same sessions."""
    await a.engine.catch_up()
    await b.engine.catch_up()
    await until(lambda: a.engine.hub.last_id == b.engine.hub.last_id, what="the replicas to follow each other")
    assert a.engine.hub.sessions == b.engine.hub.sessions, "the replicas disagree"


async def test_batches_alternating_between_replicas_are_one_agent_on_both(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    r1 = await a.agents.push(batch(1, session("s1", title="one"), session("s2", title="two"), sync=[]))
    assert (r1["seq"], r1["duplicate"]) == (1, False)
    # B never received a batch of this agent: the next one, through B, knows every row it has
    r2 = await b.agents.push(batch(2, session("s1", title="one, later"), session("s3"), sync=["s1", "s3"]))
    assert (r2["seq"], r2["duplicate"], r2["resync"]) == (2, False, False)
    await same(a, b)
    shown = a.engine.hub.sessions
    assert "s2" not in shown, "sync through B did not forget a session pushed through A"
    assert (shown["s1"].title, shown["s1"].host, shown["s3"].host) == ("one, later", "laptop", "laptop")
    # a delete through A of a session pushed through B
    await a.agents.push(batch(3, deletes=["s3"]))
    await same(a, b)
    assert set(b.engine.hub.sessions) == {"s1"} and set(b.agents.rows) == {"s1"} and set(a.agents.rows) == {"s1"}
    rows = await a.engine.store.load_agent_sessions()
    assert [(r[0], r[4]) for r in rows] == [("s1", 2)]


async def test_a_replica_that_reprojects_an_older_row_publishes_the_newer_one(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    await b.agents.push(batch(1, session("s1", title="first"), sync=[]))
    await a.agents.push(batch(2, session("s1", title="second")))  # B's copy of s1 is now older
    await same(a, b)
    before = b.engine.hub.last_id
    await b.engine.changed("again", lambda: ["s1"])  # B projects s1 again (a budget, a staleness check...)
    assert b.engine.hub.last_id == before, "B published its older copy over the newer row"
    assert b.engine.hub.sessions["s1"].title == "second" and b.agents.rows["s1"].session.title == "second"


async def test_a_batch_resent_to_the_other_replica_or_sent_to_both_applies_once(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    first = batch(1, session("s1", title="one"), sync=[])
    assert (await a.agents.push(first))["duplicate"] is False
    await same(a, b)
    last = b.engine.hub.last_id
    # the answer from A was lost: the agent sends the same batch again, and nginx picks B
    again = await b.agents.push(replace(first, upserts=[session("s1", title="changed on the way")]))
    assert (again["duplicate"], again["seq"]) == (True, 1)
    assert b.engine.hub.last_id == last, "a repeated batch made an event"
    # the same new batch on both replicas at once (a retry racing its original): applied once
    racing = batch(2, session("s1", title="two"), session("s2"))
    answers = await asyncio.gather(a.agents.push(racing), b.agents.push(racing))
    assert sorted(x["duplicate"] for x in answers) == [False, True], answers
    assert all(x["seq"] == 2 for x in answers)
    await same(a, b)
    assert a.engine.hub.sessions["s1"].title == "two" and set(b.agents.rows) == {"s1", "s2"}
    [(agent, _host, seq, _seen, stale)] = await a.engine.store.agent_states()
    assert (agent, seq, stale) == ("ag1", 2, False)
    applied = sum(r.agents.batches.labels("applied")._value.get() for r in (a, b))
    assert applied == 2, "a batch was applied on both replicas"


async def test_an_approval_and_a_budget_on_the_other_replica_go_down_to_the_agent(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    await a.agents.push(batch(1, asking("s1"), sync=[]))
    await same(a, b)
    assert b.agents.has_pending("s1", "p1"), "B does not know the prompt the agent holds"
    assert [w["session_id"] for w in b.control.away_json()["waiting"]] == ["s1"]
    answered = await b.control.approve("s1", "p1", "allow", "go", BOSS)
    assert (answered["agent"], answered["host"]) == ("ag1", "laptop")
    # the same prompt answered again on A: refused, the agent gets one answer
    with pytest.raises(NotPending, match="already answered"):
        await a.control.approve("s1", "p1", "deny", None, BOSS)
    await b.control.set_budget("s1", 5.0, BOSS)
    # the agent's long poll, wherever it lands, has both (the commands are the database's)
    got = await a.agents.commands("ag1", 0, 0)
    assert [(c["kind"], c["session_id"]) for c in got["commands"]] == [("approve", "s1"), ("budget", "s1")]
    assert (got["commands"][0]["decision"], got["commands"][1]["max_cost_usd"]) == ("allow", 5.0)
    # (the cap shows once the agent has set it and pushes the row again: the real agents' test)


async def test_only_the_leader_marks_an_agent_stale_from_every_replicas_signs_of_life(
    pair: tuple[Replica, Replica], clock: FakeClock
) -> None:
    a, b = pair
    assert await a.engine.leading() and not await b.engine.leading()
    await a.agents.push(batch(1, asking("s1"), sync=[]))
    clock.set(T0 + 4)
    assert (await b.agents.push(batch(1)))["duplicate"] is True  # the agent's heartbeat lands on B
    clock.set(T0 + 8)  # A's own last sign of life is 8 s old, B's 4 s
    await b.agents.check()
    await a.agents.check()
    await same(a, b)
    assert not a.engine.hub.sessions["s1"].is_stale, "the leader ignored the heartbeat B received"
    clock.set(T0 + 20)
    await b.agents.check()  # not the leader: judges nothing
    await b.engine.catch_up()
    assert not b.engine.hub.sessions["s1"].is_stale
    await a.agents.check()
    await same(a, b)
    s = b.engine.hub.sessions["s1"]
    assert (s.status, s.status_reason, s.is_stale) == ("stale", "agent laptop silent", True)
    assert not b.agents.has_pending("s1", "p1"), "B would answer a silent agent's prompt"
    # the agent comes back through B: fresh everywhere, and the leader does not flip it back
    clock.set(T0 + 21)
    await b.agents.push(batch(1))
    await a.agents.check()
    await same(a, b)
    assert not a.engine.hub.sessions["s1"].is_stale and a.agents.has_pending("s1", "p1")
    rows = await a.engine.log.since(0, 10_000)
    stale = [r.origin for r in rows if b'"is_stale":true' in r.data]
    assert stale == [a.engine.log.origin], "a stale event from the non-leader, or more than one"
    # B projecting the session again shows what A shows
    before = b.engine.hub.last_id
    await b.engine.changed("again", lambda: ["s1"])
    assert b.engine.hub.last_id == before


async def test_a_new_replica_loads_the_shared_stale_flag(pair: tuple[Replica, Replica], tmp_path: Path, pg_url: str, clock: FakeClock) -> None:
    a, b = pair
    await a.agents.push(batch(1, session("s1"), sync=[]))
    clock.set(T0 + 20)
    await a.agents.check()
    await same(a, b)
    c = replica(replace(replica_settings(tmp_path, "c", pg_url), agent_stale_after_s=5.0), clock)
    await c.engine.open()
    try:
        await c.control.load()
        await c.agents.load()
        assert c.agents.agents["ag1"].stale
        assert c.engine.hub.sessions["s1"].is_stale, "a replica starting published the silent agent fresh"
        await same(a, c)
    finally:
        await c.engine.close()


async def test_the_store_decides_a_seq_once_and_staleness_against_the_last_sign_of_life(backend: Backend) -> None:
    store = await backend.open()
    await store.write(store.agent_applied("a1", "h", 1, 10.0))
    from sessionwatch.store.base import RowGone

    with pytest.raises(RowGone):
        await store.write(store.agent_applied("a1", "h", 1, 11.0))  # applied already
    await store.write(store.agent_sessions_put("a1", "h", 2, 12.0, [("s1", b"{}"), ("s2", b"{}")], []) + store.agent_applied("a1", "h", 2, 12.0))
    assert await store.agent_row_seqs("a1") == {"s1": 2, "s2": 2}
    assert [r[0] for r in await store.agent_rows(["s2", "nope"])] == ["s2"]
    with pytest.raises(RowGone):
        await store.write(store.agent_stale("a1", True, 12.0))  # seen at 12: not silent before 12
    await store.write(store.agent_stale("a1", True, 13.0))
    assert await store.agent_states(["a1"]) == [("a1", "h", 2, 12.0, True)]
    await store.write(store.agent_seen("a1", "h", 2, 14.0))  # a sign of life: fresh
    assert await store.agent_states() == [("a1", "h", 2, 14.0, False)]
    assert await store.agent_states([]) == []
