"""The persistent event log: ids from the store, replay from it, retention,
and two servers on one SQLite file (issue 9, EventLog)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwatch.config import Settings
from sessionwatch.hub.log import START, NewEvent, SqliteEventLog
from sessionwatch.hub.core import Hub
from sessionwatch.hub.events import Filter
from sessionwatch.engine import Engine
from sessionwatch.model import Session
from sessionwatch.store.base import Write
from sessionwatch.store.sqlite import Store

from .conftest import Server, wait_for
from .sessions import session
from .sse import SSEClient
from .stores import Backend
from .test_claude import assistant


def ev(kind: str = "session-updated", at: float | None = None, size: int = 10) -> NewEvent:
    return NewEvent(kind, b'{"type":"%s","sessions":[],"timestamp":0,"pad":"%s"}' % (kind.encode(), b"x" * size), at or time.time())


async def test_ids_increase_across_two_connections_on_one_file(backend: Backend) -> None:
    a, b = await backend.open(), await backend.open()
    try:
        la, lb = a.event_log(), b.event_log()
        assert la.origin != lb.origin
        got: list[int] = []
        for n in range(5):
            got += await la.append([ev(), ev()])
            got += await lb.append([ev()])
        assert got == sorted(got) and len(set(got)) == len(got) == 15
        assert await la.latest_id() == await lb.latest_id() == got[-1]
        rows = await lb.since(got[0] - 1, 100)
        assert [r.id for r in rows] == got
        assert {r.origin for r in rows} == {la.origin, lb.origin}
    finally:
        await a.close()
        await b.close()


async def test_ids_increase_across_processes_and_survive_restart(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = await Store.open(db)
    log = SqliteEventLog(store)
    first = await log.append([ev()])
    await store.close()
    # another process appends, with its own connection and migrations run once
    script = textwrap.dedent(
        f"""
        import asyncio, time
        from pathlib import Path
        from sessionwatch.hub.log import NewEvent, SqliteEventLog
        from sessionwatch.store.sqlite import Store
        async def main():
            store = await Store.open(Path({str(db)!r}))
            ids = await SqliteEventLog(store).append([NewEvent("refresh", b"{{}}", time.time())] * 3)
            print(*ids)
            await store.close()
        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    other = [int(x) for x in out.stdout.split()]
    assert other == [first[0] + 1, first[0] + 2, first[0] + 3]
    store = await Store.open(db)  # a restart
    try:
        log = SqliteEventLog(store)
        assert await log.latest_id() == other[-1]
        # trimmed rows' ids never come back (AUTOINCREMENT)
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM events")
        assert await log.append([ev()]) == [other[-1] + 1]
    finally:
        await store.close()


async def test_since_returns_exactly_the_missed_events(backend: Backend) -> None:
    store = await backend.open()
    try:
        log = store.event_log()
        ids = await log.append([ev("session-created"), ev("session-updated"), ev("session-deleted")])
        more = await log.append([ev("refresh")])
        rows = await log.since(ids[0], 100)
        assert [(r.id, r.type) for r in rows] == [
            (ids[1], "session-updated"), (ids[2], "session-deleted"), (more[0], "refresh"),
        ]  # fmt: skip
        assert rows[0].data == ev("session-updated").data
        assert [r.id for r in await log.since(ids[0], 2)] == ids[1:]
        assert await log.since(more[0], 100) == []
    finally:
        await store.close()


async def test_trim_keeps_1000_events_and_15_minutes_within_bytes(backend: Backend) -> None:
    store = await backend.open()
    try:
        log = store.event_log()
        now = 1_000_000.0
        old = await log.append([ev(at=now - 3600) for _ in range(1500)])  # an hour old
        young = await log.append([ev(at=now - 60) for _ in range(500)])  # a minute old
        assert await log.trim(now) == 1000  # 15 minutes kept whatever the count; then the last 1,000
        kept = [r.id for r in await log.since(0, 10_000)]
        assert kept == old[1000:] + young
        # the byte bound wins over count and age
        deleted = await log.trim(now, max_bytes=100 * len(ev().data))
        kept = [r.id for r in await log.since(0, 10_000)]
        assert kept == young[-100:] and deleted == 900
        assert await log.latest_id() == young[-1]
    finally:
        await store.close()


