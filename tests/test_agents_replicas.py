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
import dataclasses
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from msgspec.structs import replace

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
from .test_replicas import replica_settings, replicas_conf, start_replicas, until

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
    replicas = b.engine.replicas
    assert replicas is not None and replicas._listener is not None
    await replicas._listener.close()  # B hears nothing of A's batch: its own batch reads the log first
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
    again = await b.agents.push(dataclasses.replace(first, upserts=[session("s1", title="changed on the way")]))
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
    assert [w["session_id"] for w in (await b.control.away_json())["waiting"]] == ["s1"]
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


async def test_one_agent_prompt_answered_on_two_replicas_at_once_is_recorded_once(pair: tuple[Replica, Replica]) -> None:
    """Both replicas pass their own checks at the same instant: the store
    decides, one answer is recorded and sent down, the other is refused."""
    a, b = pair
    await a.agents.push(batch(1, asking("s1"), sync=[]))
    await same(a, b)
    results = await asyncio.gather(
        a.control.approve("s1", "p1", "allow", None, Actor("ana")),
        b.control.approve("s1", "p1", "deny", None, Actor("bo")),
        return_exceptions=True,
    )
    answered = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, NotPending)]
    assert len(answered) == 1 and len(refused) == 1, results
    recorded = await a.engine.store.approvals("s1")
    assert [(r["pending_id"], r["decision"]) for r in recorded] == [("p1", answered[0]["decision"])]
    got = await b.agents.commands("ag1", 0, 0)
    assert [(c["kind"], c["decision"]) for c in got["commands"]] == [("approve", answered[0]["decision"])]


async def test_the_store_records_a_prompts_answer_once(backend: Backend) -> None:
    from sessionwatch.store.base import Approval

    store = await backend.open()
    other = await backend.open()  # a second replica's connection to the same database
    first = Approval("s1", "p1", "allow", None, "Bash", "ls", 10.0, Actor("ana"))
    assert await store.record_approval_once(first)
    assert not await other.record_approval_once(dataclasses.replace(first, decision="deny", by=Actor("bo")))
    # at the same instant, from two connections: one of them
    two = [dataclasses.replace(first, pending_id="p2", by=Actor(who)) for who in ("ana", "bo")]
    done = await asyncio.gather(store.record_approval_once(two[0]), other.record_approval_once(two[1]))
    assert sorted(done) == [False, True]
    assert await store.record_approval_once(dataclasses.replace(first, session_id="s2"))  # another session's p1
    assert [(r["pending_id"], r["by"]["who"]) for r in await other.approvals("s1")] == [
        ("p1", "ana"), ("p2", "ana" if done[0] else "bo"),
    ]


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


# --- for real: three replicas behind nginx, agents pushing through it ----------------------------


def batches_applied(srv: Server) -> float:
    text = httpx.get(srv.url + "/metrics", timeout=10).text
    found = [line for line in text.splitlines() if line.startswith('sessionwatch_agent_batches_total{result="applied"}')]
    return float(found[0].split()[-1]) if found else 0.0


