"""Replicas on PostgreSQL: ``python -m bench.replicas [--sessions 300] [--writes 3000]
[--clients 30] [--connections 4]``.

A PostgreSQL server of its own (initdb + pg_ctl in a temporary directory,
tests/pg.py), three ``sessionwatch serve --db postgresql://...`` replicas
(subprocesses, empty projects dirs) and ``--clients`` SSE clients spread over
them (connected straight to the replicas, in a process of their own so that
reading their streams does not slow the writers).

1. **Events per second through three replicas.** ``--sessions`` Panel
   sessions are registered, then ``--writes`` ``PUT /sessions/{id}/status``
   (one event each) are sent, a third to each replica, over ``--connections``
   keep-alive connections per replica (the lean raw client of
   bench/registrations.py). Figures: writes/s as the writers saw them, and the
   end-to-end rate: writes / (first write → the last event reaching every
   client on every replica).
2. **Resume after a replica dies.** Writes keep going to the two others while
   one replica is killed with SIGKILL; its clients reconnect to the next
   replica with ``Last-Event-ID``. Figures: per moved client, the time from
   the kill to its first resumed event (p50/p99), and over every client the
   events lost and repeated (counted by id against the ``events`` table).
3. **An action relayed to the replica that holds its target** (relay.py),
   measured before the kill: a ``sessionwatch run``'s ``POST /runs`` report,
   taken by the replica that owns the run, sent ``--relays`` times alternately
   to that replica and to another (which relays it there and back). Figures:
   p50/p95 of each, sequential requests on one keep-alive connection each.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402

from bench.common import Server, pct  # noqa: E402
from bench.registrations import _cpu_s, _request, _run  # noqa: E402
from tests.pg import Cluster  # noqa: E402


class Client:
    """One stream: every id it gets, when, and a reconnect with Last-Event-ID to
    the next replica in ``urls`` whenever its stream breaks."""

    def __init__(self, urls: list[str], first: int) -> None:
        self.urls = urls
        self.at = first
        self.ids: list[int] = []
        self.walls: list[float] = []
        self.init: int | None = None
        self.inits = 0
        self.last: int | None = None
        self.broke_at: float | None = None
        self.moved_after: float | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """A raw HTTP/1.0 connection per stream: the bytes split into messages,
        only ``event:`` and ``id:`` read (no JSON decoded)."""
        while not stop.is_set():
            host, _, port = self.urls[self.at].rpartition(":")
            last = b"" if self.last is None else b"Last-Event-ID: %d\r\n" % self.last
            try:
                reader, writer = await asyncio.open_connection(host.rpartition("/")[2], int(port), limit=1 << 22)
                try:
                    writer.write(b"GET /stream HTTP/1.0\r\nHost: 127.0.0.1\r\n" + last + b"\r\n")
                    await reader.readuntil(b"\r\n\r\n")
                    pending = b""
                    while chunk := await reader.read(1 << 20):
                        *messages, pending = (pending + chunk).split(b"\n\n")
                        for m in messages:
                            self._message(m)
                finally:
                    writer.close()
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass
            if not stop.is_set():
                if self.broke_at is None:
                    self.broke_at = time.monotonic()
                self.at = (self.at + 1) % len(self.urls)
                await asyncio.sleep(0.05)

    def _message(self, m: bytes) -> None:
        # Chunk sizes ("\r\n62\r") come between messages (the server writes
        # whole messages per chunk): only the lines before ``data:`` matter.
        kind, event_id = "", None
        for line in m.split(b"\n"):
            if line.startswith(b"data: "):
                break
            if line.startswith(b"event: "):
                kind = line[7:].decode()
            elif line.startswith(b"id: "):
                event_id = int(line[4:])
        if event_id is not None:
            self._got(kind, event_id)

    def _got(self, kind: str, event_id: int) -> None:
        if kind == "init":
            self.inits += 1
            if self.init is None:
                self.init = event_id
        else:
            self.ids.append(event_id)
            self.walls.append(time.time())
            if self.broke_at is not None and self.moved_after is None:
                self.moved_after = time.monotonic() - self.broke_at
        self.last = event_id


async def until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# --- the clients: a process of their own, driven over stdin/stdout -----------------------------


async def clients_main(urls: list[str], n: int, db_url: str) -> None:
    """``ready`` once every client has its init; then, per ``wait <id>`` line,
    one JSON line once every client has that id: when the last got it (wall
    clock), and the counts (lost and repeated against the ``events`` table)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    clients = [Client(urls, k % len(urls)) for k in range(n)]
    tasks = [asyncio.create_task(c.run(stop)) for c in clients]
    await until(lambda: all(c.init is not None for c in clients), 60, "every client's init")
    print("ready", flush=True)
    while line := (await reader.readline()).decode().strip():
        latest = int(line.split()[1])
        await until(lambda: all(c.last is not None and c.last >= latest for c in clients), 300, "every client")
        last_at = max(next(t for i, t in zip(c.ids, c.walls) if i >= latest) for c in clients)
        conn = await asyncpg.connect(db_url)
        try:
            logged = [int(r[0]) for r in await conn.fetch("SELECT id FROM events WHERE type <> 'start' ORDER BY id")]
        finally:
            await conn.close()
        lost = repeated = 0
        for c in clients:
            want = {i for i in logged if c.init is not None and i > c.init}
            repeated += len(c.ids) - len(set(c.ids))
            lost += len(want - set(c.ids))
        moved = [c for c in clients if c.broke_at is not None]
        waits = [c.moved_after * 1000 for c in moved if c.moved_after is not None]
        print(json.dumps({
            "last_at": last_at, "lost": lost, "repeated": repeated,
            "fresh_inits": sum(c.inits - 1 for c in clients), "moved_clients": len(moved),
            "resume_p50_ms": round(pct(waits, 50), 1) if waits else None,
            "resume_p99_ms": round(pct(waits, 99), 1) if waits else None,
        }), flush=True)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- the writers, the kill, and the figures ---------------------------------------------------------