# --- the hub on the log -------------------------------------------------------------------


def sess(sid: str, **kw: Any) -> Session:
    return session(sid, **kw)


def messages(sub: Any) -> list[bytes]:
    chunk = b"".join(sub.items)
    sub.items.clear()
    return [m for m in chunk.split(b"\n\n") if m]


def ids_of(got: list[bytes]) -> list[int]:
    return [int(line[4:]) for m in got for line in m.split(b"\n") if line.startswith(b"id: ")]


async def test_hub_ids_come_from_the_log_and_a_batch_is_one_append(backend: Backend) -> None:
    store = await backend.open()
    try:
        log = store.event_log()
        appends: list[int] = []
        real = log.append

        async def counting(events: Any, **kw: Any) -> list[int]:
            appends.append(len(events))
            return await real(events, **kw)

        log.append = counting  # type: ignore[method-assign]
        hub = Hub()
        await hub.attach(log)
        start = hub.last_id
        sub = hub.subscribe()
        assert ids_of(messages(sub)) == [start]  # the init names this run's start row
        events = await hub.update({"a": sess("a"), "b": sess("b")})
        events += await hub.update({"a": sess("a", status="running"), "b": None, "c": sess("c")})
        assert appends == [1, 1, 3]  # the start row, then one append per batch
        assert [e.id for e in events] == list(range(start + 1, start + 5)) == ids_of(messages(sub))
        rows = await log.since(start - 1, 100)
        assert [(r.id, r.type) for r in rows] == [(start, START)] + [(e.id, e.type) for e in events]
        assert all(r.data == e.data() for r, e in zip(rows[1:], events))
    finally:
        await store.close()


async def test_resume_older_than_the_window_is_replayed_from_the_log(backend: Backend) -> None:
    store = await backend.open()
    try:
        log = store.event_log()
        hub = Hub(buffer_size=3, keep_events=0, keep_s=0)
        await hub.attach(log)
        live = hub.subscribe(Filter(source="panel"))
        messages(live)
        everything = hub.subscribe()
        messages(everything)
        for i in range(10):
            await hub.update({f"s{i}": sess(f"s{i}", source="panel" if i % 2 else "claude")})
        await hub.update({"s1": None, "s2": None})
        sent = messages(everything)
        assert len(hub.buffer) == 3 and hub.buffer[0].id > ids_of(sent)[0]
        for n, last in enumerate([hub.floor - 5, ids_of(sent)[0], hub.floor]):
            replay = messages(await hub.resume(last_event_id=last))
            assert replay[0] == b"retry: 2000" and replay[1:] == [m for m in sent if ids_of([m])[0] > last], n
        # filtered: what a live subscriber with that filter got (deletions read
        # back from the log name ids only, so they go to every filter)
        got = messages(live)
        replay = messages(await hub.resume(Filter(source="panel"), last_event_id=ids_of(sent)[0]))
        assert replay[1:] == got
        # the start row of this run: everything; an id never given: init
        start = ids_of(sent)[0] - 1
        assert ids_of(messages(await hub.resume(last_event_id=start))[1:]) == ids_of(sent)
        assert b"event: init" in messages(await hub.resume(last_event_id=start - 1))[0]
        assert b"event: init" in messages(await hub.resume(last_event_id=hub.last_id + 1))[0]
    finally:
        await store.close()


async def test_resume_trimmed_from_the_log_gets_init(backend: Backend) -> None:
    store = await backend.open()
    try:
        log = store.event_log()
        hub = Hub(buffer_size=2, keep_events=0, keep_s=0)
        await hub.attach(log)
        for i in range(5):
            await hub.update({"a": sess("a", message_count=i)})
        first = hub.last_id - 4
        assert len(messages(await hub.resume(last_event_id=first))) == 5
        await log.trim(time.time() + 3600, keep_events=2)
        assert b"event: init" in messages(await hub.resume(last_event_id=first))[0]
    finally:
        await store.close()


