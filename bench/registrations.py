"""Tracker registrations with many Panel sessions live:
``python -m bench.registrations [--live 10000] [--count 5000] [--connections 8]``.

A real sessionwatch server (subprocess, empty projects dir). First ``--live``
sessions are registered, then ``--count`` more are timed, then as many
``PUT /sessions/{id}/status`` on the live ones; each over ``--connections``
keep-alive connections of a lean raw HTTP/1.1 client (httpx itself tops out
near 500 requests/s per process here, which would measure the client). A
``/stream`` subscriber stays connected throughout, so every write's event
goes out. Prints one JSON line; DESIGN.md's target is ≥ 1,000
registrations/s with 10,000 sessions live. Each step also reports the
server process's CPU time per request (``cpu_ms``, user + system from
``/proc``): on a machine others load, it moves far less than the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import Server, pct  # noqa: E402


async def _client(port: int, requests: list[bytes], lat: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests:
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for h in head.split(b"\r\n"):
                if h.lower().startswith(b"content-length:"):
                    length = int(h.split(b":", 1)[1])
            body = await reader.readexactly(length)
            lat.append((time.perf_counter() - t) * 1000)
            if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 201")):
                errors.append((head.split(b"\r\n", 1)[0] + b" " + body[:200]).decode(errors="replace"))
    finally:
        writer.close()


def _request(method: str, path: str, body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 if unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _run(port: int, requests: list[bytes], connections: int, pid: int = 0) -> dict[str, object]:
    lat: list[float] = []
    errors: list[str] = []
    cpu0 = _cpu_s(pid)
    t0 = time.perf_counter()
    await asyncio.gather(
        *(_client(port, requests[k::connections], lat, errors) for k in range(connections))
    )
    dt = time.perf_counter() - t0
    cpu = _cpu_s(pid) - cpu0
    return {
        "requests": len(requests), "errors": len(errors), "first_error": errors[0] if errors else None,
        "seconds": round(dt, 3), "per_s": round(len(requests) / dt, 1),
        "p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
        "cpu_ms": round(cpu * 1000 / max(len(requests), 1), 3),
    }


async def _drain_stream(port: int, stop: asyncio.Event, seen: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stream?source=panel HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    try:
        while not stop.is_set():
            try:
                chunk = await asyncio.wait_for(reader.read(1 << 20), 0.2)
            except TimeoutError:
                continue
            if not chunk:
                return
            seen[0] += chunk.count(b"\nevent: session-")
    finally:
        writer.close()


async def bench(port: int, live: int, count: int, connections: int, pid: int = 0) -> dict[str, object]:
    def registrations(n: int) -> tuple[list[str], list[bytes]]:
        ids = [uuid.uuid4().hex for _ in range(n)]
        return ids, [_request("POST", "/sessions", {"app_name": f"bench-{i % 50}", "session_id": sid, "pid": 4242})
                     for i, sid in enumerate(ids)]

    stop = asyncio.Event()
    seen = [0]
    stream = asyncio.create_task(_drain_stream(port, stop, seen))
    out: dict[str, object] = {"live": live, "connections": connections}
    live_ids, reqs = registrations(live)
    out["fill"] = await _run(port, reqs, connections, pid)
    steps: list[tuple[str, Callable[[], list[bytes]]]] = [
        ("register", lambda: registrations(count)[1]),
        ("status", lambda: [
            _request("PUT", f"/sessions/{sid}/status", {"status": ("running", "idle")[i % 2], "current_task": f"t{i}"})
            for i, sid in enumerate(live_ids[:count])
        ]),
    ]
    for name, make in steps:
        out[name] = await _run(port, make(), connections, pid)
    await asyncio.sleep(0.5)
    stop.set()
    await stream
    out["events_seen_by_a_stream_client"] = seen[0]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--live", type=int, default=10_000)
    ap.add_argument("--count", type=int, default=5_000)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-registrations-"))
    (work / "projects").mkdir()
    srv = Server(work / "projects", work / "db.sqlite", log=work / "server.log")
    srv.cmd += ["--stale-after-s", "3600", "--cleanup-after-s", "7200"]
    with srv.start():
        assert srv.proc is not None
        result = asyncio.run(bench(srv.port, args.live, args.count, args.connections, srv.proc.pid))
        result["server_rss_mib"] = round(srv.rss() / 1024, 1)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