def test_agents_pushing_through_nginx_to_three_replicas_show_once_and_take_an_approval(
    tmp_path: Path, sw_server: Callable[..., Server], pg_url: str, nginx_bin: str, agents: Callable[..., Agent]
) -> None:
    replicas = start_replicas(sw_server, tmp_path, pg_url, 3)
    root = tmp_path / "nginx"
    nginx = Nginx(nginx_bin, root, None, replicas_conf([r.port for r in replicas])).start()
    try:
        dirs = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
        names = ["alpha", "beta"]
        machines = [agents(machine(tmp_path, n, dirs[i::2]), n, nginx.url, "--approval-wait-s", "120") for i, n in enumerate(names)]

        def everywhere() -> bool:
            """Every replica's /all is exactly every machine's sessions, once, each with its host."""
            expected: dict[str, dict[str, Any]] = {}
            for a in machines:
                for sid, s in a.local().items():
                    expected[sid] = {**s, "host": a.host_name}
            return all(central_all(r) == expected for r in replicas)

        wait_for(everywhere, 90, "every machine's sessions on every replica")
        alpha, beta = machines
        assert all(central_all(r) for r in replicas) and {s["host"] for s in central_all(replicas[2]).values()} == set(names)

        # news and a deletion, their batches spread over the replicas by nginx
        added = [new_session(alpha.projects_dir, "-work-alpha", f"later {i}") for i in range(3)]
        gone = next(sid for sid in sorted(beta.local()) if any(beta.projects_dir.rglob(f"{sid}.jsonl")))
        for path in beta.projects_dir.rglob(f"{gone}*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        wait_for(lambda: set(added) <= set(alpha.local()) and gone not in beta.local(), 30, "the agents' own engines to see the changes")
        wait_for(everywhere, 60, "the news and the deletion on every replica")
        assert sum(batches_applied(r) > 0 for r in replicas) >= 2, "nginx sent every batch to one replica"

        # an approval answered through nginx, whichever replica it lands on, reaches beta's agent
        httpx.put(nginx.url + "/away", json={"on": True}, timeout=10).raise_for_status()
        wait_for(lambda: httpx.get(beta.url + "/away", timeout=5).json()["on"], 30, "beta's agent to follow the away switch")
        sid = str(uuid.uuid4())
        hook = {"hook_event_name": "PermissionRequest", "session_id": sid, "cwd": "/work/beta", "tool_name": "Bash", "tool_input": {"command": "make deploy"}}
        out: list[httpx.Response] = []
        import threading

        held = threading.Thread(target=lambda: out.append(httpx.post(beta.url + "/hooks", json=hook, timeout=150)), daemon=True)
        held.start()

        def waiting_everywhere() -> str | None:
            found = [[w for w in httpx.get(r.url + "/away", timeout=5).json()["waiting"] if w["session_id"] == sid] for r in replicas]
            return found[0][0]["pending_id"] if all(len(f) == 1 and f[0]["host"] == "beta" for f in found) else None

        pending_id = wait_for(waiting_everywhere, 60, "the held prompt to wait on every replica")
        r = httpx.post(nginx.url + f"/sessions/{sid}/approve", json={"pending_id": pending_id, "decision": "allow"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["host"] == "beta"
        again = httpx.post(nginx.url + f"/sessions/{sid}/approve", json={"pending_id": pending_id, "decision": "deny"}, timeout=10)
        assert again.status_code == 409, again.text
        # the command wakes the agent's long poll on whichever replica it waits (a NOTIFY)
        held.join(90)
        assert out, "the held hook was never answered"
        assert out[0].json()["hookSpecificOutput"]["decision"] == {"behavior": "allow"}, out[0].text
        # Claude Code goes on with the tool (its next hook event): the prompt clears everywhere
        after = {**hook, "hook_event_name": "PostToolUse", "tool_response": {"stdout": "ok"}}
        httpx.post(beta.url + "/hooks", json=after, timeout=10).raise_for_status()
        wait_for(lambda: all(central_all(r)[sid]["pending"] is None for r in replicas), 30, "the answered prompt to clear everywhere")
        # a budget set through nginx is set on the agent (and every replica has it)
        r = httpx.put(nginx.url + f"/sessions/{sid}/budget", json={"max_cost_usd": 5}, timeout=10)
        assert r.status_code == 200, r.text
        wait_for(lambda: httpx.get(beta.url + f"/sessions/{sid}", timeout=5).json()["budget"]["own"] == 5, 60, "the budget on the agent")
        wait_for(
            lambda: all(httpx.get(r.url + f"/sessions/{sid}", timeout=5).json()["budget"]["own"] == 5 for r in replicas),
            30, "the budget on every replica",
        )  # fmt: skip
        wait_for(everywhere, 30, "every replica to end with every machine's sessions")
        # every replica lists both agents as the database has them, fresh, with their sessions
        for r in replicas:
            listed = httpx.get(r.url + "/agents", timeout=5).json()["agents"]
            got = {a["host"]: (a["stale"], a["sessions"]) for a in listed}
            assert got == {m.host_name: (False, len(m.local())) for m in machines}, (r.port, listed)
    finally:
        for a in agents_started(machines if "machines" in locals() else []):
            a.stop()
        nginx.stop()
        shutil.rmtree(root, ignore_errors=True)


def agents_started(machines: list[Agent]) -> list[Agent]:
    return [a for a in machines if a.proc is not None]