async def test_a_deletion_read_back_from_the_log_reaches_filtered_resumers(backend: Backend) -> None:
    store = await backend.open()
    try:
        log = store.event_log()
        hub = Hub(buffer_size=1, keep_events=0, keep_s=0)
        await hub.attach(log)
        await hub.update({"p": sess("p", source="panel")})
        last = hub.last_id
        await hub.update({"p": None})
        await hub.update({"c": sess("c")})  # the deletion leaves the window
        assert [k.type for k in hub.buffer] == ["session-created"]
        replay = messages(await hub.resume(Filter(source="panel"), last_event_id=last))
        assert [m.split(b"\n")[1] for m in replay[1:]] == [b"event: session-deleted"]
        assert b'"sessions":[{"id":"p"}]' in replay[1]
    finally:
        await store.close()


async def test_a_subscriber_arriving_while_a_batch_awaits_its_ids_sees_the_state_before_it(backend: Backend) -> None:
    store = await backend.open()
    try:
        log = store.event_log()
        hub = Hub()
        await hub.attach(log)
        gate = asyncio.Event()
        real = log.append

        async def slow(events: Any, **kw: Any) -> list[int]:
            await gate.wait()
            return await real(events, **kw)

        log.append = slow  # type: ignore[method-assign]
        before = hub.last_id
        task = asyncio.create_task(hub.update({"a": sess("a")}))
        await asyncio.sleep(0)
        sub = hub.subscribe()
        (init,) = messages(sub)
        assert b"id: %d\n" % before in init and b'"id":"a"' not in init  # neither half of the batch
        gate.set()
        (event,) = await task
        (got,) = messages(sub)
        assert got.startswith(b"id: %d\nevent: session-created" % event.id) and event.id > before
    finally:
        await store.close()


def shared_settings(tmp_path: Path) -> Settings:
    (tmp_path / "projects").mkdir(exist_ok=True)
    return Settings(projects_dir=tmp_path / "projects", db=tmp_path / "shared.db")


async def test_two_servers_on_one_file_never_replay_each_others_events(tmp_path: Path) -> None:
    """Regression: ids were the process's start time in ms plus a counter, so
    two servers on one database (started in the same millisecond here, or a
    busy one overtaking the other's start time) gave the same ids, and a client
    moved from one to the other was silently replayed the other's events."""
    a = Engine(shared_settings(tmp_path))
    b = Engine(shared_settings(tmp_path))
    a.hub.last_id = b.hub.last_id = int(time.time() * 1000)  # what the old ids did within one ms
    await a.open()
    await b.open()
    try:
        client = a.hub.subscribe()
        client.items.clear()
        for n in range(5):  # B busier than A
            if n < 3:
                await a.register("app", session_id=f"on-a-{n}", user_id=None, host=None, pid=None, url=None)
            await b.register("app", session_id=f"on-b-{n}", user_id=None, host=None, pid=None, url=None)
        got = b"".join(client.items)
        last = int(got.split(b"id: ")[-1].split(b"\n")[0])  # the client's Last-Event-ID from A
        assert b.hub.last_id > last  # B has events after that id
        moved = b"".join(b.hub.subscribe(last_event_id=last).items)
        assert moved.startswith(b"retry: 2000\nid: %d\nevent: init\n" % b.hub.last_id), moved[:80]
        back = b"".join(a.hub.subscribe(last_event_id=last).items)
        assert back == b"retry: 2000\n\n"  # on A nothing was missed
    finally:
        await a.close()
        await b.close()


# --- two real servers on one SQLite file ------------------------------------------------------

MUSIC = "-Users-chip-dev-ai-music"
SID = "ba79134d-b6e9-4867-af0c-6941038c9e4b"


