"""PostgreSQL and replicas (issue 13): ``serve --db postgresql://...``, several
servers on one database, each event id taken in the transaction of its
change, the other replicas following by LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from sessionwatch.config import Settings
from sessionwatch.engine import Engine
from sessionwatch.hub.core import Subscriber
from sessionwatch.store.base import NewEvent
from sessionwatch.store.postgres import PgStore

from .conftest import Server, wait_for
from .test_claude import assistant
from .test_nginx import CONF, Nginx


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


# --- three real replicas behind a real nginx, one killed mid-stream ---------------------------


#: SSE clients held through nginx (the issue asks for 200).
CLIENTS = 200
#: Writers, each registering SESSIONS Panel sessions and changing each one's status twice.
WRITERS = 6
SESSIONS = 15


def start_replicas(sw_server: Callable[..., Server], tmp_path: Path, pg_url: str, n: int, *flags: str) -> list[Server]:
    """``n`` ``serve`` replicas on one database, each with an empty projects
    directory and a live registry of its own."""
    replicas = []
    for k in range(n):
        empty = tmp_path / f"empty-{k}"
        empty.mkdir()
        replicas.append(sw_server(projects_dir=empty, db=pg_url, extra_args=[*flags, "--claude-dir", str(tmp_path / f"claude-{k}")]))
    return replicas


def replicas_conf(ports: list[int]) -> str:
    """deploy/nginx.conf with its replicas upstream in place of the single one."""
    conf = CONF.read_text()
    conf, n = re.subn(r"^upstream sessionwatch \{.*?^\}\n", "", conf, count=1, flags=re.MULTILINE | re.DOTALL)
    assert n == 1
    block = re.search(r"^# BEGIN replicas\n(.*?)^# END replicas\n", conf, re.MULTILINE | re.DOTALL)
    assert block is not None, "deploy/nginx.conf must keep its replicas example between BEGIN/END replicas"
    upstream = re.sub(r"^# ?", "", block.group(1), flags=re.MULTILINE)
    shipped = re.findall(r"server 127\.0\.0\.1:(\d+) ", upstream)
    assert len(shipped) == len(ports) == 3
    for old, new in zip(shipped, ports):
        upstream = upstream.replace(f"server 127.0.0.1:{old} ", f"server 127.0.0.1:{new} ")
    return conf.replace(block.group(0), upstream)


async def leader_pid(conn: Any) -> int | None:
    """The backend holding the clock's advisory lock, if any."""
    from sessionwatch.store.postgres import LEADER_LOCK

    pid = await conn.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = $1",
        LEADER_LOCK,
    )
    return int(pid) if pid is not None else None