async def relayed(owner: str, other: str, n: int) -> dict[str, Any]:
    """``n`` reports of one run sent to its owner and ``n`` to another replica, alternately."""
    import httpx

    sid = str(uuid.uuid4())
    body = {"session_id": sid, "state": "running", "cwd": "/bench", "name": "bench-run"}
    times: dict[str, list[float]] = {"owner": [], "relayed": []}
    async with httpx.AsyncClient(base_url=owner, timeout=30) as here, httpx.AsyncClient(base_url=other, timeout=30) as there:
        (await here.post("/runs", json=body)).raise_for_status()  # the owner takes the run
        for i in range(n):
            for name, client in (("owner", here), ("relayed", there)):
                t0 = time.perf_counter()
                r = await client.post("/runs", json={**body, "current_task": f"step {i}"})
                times[name].append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
    return {f"{k}_{q}_ms": round(pct(v, q), 2) for k, v in times.items() for q in (50, 95)} | {"n": n}


async def bench(servers: list[Server], url: str, sessions: int, writes: int, n_clients: int, conns: int, relays: int = 200) -> dict[str, Any]:
    ports = [s.port for s in servers]
    out: dict[str, Any] = {"replicas": len(servers), "clients": n_clients, "sessions": sessions, "writes": writes}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.replicas", "--clients-of", ",".join(s.url for s in servers),
        "--clients", str(n_clients), "--db-url", url, cwd=REPO,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None

    async def ask(latest: int) -> dict[str, Any]:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(f"wait {latest}\n".encode())
        await child.stdin.drain()
        return json.loads(await asyncio.wait_for(child.stdout.readline(), 600))  # type: ignore[no-any-return]

    try:
        if (await asyncio.wait_for(child.stdout.readline(), 120)).strip() != b"ready":
            raise RuntimeError("the clients' process did not start")
        ids = [uuid.uuid4().hex for _ in range(sessions)]
        regs = [_request("POST", "/sessions", {"app_name": f"bench-{i % 20}", "session_id": sid}) for i, sid in enumerate(ids)]
        await asyncio.gather(*(_run(p, regs[k :: len(ports)], conns) for k, p in enumerate(ports)))

        def statuses(n: int, tag: str) -> list[bytes]:
            return [_request("PUT", f"/sessions/{ids[i % sessions]}/status",
                             {"status": ("running", "idle")[i % 2], "current_task": f"{tag}{i}"}) for i in range(n)]  # fmt: skip

        conn = await asyncpg.connect(url)
        try:
            # 1. events per second through three replicas
            reqs = statuses(writes, "a")
            pids = [s.proc.pid for s in servers if s.proc is not None]
            cpu0 = sum(_cpu_s(p) for p in pids)
            wall0 = time.time()
            t0 = time.monotonic()
            results = await asyncio.gather(*(_run(p, reqs[k :: len(ports)], conns) for k, p in enumerate(ports)))
            t_writes = time.monotonic() - t0
            seen = await ask(int(await conn.fetchval("SELECT max(id) FROM events WHERE type <> 'start'")))
            cpu = sum(_cpu_s(p) for p in pids) - cpu0
            out["throughput"] = {
                # the three replicas' CPU (user + system) per event, all of them together
                "replicas_cpu_ms": round(cpu * 1000 / writes, 2),
                "writes_per_s": round(writes / t_writes, 1),
                "end_to_end_per_s": round(writes / (seen["last_at"] - wall0), 1),
                "errors": sum(r["errors"] for r in results),  # type: ignore[misc]
                "p50_ms": round(pct([float(r["p50_ms"]) for r in results], 50), 2),  # type: ignore[arg-type]
                "p99_ms": round(max(float(r["p99_ms"]) for r in results), 2),  # type: ignore[arg-type]
                "events_sent": n_clients * writes,
            }
            # 3. an action relayed to the replica that owns its target
            out["relay"] = await relayed(servers[1].url, servers[2].url, relays)
            # 2. one replica killed mid-stream while the two others take writes
            victim = servers[0]
            more = statuses(writes // 2, "b")
            writers = asyncio.gather(*(_run(p, more[k :: 2], conns) for k, p in enumerate(ports[1:])))
            await asyncio.sleep(0.3)
            assert victim.proc is not None
            victim.proc.kill()
            victim.proc.wait()
            res2 = await writers
            seen = await ask(int(await conn.fetchval("SELECT max(id) FROM events WHERE type <> 'start'")))
        finally:
            await conn.close()
        out["resume"] = {k: seen[k] for k in ("moved_clients", "resume_p50_ms", "resume_p99_ms", "lost", "repeated", "fresh_inits")}
        out["resume"]["writes_during"] = len(more)
        out["resume"]["write_errors"] = sum(r["errors"] for r in res2)  # type: ignore[misc]
    finally:
        if child.returncode is None:
            child.stdin.close()
            try:
                await asyncio.wait_for(child.wait(), 30)
            except TimeoutError:
                child.kill()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=300)
    ap.add_argument("--writes", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--relays", type=int, default=200)
    ap.add_argument("--clients-of", help=argparse.SUPPRESS)  # the clients' own process
    ap.add_argument("--db-url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.clients_of:
        asyncio.run(clients_main(args.clients_of.split(","), args.clients, args.db_url))
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    cluster = Cluster().start()
    servers: list[Server] = []
    try:
        url = cluster.new_database()
        for k in range(3):
            (work / f"projects-{k}").mkdir()
            srv = Server(work / f"projects-{k}", work / "unused.db", log=work / f"replica-{k}.log")
            srv.cmd[srv.cmd.index("--db") + 1] = url
            srv.cmd += ["--claude-dir", str(work / f"claude-{k}"), "--stale-after-s", "3600", "--cleanup-after-s", "7200"]
            servers.append(srv.start())
        result = asyncio.run(bench(servers, url, args.sessions, args.writes, args.clients, args.connections, args.relays))
    finally:
        for srv in servers:
            srv.stop()
        cluster.stop()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