def test_two_servers_on_one_db_give_distinct_ids_and_a_moved_client_resumes_correctly(
    projects: Path, sw_server: Callable[..., Server], tmp_path: Path
) -> None:
    db = tmp_path / "shared.db"
    a = sw_server(projects_dir=projects, db=db)
    b = sw_server(projects_dir=projects, db=db)
    on_a = SSEClient(a.url + "/stream").start()
    on_b = SSEClient(b.url + "/stream").start()
    seen_a = [int(on_a.next().id or 0)]
    seen_b = [int(on_b.next().id or 0)]
    path = projects / MUSIC / f"{SID}.jsonl"
    for i in range(3):  # each append: one event on each server, each with its own id
        with open(path, "ab") as f:
            f.write(assistant(f"m{i}", f"r{i}", 10, model="claude-sonnet-4-20250514"))
        seen_a.append(int(on_a.next().id or 0))
        seen_b.append(int(on_b.next().id or 0))
        r = httpx.post(a.url + "/sessions", json={"app_name": "reports", "session_id": f"panel-{i}"}, timeout=10)
        assert r.status_code == 201
        seen_a.append(int(on_a.next().id or 0))  # A's own registration
    assert not set(seen_a[1:]) & set(seen_b[1:]), "two servers gave the same id"
    assert seen_a == sorted(seen_a) and seen_b == sorted(seen_b)
    with sqlite3.connect(db) as conn:
        logged = {r[0] for r in conn.execute("SELECT id FROM events")}
    assert set(seen_a[1:]) | set(seen_b[1:]) <= logged  # every id sent is a row of the shared log
    # A client of A moves to B with its Last-Event-ID: B gives a fresh init
    # (its own view of the shared world), never B's events after A's id.
    def b_shows_the_panel_sessions() -> bool:
        return "panel-2" in {s["id"] for s in httpx.get(b.url + "/all", timeout=10).json()["sessions"]}

    wait_for(b_shows_the_panel_sessions, what="B to pick up A's registrations from the shared file")
    latest_b = httpx.get(b.url + "/all", timeout=10).json()["last_event_id"]
    assert latest_b > seen_a[-2] and latest_b not in seen_a
    for last in (seen_a[1], seen_a[-2]):
        moved = SSEClient(b.url + "/stream", headers={"Last-Event-ID": str(last)}).start()
        first = moved.next()
        assert first.event == "init" and int(first.id or 0) == latest_b
        assert {s["id"] for s in first.data["sessions"]} >= {SID, "panel-0", "panel-1", "panel-2"}
        moved.stop()
    # ...and back on A the same id resumes with exactly the events A sent after it.
    back = SSEClient(a.url + "/stream", headers={"Last-Event-ID": str(seen_a[1])}).start()
    assert [int(back.next().id or 0) for _ in seen_a[2:]] == seen_a[2:]
    # A restart of A: ids go on from the log; the old ids get init.
    for c in (on_a, on_b, back):
        c.stop()
    assert a.stop() == 0
    a.start()
    again = SSEClient(a.url + "/stream", headers={"Last-Event-ID": str(seen_a[-1])}).start()
    init = again.next()
    assert init.event == "init" and int(init.id or 0) > max(seen_a + seen_b)
    again.stop()
    assert httpx.get(a.url + "/all", timeout=10).json()["last_event_id"] == int(init.id or 0)


async def test_an_append_during_a_failed_transaction_is_not_rolled_back_with_it(tmp_path: Path) -> None:
    """The store's connection is shared: a multi-statement transaction awaits
    between its statements, and an event appended meanwhile ran inside it, so
    that transaction's ROLLBACK took the event (already given its id) too."""
    store = await Store.open(tmp_path / "a.db")
    log = SqliteEventLog(store)
    try:
        failing = store.write(
            [
                Write("UPDATE panel_sessions SET status = 'idle' WHERE id = ?", ("nobody",)),
                Write("INSERT INTO no_such_table VALUES (1)"),
            ]
        )
        results = await asyncio.gather(failing, log.append([ev()]), return_exceptions=True)
        assert isinstance(results[0], sqlite3.OperationalError)
        ids = results[1]
        assert isinstance(ids, list) and len(ids) == 1
        assert [r.id for r in await log.since(ids[0] - 1, 10)] == ids
    finally:
        await store.close()


# --- a change and its events: one transaction, one trip ---------------------------------------------


def trips(store: Store) -> list[int]:
    """Counts the calls that go to the store connection's thread."""
    conn = store.conn
    real = conn._execute
    count = [0]

    async def counting(fn: Any, *args: Any, **kw: Any) -> Any:
        count[0] += 1
        return await real(fn, *args, **kw)

    conn._execute = counting  # type: ignore[method-assign]
    return count