class Follower:
    """One dashboard's worth of stream: a state kept from the events, every id
    counted, and a reconnect with Last-Event-ID whenever the stream breaks."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.state: dict[str, dict[str, Any]] = {}
        self.ids: list[int] = []
        self.inits: list[int] = []
        self.last: int | None = None
        self.reconnects = 0

    def apply(self, kind: str, event_id: int | None, data: dict[str, Any]) -> None:
        if kind == "keepalive":
            return
        assert event_id is not None
        if kind == "init":
            self.inits.append(event_id)
            self.state = {s["id"]: s for s in data["sessions"]}
        else:
            self.ids.append(event_id)
            if kind == "refresh":
                self.state = {s["id"]: s for s in data["sessions"]}
            for s in data["sessions"]:
                if kind == "session-deleted":
                    self.state.pop(s["id"], None)
                else:
                    self.state[s["id"]] = s
        self.last = event_id

    async def run(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            headers = {} if self.last is None else {"Last-Event-ID": str(self.last)}
            try:
                async with client.stream("GET", self.url, headers=headers) as r:
                    if r.status_code != 200:
                        raise httpx.HTTPError(f"status {r.status_code}")
                    kind, event_id, data = "message", None, ""
                    async for line in r.aiter_lines():
                        if line.startswith("event: "):
                            kind = line[7:]
                        elif line.startswith("id: "):
                            event_id = int(line[4:])
                        elif line.startswith("data: "):
                            data = line[6:]
                        elif line == "":
                            if data:
                                self.apply(kind, event_id, json.loads(data))
                            kind, event_id, data = "message", None, ""
            except (httpx.HTTPError, OSError):
                pass
            if not stop.is_set():
                self.reconnects += 1
                await asyncio.sleep(0.2)


async def test_three_replicas_behind_nginx_lose_and_repeat_nothing_when_one_is_killed(
    sw_server: Callable[..., Server], tmp_path: Path, pg_url: str, nginx_bin: str
) -> None:
    replicas = start_replicas(sw_server, tmp_path, pg_url, 3)
    root = tmp_path / "nginx"
    root.mkdir()
    # each stream holds two connections in nginx (the client's and the replica's)
    nginx = Nginx(nginx_bin, root, None, replicas_conf([r.port for r in replicas]), worker_connections=4 * CLIENTS + 256).start()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60), limits=limits) as http:
            followers = [Follower(nginx.url + "/stream") for _ in range(CLIENTS)]
            tasks = [asyncio.create_task(f.run(http, stop)) for f in followers]
            try:
                await _changes_and_a_kill(http, nginx, replicas, followers, pg_url)
            finally:
                stop.set()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        nginx.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _changes_and_a_kill(
    http: httpx.AsyncClient, nginx: Nginx, replicas: list[Server], followers: list[Follower], pg_url: str
) -> None:
    await until(lambda: all(f.inits for f in followers), 60, "every client's init")

    async def call(method: str, path: str, body: dict[str, Any]) -> None:
        # a write that met the killed replica is sent again (both are idempotent)
        for _ in range(50):
            try:
                r = await http.request(method, nginx.url + path, json=body)
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
                continue
            if r.status_code in (200, 201):
                return
            assert r.status_code in (502, 503, 504), r.text
            await asyncio.sleep(0.1)
        raise AssertionError(f"{method} {path} never went through")

    done = [0]

    async def writer(w: int) -> None:
        for i in range(SESSIONS):
            sid = f"w{w}-{i}"
            await call("POST", "/sessions", {"app_name": f"app{w}", "session_id": sid})
            for step in ("first", "second"):
                await call("PUT", f"/sessions/{sid}/status", {"status": "running", "current_task": step})
            done[0] += 1

    writers = [asyncio.create_task(writer(w)) for w in range(WRITERS)]
    await until(lambda: done[0] >= WRITERS * SESSIONS // 3, 120, "a third of the writes")
    conn = await asyncpg.connect(pg_url)
    try:
        was_leading = await leader_pid(conn)
        assert was_leading is not None, "no replica leads the clock"
    finally:
        await conn.close()
    killed = replicas[0]  # the first one started: the clock's leader
    assert killed.proc is not None
    killed.proc.kill()  # kill -9, mid-stream and mid-writes
    killed.proc.wait()
    killed.proc = None
    await asyncio.gather(*writers)
    alive = [r for r in replicas if r is not killed]

    async def all_of(r: Server) -> dict[str, Any]:
        return (await http.get(r.url + "/all")).json()  # type: ignore[no-any-return]

    conn = await asyncpg.connect(pg_url)
    try:
        latest = int(await conn.fetchval("SELECT max(id) FROM events WHERE type <> 'start'"))
        origins = await conn.fetchval("SELECT count(DISTINCT origin) FROM events WHERE type <> 'start'")
        assert origins == 3, "every replica made changes"

        async def settled() -> bool:
            views = [await all_of(r) for r in alive]
            return all(v["last_event_id"] >= latest for v in views) and all(
                f.ids and f.ids[-1] >= latest for f in followers
            )

        deadline = time.monotonic() + 60
        while not await settled():
            assert time.monotonic() < deadline, "clients or replicas never caught up"
            await asyncio.sleep(0.1)
        while await leader_pid(conn) in (None, was_leading):  # another replica took the clock over
            assert time.monotonic() < deadline, "no replica took the clock's lock over"
            await asyncio.sleep(0.1)
        logged = [int(r[0]) for r in await conn.fetch("SELECT id FROM events WHERE type <> 'start' ORDER BY id")]
    finally:
        await conn.close()
    views = [await all_of(r) for r in alive]
    want = {s["id"]: s for s in views[0]["sessions"]}
    assert {s["id"]: s for s in views[1]["sessions"]} == want, "the replicas disagree"
    assert len(want) == WRITERS * SESSIONS
    assert all(s["current_task"] == "second" for s in want.values())
    moved = 0
    for n, f in enumerate(followers):
        assert f.inits == f.inits[:1], f"client {n} was sent a fresh init after reconnecting"
        assert len(f.ids) == len(set(f.ids)), f"client {n} got an event twice"
        assert f.ids == [i for i in logged if i > f.inits[0]], f"client {n} lost events"
        assert f.state == want, f"client {n} ends with another state than /all"
        moved += f.reconnects > 0
    assert moved > 0, "no client was on the killed replica"


async def test_a_replica_starting_leaves_another_replicas_managed_process_alone(tmp_path: Path, pg_url: str) -> None:
    """On one SQLite file a live record at start is an earlier server's orphan
    (killed, shown stopped: tests/test_manager.py); on PostgreSQL it may be a
    process another replica runs right now."""
    import subprocess as sp

    from sessionwatch.managed.manager import Manager, Record
    from sessionwatch.managed.protocol import proc_start_time

    running = sp.Popen(["sleep", "300"], start_new_session=True)
    try:
        start = proc_start_time(running.pid)
        a = Engine(replica_settings(tmp_path, "a", pg_url))
        await a.open()
        try:
            rec = Record(id="m1", kind="server", name="on-a", cwd=str(tmp_path), created_at=time.time(), state="running",
                         pid=running.pid, proc_start=start)  # fmt: skip
            stopped = Record(id="m2", kind="server", name="done", cwd=str(tmp_path), created_at=time.time(), state="stopped")
            await a.store.write(a.store.managed_save(rec.row()) + a.store.managed_save(stopped.row()))
            b = Engine(replica_settings(tmp_path, "b", pg_url))
            manager = Manager(b)
            b.add_source(manager)
            await b.open()
            try:
                await manager.load()
                assert running.poll() is None, "another replica's process was killed"
                rows = {r["id"]: r for r in await b.store.managed_load()}
                assert (rows["m1"]["state"], rows["m1"]["pid"]) == ("running", running.pid)
                assert "m1" not in manager.records and "m2" in manager.records  # the history is everyone's
            finally:
                await manager.close()
                await b.close()
        finally:
            await a.close()
    finally:
        running.kill()
        running.wait()


def test_postgres_without_asyncpg_is_one_clear_line(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'asyncpg': raise ImportError('not installed')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from sessionwatch.cli import main\n"
        "sys.exit(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, "serve", "--db", "postgresql://sw@127.0.0.1/sw", "--projects-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        "sessionwatch: error: --db postgresql://... needs asyncpg: pip install 'sessionwatch[postgres]'"
    ], out.stderr


async def test_only_the_leader_marks_stale_and_it_counts_every_replicas_heartbeats(tmp_path: Path, pg_url: str) -> None:
    from msgspec.structs import replace

    from .clock import FakeClock

    t0 = 1_800_000_000.0
    clock = FakeClock(t0)
    sa = replace(replica_settings(tmp_path, "a", pg_url), stale_after_s=5.0, cleanup_after_s=600.0)
    sb = replace(replica_settings(tmp_path, "b", pg_url), stale_after_s=5.0, cleanup_after_s=600.0)
    a, b = Engine(sa, clock=clock), Engine(sb, clock=clock)
    await a.open()  # first: it takes the clock's lock
    await b.open()
    try:
        assert await a.leading() and not await b.leading()
        await register(a, "p1")
        clock.set(t0 + 4)
        assert await b.heartbeat(["p1"]) == ([], [])  # the tracker's heartbeats reach B only
        await b.tick()  # B writes them (and, not leading, judges nothing)
        clock.set(t0 + 8)
        await a.tick()
        assert not a.hub.sessions["p1"].is_stale, "the leader ignored another replica's heartbeat"
        clock.set(t0 + 10)
        await b.tick()
        assert not b.hub.sessions["p1"].is_stale  # B does not judge: the leader does
        await a.tick()
        assert a.hub.sessions["p1"].is_stale
        await until(lambda: b.hub.sessions["p1"].is_stale, what="B to follow the leader's stale event")
        rows = await a.log.since(0, 1000)
        assert [r.origin for r in rows if b'"is_stale":true' in r.data] == [a.log.origin]
        assert await b.heartbeat(["p1"]) == ([], [])  # a heartbeat on B revives it, everywhere
        assert not b.hub.sessions["p1"].is_stale
        await until(lambda: not a.hub.sessions["p1"].is_stale, what="A to follow the revival")
    finally:
        await a.close()
        await b.close()


def test_named_tokens_on_postgres_work_on_every_replica(sw_server: Callable[..., Server], tmp_path: Path, pg_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sessionwatch", "token", "create", "ann", "--role", "viewer", "--db", pg_url],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    token = out.stdout.strip().splitlines()[-1]
    replicas = start_replicas(sw_server, tmp_path, pg_url, 2, "--token", "admin-secret")
    for r in replicas:
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(r.url + "/all", headers=auth, timeout=10).status_code == 200
        assert httpx.post(r.url + "/sessions", json={"app_name": "x"}, headers=auth, timeout=10).status_code == 403
        assert httpx.get(r.url + "/all", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    listed = subprocess.run(
        [sys.executable, "-m", "sessionwatch", "token", "list", "--json", "--db", pg_url],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert [t["name"] for t in json.loads(listed.stdout)["tokens"]] == ["ann"]


def test_away_and_budgets_set_on_one_replica_hold_on_the_others(sw_server: Callable[..., Server], tmp_path: Path, pg_url: str) -> None:
    a, b = start_replicas(sw_server, tmp_path, pg_url, 2)
    assert httpx.get(b.url + "/away", timeout=10).json()["on"] is False
    httpx.put(a.url + "/away", json={"on": True}, timeout=10).raise_for_status()
    wait_for(lambda: httpx.get(b.url + "/away", timeout=10).json()["on"] is True, 10, "replica b to be away too")
    assert httpx.get(b.url + "/away", timeout=10).json()["by"]["who"] == "local"
    # a session whose source is replica a (a `sessionwatch run` reporting to it)
    sid = "run-on-a"
    r = httpx.post(a.url + "/runs", json={"session_id": sid, "state": "running", "cwd": "/w"}, timeout=10)
    assert r.status_code == 200, r.text

    def cap_on(srv: Server) -> object:
        return next((s["max_cost_usd"] for s in httpx.get(srv.url + "/all", timeout=10).json()["sessions"] if s["id"] == sid), "missing")

    wait_for(lambda: cap_on(b) is None, 10, "a's session on b")
    # set on b, where the session is only a copy: a (its source) applies the cap, every replica shows it
    httpx.put(b.url + f"/sessions/{sid}/budget", json={"max_cost_usd": 3.5}, timeout=10).raise_for_status()
    wait_for(lambda: cap_on(a) == 3.5 and cap_on(b) == 3.5, 10, "the budget set on b to show on a and b")
    assert httpx.post(a.url + "/runs", json={"session_id": sid, "state": "running", "cwd": "/w"}, timeout=10).json()["max_cost_usd"] == 3.5
    httpx.put(b.url + "/away", json={"on": False}, timeout=10).raise_for_status()
    wait_for(lambda: httpx.get(a.url + "/away", timeout=10).json()["on"] is False, 10, "replica a back from away")
