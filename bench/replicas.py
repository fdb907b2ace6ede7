"""Replicas on PostgreSQL: ``python -m bench.replicas [--sessions 300] [--writes 3000]
[--clients 30] [--connections 4]``.

A PostgreSQL server of its own (initdb + pg_ctl in a temporary directory,
tests/pg.py), three ``sessionwatch serve --db postgresql://...`` replicas
(subprocesses, empty projects dirs) and ``--clients`` SSE clients spread over
them (connected straight to the replicas).

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
import httpx  # noqa: E402

from bench.common import Server, pct  # noqa: E402
from bench.registrations import _request, _run  # noqa: E402
from tests.pg import Cluster  # noqa: E402


class Client:
    """One stream: every id it gets, when, and a reconnect with Last-Event-ID to
    the next replica in ``urls`` whenever its stream breaks."""

    def __init__(self, urls: list[str], first: int) -> None:
        self.urls = urls
        self.at = first
        self.ids: list[int] = []
        self.times: list[float] = []
        self.init: int | None = None
        self.inits = 0
        self.last: int | None = None
        self.broke_at: float | None = None
        self.moved_after: float | None = None

    async def run(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            headers = {} if self.last is None else {"Last-Event-ID": str(self.last)}
            try:
                async with http.stream("GET", self.urls[self.at] + "/stream", headers=headers) as r:
                    kind, event_id = "", None
                    async for line in r.aiter_lines():
                        if line.startswith("event: "):
                            kind = line[7:]
                        elif line.startswith("id: "):
                            event_id = int(line[4:])
                        elif line.startswith("data: ") and event_id is not None:
                            self._got(kind, event_id)
                            kind, event_id = "", None
            except (httpx.HTTPError, OSError):
                pass
            if not stop.is_set():
                if self.broke_at is None:
                    self.broke_at = time.monotonic()
                self.at = (self.at + 1) % len(self.urls)
                await asyncio.sleep(0.05)

    def _got(self, kind: str, event_id: int) -> None:
        if kind == "init":
            self.inits += 1
            if self.init is None:
                self.init = event_id
        else:
            self.ids.append(event_id)
            self.times.append(time.monotonic())
            if self.broke_at is not None and self.moved_after is None:
                self.moved_after = time.monotonic() - self.broke_at
        self.last = event_id


async def until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def bench(servers: list[Server], url: str, sessions: int, writes: int, n_clients: int, conns: int) -> dict[str, Any]:
    urls = [s.url for s in servers]
    ports = [s.port for s in servers]
    out: dict[str, Any] = {"replicas": len(servers), "clients": n_clients, "sessions": sessions, "writes": writes}
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=120), limits=limits) as http:
        clients = [Client(urls, k % len(urls)) for k in range(n_clients)]
        tasks = [asyncio.create_task(c.run(http, stop)) for c in clients]
        try:
            await until(lambda: all(c.init is not None for c in clients), 60, "every client's init")
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
                t0 = time.monotonic()
                results = await asyncio.gather(*(_run(p, reqs[k :: len(ports)], conns) for k, p in enumerate(ports)))
                t_writes = time.monotonic() - t0
                latest = int(await conn.fetchval("SELECT max(id) FROM events WHERE type <> 'start'"))
                await until(lambda: all(c.last is not None and c.last >= latest for c in clients), 120, "every client")
                t_all = max(next(t for i, t in zip(c.ids, c.times) if i >= latest) for c in clients) - t0
                out["throughput"] = {
                    "writes_per_s": round(writes / t_writes, 1),
                    "end_to_end_per_s": round(writes / t_all, 1),
                    "errors": sum(r["errors"] for r in results),  # type: ignore[misc]
                    "p50_ms": round(pct([float(r["p50_ms"]) for r in results], 50), 2),  # type: ignore[arg-type]
                    "p99_ms": round(max(float(r["p99_ms"]) for r in results), 2),  # type: ignore[arg-type]
                    "events_sent": len(clients) * writes,
                }

                # 2. one replica killed mid-stream while the two others take writes
                victim = servers[0]
                more = statuses(writes // 2, "b")
                writers = asyncio.gather(*(_run(p, more[k :: 2], conns) for k, p in enumerate(ports[1:])))
                await asyncio.sleep(0.3)
                assert victim.proc is not None
                victim.proc.kill()
                victim.proc.wait()
                killed_at = time.monotonic()
                res2 = await writers
                latest = int(await conn.fetchval("SELECT max(id) FROM events WHERE type <> 'start'"))
                await until(lambda: all(c.last is not None and c.last >= latest for c in clients), 120, "every client after the kill")
                logged = [int(r[0]) for r in await conn.fetch("SELECT id FROM events WHERE type <> 'start' ORDER BY id")]
            finally:
                await conn.close()
            moved = [c for c in clients if c.broke_at is not None]
            waits = [c.moved_after * 1000 for c in moved if c.moved_after is not None]
            lost = repeated = 0
            for c in clients:
                want = [i for i in logged if c.init is not None and i > c.init]
                repeated += len(c.ids) - len(set(c.ids))
                lost += len(set(want) - set(c.ids))
            out["resume"] = {
                "moved_clients": len(moved),
                "resume_p50_ms": round(pct(waits, 50), 1) if waits else None,
                "resume_p99_ms": round(pct(waits, 99), 1) if waits else None,
                "lost": lost,
                "repeated": repeated,
                "fresh_inits": sum(c.inits - 1 for c in clients),
                "writes_during": len(more),
                "write_errors": sum(r["errors"] for r in res2),  # type: ignore[misc]
                "since_kill_s": round(time.monotonic() - killed_at, 2),
            }
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=300)
    ap.add_argument("--writes", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--connections", type=int, default=4)
    args = ap.parse_args()
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
        result = asyncio.run(bench(servers, url, args.sessions, args.writes, args.clients, args.connections))
    finally:
        for srv in servers:
            srv.stop()
        cluster.stop()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
