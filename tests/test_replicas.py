"""PostgreSQL and replicas (issue 13): ``serve --db postgresql://...``, several
servers on one database, each event id taken in the transaction of its
change, the other replicas following by LISTEN/NOTIFY."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from .conftest import Server


def test_serve_on_postgres_stores_and_survives_a_restart(sw_server: Callable[..., Server], tmp_path: Path, pg_url: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    srv = sw_server(projects_dir=empty, db=pg_url)
    r = httpx.post(srv.url + "/sessions", json={"app_name": "reports", "session_id": "p1"}, timeout=10)
    assert r.status_code == 201, r.text
    r = httpx.put(srv.url + "/sessions/p1/status", json={"status": "running", "current_task": "t"}, timeout=10)
    assert r.status_code == 200, r.text
    before = httpx.get(srv.url + "/all", timeout=10).json()
    assert srv.stop() == 0
    srv.start()
    after = httpx.get(srv.url + "/all", timeout=10).json()
    (p1,) = [s for s in after["sessions"] if s["id"] == "p1"]
    assert (p1["status"], p1["current_task"]) == ("running", "t")
    assert after["last_event_id"] > before["last_event_id"]  # ids go on from the database


def test_db_that_is_another_kind_of_url_is_one_clear_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sessionwatch", "serve", "--db", "mysql://x/y", "--projects-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        "sessionwatch: error: --db must be a SQLite file or a postgresql:// URL, not mysql://..."
    ], out.stderr


# --- replicas in one process: two engines on one database ------------------------------------

import asyncio  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator, Awaitable  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from sessionwatch.config import Settings  # noqa: E402
from sessionwatch.engine import Engine  # noqa: E402
from sessionwatch.hub.core import Subscriber  # noqa: E402
from sessionwatch.store.base import NewEvent  # noqa: E402
from sessionwatch.store.postgres import PgStore  # noqa: E402

from .test_claude import assistant  # noqa: E402


async def until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def replica_settings(tmp_path: Path, name: str, url: str, projects: Path | None = None) -> Settings:
    if projects is None:
        projects = tmp_path / f"projects-{name}"
        projects.mkdir(exist_ok=True)
    return Settings(projects_dir=projects, db=tmp_path / f"{name}.db", db_url=url, claude_dir=tmp_path / f"claude-{name}")


@pytest.fixture
async def pair(tmp_path: Path, pg_url: str) -> AsyncIterator[tuple[Engine, Engine]]:
    a = Engine(replica_settings(tmp_path, "a", pg_url))
    b = Engine(replica_settings(tmp_path, "b", pg_url))
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def take(sub: Subscriber) -> list[bytes]:
    chunk = b"".join(sub.items)
    sub.items.clear()
    return [m + b"\n\n" for m in chunk.split(b"\n\n") if m and not m.startswith(b"retry:")]


def ids(messages: list[bytes]) -> list[int]:
    return [int(line[4:]) for m in messages for line in m.split(b"\n") if line.startswith(b"id: ")]


async def register(engine: Engine, sid: str) -> None:
    await engine.register("app", session_id=sid, user_id=None, host=None, pid=None, url=None)


async def test_every_replica_sends_every_event_with_the_same_id_and_bytes(pair: tuple[Engine, Engine]) -> None:
    a, b = pair
    on_a, on_b = a.hub.subscribe(), b.hub.subscribe()
    take(on_a), take(on_b)
    await register(a, "p1")
    await register(b, "p2")
    assert await a.set_status("p2", "running", "on a")  # B's registration, changed through A
    assert await b.kill("p1", "boss")
    await until(lambda: a.hub.last_id == b.hub.last_id and len(on_a.items) >= 4 and len(on_b.items) >= 4, what="both replicas to send all four")
    got_a, got_b = take(on_a), take(on_b)
    assert got_a == got_b, "the replicas sent different bytes"
    assert len(ids(got_a)) == 4 and ids(got_a) == sorted(ids(got_a))
    assert a.hub.sessions == b.hub.sessions
    assert (a.hub.sessions["p2"].current_task, a.hub.sessions["p1"].kill_requested) == ("on a", True)
    # B's registry knows A's row, kill flag included: a heartbeat to B answers it
    assert await b.heartbeat(["p1", "p2"]) == (["p1"], [])


async def test_a_write_to_a_replica_that_has_not_heard_of_the_session_yet(pair: tuple[Engine, Engine]) -> None:
    a, b = pair
    assert b._replicas is not None and b._replicas._listener is not None
    await b._replicas._listener.close()  # B hears nothing of A's registration
    await register(a, "p1")
    assert "p1" not in b.panel.rows
    assert await b.heartbeat(["p1"]) == ([], [])  # not "unknown": B read the log first
    assert await b.set_status("p1", "running", "t")
    assert b.hub.sessions["p1"].status == "running"
    await until(lambda: a.hub.sessions["p1"].status == "running", what="A to follow B's status")


async def test_ids_follow_commit_order_so_a_follower_never_skips_one(pg_url: str) -> None:
    """Appends from two stores at once while a follower reads ``id > last``
    over and over: it sees every id exactly once. (With a plain sequence a
    higher id can commit first and the follower would move past a lower one
    still in flight.)"""
    a, b, reader = await PgStore.open(pg_url), await PgStore.open(pg_url), await PgStore.open(pg_url)
    try:
        logs = [a.event_log(), b.event_log()]
        follower = reader.event_log()
        done = asyncio.Event()
        seen: list[int] = []

        async def follow() -> None:
            last = 0
            while True:
                finished = done.is_set()
                rows = await follower.since(last, 1000)
                for r in rows:
                    seen.append(r.id)
                    last = r.id
                if finished and not rows:
                    return

        async def writer(k: int) -> None:
            for _ in range(40):
                await logs[k % 2].append([NewEvent("session-updated", b"{}", time.time())] * (1 + k % 3))

        task = asyncio.create_task(follow())
        await asyncio.gather(*(writer(k) for k in range(8)))
        done.set()
        await task
        everything = [r.id for r in await follower.since(0, 100_000)]
        assert seen == everything == list(range(1, len(everything) + 1))
    finally:
        for s in (a, b, reader):
            await s.close()


async def test_one_replica_leads_the_clock_and_another_takes_over_when_it_goes(pg_url: str) -> None:
    stores = [await PgStore.open(pg_url) for _ in range(3)]
    try:
        leads = [await s.lead() for s in stores]
        assert leads == [True, False, False]
        assert [await s.lead() for s in stores] == [True, False, False]  # held, not taken twice
        await stores[0].close()  # its connection goes, and the lock with it
        deadline = time.monotonic() + 10
        while not any([await s.lead() for s in stores[1:]]):
            assert time.monotonic() < deadline, "no replica took the lock over"
            await asyncio.sleep(0.05)
        assert sorted([await s.lead() for s in stores[1:]]) == [False, True]
    finally:
        for s in stores:
            await s.close()


async def test_a_client_moved_to_another_replica_resumes_exactly(pair: tuple[Engine, Engine]) -> None:
    a, b = pair
    on_a = a.hub.subscribe()
    take(on_a)
    for i in range(3):
        await register(a if i % 2 else b, f"p{i}")
    await until(lambda: len(ids(list(on_a.items))) >= 3, what="A to send three")
    sent = take(on_a)
    last = ids(sent)[0]
    await register(a, "p3")  # B may not have read it yet when the client arrives
    moved = await b.hub.resume(last_event_id=last)
    await until(lambda: b.hub.last_id == a.hub.last_id, what="B to follow")
    got = take(moved)
    while ids(got)[-1:] != [a.hub.last_id]:
        await until(lambda: moved.items, what="more on the moved client")
        got += take(moved)
    assert got[: len(sent) - 1] == sent[1:], "not the same bytes"
    assert ids(got) == ids(sent)[1:] + [a.hub.last_id]
    # an id B has not read yet: B reads the log first, never an init
    await register(a, "p4")
    newest = await a.log.latest_id()
    again = await b.hub.resume(last_event_id=newest)
    assert take(again) == []


async def test_other_replicas_sessions_are_shown_and_never_deleted_here(
    tmp_path: Path, pg_url: str, projects: Path
) -> None:
    a = Engine(replica_settings(tmp_path, "a", pg_url, projects))
    b = Engine(replica_settings(tmp_path, "b", pg_url))
    await a.open()
    await b.open()
    try:
        sid = "ba79134d-b6e9-4867-af0c-6941038c9e4b"
        path = projects / "-Users-chip-dev-ai-music" / f"{sid}.jsonl"
        with open(path, "ab") as f:
            f.write(assistant("m-remote", "r-remote", 10, model="claude-sonnet-4-20250514"))
        await a.handle({path})
        await until(lambda: sid in b.hub.sessions, what="B to show A's Claude session")
        assert sid in b.remote
        await b.tick()
        await b.rescan()
        assert sid in b.hub.sessions and b.hub.sessions[sid] == a.hub.sessions[sid]
    finally:
        await a.close()
        await b.close()