async def test_a_tracker_write_and_its_events_are_one_transaction_in_one_trip(tmp_path: Path) -> None:
    """Regression (issue 9, EventLog): a Panel write was one trip to the
    database thread and its events' append a second, in two transactions
    (the figure it cost: docs/benchmarks.md, registrations)."""
    engine = Engine(shared_settings(tmp_path))
    await engine.open()
    try:
        store = engine.store
        assert isinstance(store, Store)
        statements: list[str] = []
        await store.conn.set_trace_callback(statements.append)
        count = trips(store)
        for write in (
            lambda: engine.register("app", session_id="p1", user_id=None, host=None, pid=None, url=None),
            lambda: engine.set_status("p1", "running", "t"),
            lambda: engine.kill("p1", "boss"),
            lambda: engine.delete(["p1"]),
        ):
            count[0] = 0
            statements.clear()
            before = engine.hub.last_id
            await write()
            assert count[0] == 1, f"{count[0]} trips to the database for one write"
            verbs = [s.split()[0] for s in statements]
            assert verbs[0] == "BEGIN" and verbs[-1] == "COMMIT" and "BEGIN" not in verbs[1:]
            assert statements[-2].startswith("INSERT INTO events"), statements
            assert engine.hub.last_id > before
        await store.conn.set_trace_callback(None)
    finally:
        await engine.close()


