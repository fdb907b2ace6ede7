"""Tracker load from its own process: ``python -m bench.tracker_client URL SECONDS``.

Registers sessions, then for SECONDS each: ``POST /heartbeats`` batches (4
connections, 100 ids per request) and single ``POST /sessions/{id}/heartbeat``
(8 connections). Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx


async def main() -> None:
    url, seconds = sys.argv[1], float(sys.argv[2])
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as c:
        ids = []
        for i in range(200):
            r = await c.post("/sessions", json={"app_name": f"bench-{i}"})
            r.raise_for_status()
            ids.append(r.json()["session_id"])

        async def batches(k: int, stats: list[int], lat: list[float], end: float) -> None:
            while time.monotonic() < end:
                chunk = ids[(k * 50) % 200:][:100] or ids[:100]
                t = time.perf_counter()
                r = await c.post("/heartbeats", json={"session_ids": chunk})
                lat.append((time.perf_counter() - t) * 1000)
                if r.status_code == 200:
                    stats[0] += len(chunk)
                else:
                    stats[1] += 1
                k += 1

        async def singles(k: int, stats: list[int], lat: list[float], end: float) -> None:
            while time.monotonic() < end:
                sid = ids[k % len(ids)]
                t = time.perf_counter()
                r = await c.post(f"/sessions/{sid}/heartbeat")
                lat.append((time.perf_counter() - t) * 1000)
                if r.status_code == 200:
                    stats[0] += 1
                else:
                    stats[1] += 1
                k += 7

        port = int(url.rsplit(":", 1)[1])

        async def raw_singles(k: int, stats: list[int], lat: list[float], end: float) -> None:
            # A lean keep-alive HTTP/1.1 client: httpx itself tops out near
            # 500 requests/s per process here, which would measure the client.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                while time.monotonic() < end:
                    sid = ids[k % len(ids)]
                    k += 7
                    t = time.perf_counter()
                    writer.write(f"POST /sessions/{sid}/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 "Content-Length: 0\r\n\r\n".encode())
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for h in head.split(b"\r\n"):
                        if h.lower().startswith(b"content-length:"):
                            length = int(h.split(b":", 1)[1])
                    await reader.readexactly(length)
                    lat.append((time.perf_counter() - t) * 1000)
                    if head.startswith(b"HTTP/1.1 200"):
                        stats[0] += 1
                    else:
                        stats[1] += 1
            finally:
                writer.close()

        out = {}
        for name, fn, conc in (("batch", batches, 4), ("single", singles, 8),
                               ("single_raw", raw_singles, 8)):
            stats, lat = [0, 0], []  # type: ignore[var-annotated]
            t0 = time.monotonic()
            end = t0 + seconds
            await asyncio.gather(*(fn(i, stats, lat, end) for i in range(conc)))
            dt = time.monotonic() - t0
            lat.sort()
            out[name] = {"heartbeats": stats[0], "errors": stats[1], "seconds": dt,
                         "per_s": stats[0] / dt, "requests": len(lat),
                         "p50_ms": lat[len(lat) // 2] if lat else None,
                         "p99_ms": lat[int(len(lat) * 0.99)] if lat else None}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