async def test_a_write_that_fails_keeps_neither_the_change_nor_its_events(tmp_path: Path) -> None:
    """Regression (issue 9, EventLog): the Panel write committed on its own,
    so an event that then failed to be logged left the row changed in the
    database and shown nowhere; and a write that failed after its events
    were logged would leave ids for a change that did not happen."""
    settings = shared_settings(tmp_path)
    engine = Engine(settings)
    await engine.open()
    try:
        await engine.register("app", session_id="p1", user_id=None, host=None, pid=None, url=None)
        sub = engine.hub.subscribe()
        messages(sub)
        before = engine.hub.last_id
        shown = engine.hub.sessions["p1"]
        with sqlite3.connect(settings.db) as conn:  # the events' insert fails, after the Panel write ran
            conn.execute(
                "CREATE TRIGGER refuse_events BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        with pytest.raises(sqlite3.IntegrityError):
            await engine.set_status("p1", "running", "t")
        with pytest.raises(sqlite3.IntegrityError):
            await engine.kill("p1", "boss")
        with pytest.raises(sqlite3.IntegrityError):
            await engine.delete(["p1"])
        with sqlite3.connect(settings.db) as conn:
            conn.execute("DROP TRIGGER refuse_events")
            row = conn.execute("SELECT status, current_task, kill_requested FROM panel_sessions").fetchall()
            kills = conn.execute("SELECT count(*) FROM panel_kills").fetchone()
            latest = conn.execute("SELECT max(id) FROM events").fetchone()
        assert row == [("idle", None, 0)] and kills == (0,), "the write was kept without its events"
        assert latest == (before,)
        # the server shows, sends and remembers none of it
        assert engine.hub.last_id == before and engine.hub.sessions["p1"] is shown and messages(sub) == []
        got = engine.panel.rows["p1"]
        assert (got.status, got.current_task, got.kill_requested) == ("idle", None, False)
        assert engine.panel.heartbeat("p1") is False
        # ...and the next write goes through whole
        assert await engine.set_status("p1", "running", "t")
        assert engine.hub.sessions["p1"].status == "running"
        assert ids_of(messages(sub)) == [engine.hub.last_id]
    finally:
        await engine.close()


async def test_a_status_for_a_row_deleted_elsewhere_logs_no_update(tmp_path: Path) -> None:
    settings = shared_settings(tmp_path)
    engine = Engine(settings)
    await engine.open()
    try:
        await engine.register("app", session_id="p1", user_id=None, host=None, pid=None, url=None)
        before = engine.hub.last_id
        with sqlite3.connect(settings.db) as conn:  # another process deletes it
            conn.execute("DELETE FROM panel_sessions")
        assert not await engine.set_status("p1", "running", "t")
        assert "p1" not in engine.hub.sessions and "p1" not in engine.panel.rows
        rows = await engine.log.since(before, 10)
        assert [r.type for r in rows] == ["session-deleted"], "an update was logged for a write that did not happen"
    finally:
        await engine.close()


def test_two_servers_writing_at_once_never_give_the_same_id_and_a_moved_client_resumes(
    sw_server: Callable[..., Server], tmp_path: Path
) -> None:
    """Trackers write to both servers at the same time: every id either
    server hands out is a row of the shared log marked with that server's
    run, each server's client gets exactly its server's rows, in order, and
    no id is both servers'. A client moved between them resumes as the
    contract says (hub/log.py): a fresh init on the other server equal to
    its /all, exactly the missed events on its own."""
    empty = tmp_path / "empty"
    empty.mkdir()
    db = tmp_path / "shared.db"
    servers = [sw_server(projects_dir=empty, db=db), sw_server(projects_dir=empty, db=db)]
    clients = [SSEClient(s.url + "/stream").start() for s in servers]
    seen: list[list[int]] = [[], []]
    shown: list[dict[str, dict[str, Any]]] = [{}, {}]
    for k, c in enumerate(clients):
        init = c.next()
        assert init.event == "init"
        seen[k].append(int(init.id or 0))  # the run's start row
    n = 12

    def trackers(k: int) -> None:
        with httpx.Client(base_url=servers[k].url, timeout=10) as http:
            for i in range(n):
                sid = f"on-{k}-{i}"
                r = http.post("/sessions", json={"app_name": "app", "session_id": sid})
                assert r.status_code == 201, r.text
                r = http.put(f"/sessions/{sid}/status", json={"status": "running", "current_task": f"t{i}"})
                assert r.status_code == 200, r.text

    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(trackers, k) for k in (0, 1)]:
            f.result()

    def receive() -> None:
        for k, c in enumerate(clients):
            for e in c.drain():
                if e.event == "keepalive":
                    continue
                seen[k].append(int(e.id or 0))
                for s in e.data["sessions"]:
                    if e.event == "session-deleted":
                        shown[k].pop(s["id"], None)
                    else:
                        shown[k][s["id"]] = s

    def both_show_every_write() -> bool:
        receive()
        want = {f"on-{k}-{i}": f"t{i}" for k in (0, 1) for i in range(n)}
        return all({sid: s["current_task"] for sid, s in got.items()} == want for got in shown)

    wait_for(both_show_every_write, timeout=30, what="both servers to show every write")

    def every_logged_id_reached_its_servers_client() -> bool:
        receive()
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT id, origin FROM events ORDER BY id").fetchall()
        by_origin: dict[int, list[int]] = {}
        for event_id, origin in rows:
            by_origin.setdefault(origin, []).append(event_id)
        return sorted(by_origin.values()) == sorted(seen)

    wait_for(every_logged_id_reached_its_servers_client, timeout=30, what="every logged event to reach its client")
    assert not set(seen[0]) & set(seen[1]), "two servers gave the same id"
    assert all(ids == sorted(ids) and len(set(ids)) == len(ids) for ids in seen)
    assert set(seen[0]) & set(range(min(seen[1]), max(seen[1]))), "the two servers' ids did not interleave"
    for c in clients:
        c.stop()
    # A's client moves to B in the middle of A's events: B's own view, fresh.
    middle = seen[0][len(seen[0]) // 2]
    everything = httpx.get(servers[1].url + "/all", timeout=10).json()
    moved = SSEClient(servers[1].url + "/stream", headers={"Last-Event-ID": str(middle)}).start()
    init = moved.next()
    moved.stop()
    assert init.event == "init" and int(init.id or 0) == everything["last_event_id"]
    assert sorted(init.data["sessions"], key=lambda s: s["id"]) == sorted(everything["sessions"], key=lambda s: s["id"])
    # ...and back on A: exactly what A sent after that id.
    back = SSEClient(servers[0].url + "/stream", headers={"Last-Event-ID": str(middle)}).start()
    after = seen[0][len(seen[0]) // 2 + 1 :]
    assert [int(back.next().id or 0) for _ in after] == after
    back.stop()
