"""N SSE clients in one process: ``python -m bench.sseclients PORT N [--path /stream]``.

Each client is one raw HTTP/1.0 connection to ``/stream`` (no chunked framing, so
the body is the event stream itself). Prints ``READY <n>`` once every client got
its ``init`` event, then counts events and records, for every marker title
``bm:<seq>:<write time ns>`` (or status reason ``tool: bm:...``), when it arrived. On a line ``stop`` on stdin it
prints one JSON line of results and exits.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import resource
import sys
import time

#: a transcript's marker title, or a hook event's (bench/hooks.py: PreToolUse of a tool named so)
MARK = re.compile(rb'"(?:title|status_reason)":"(?:tool: )?bm:(\d+):(\d+)"')


class Client:
    __slots__ = ("seen", "events", "bytes", "ready", "ok")

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.events = 0
        self.bytes = 0
        self.ready = False
        self.ok = True


async def run_client(port: int, path: str, c: Client, lat: list[float], ready: asyncio.Event,
                     counter: list[int], n: int, stop: asyncio.Event) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    except OSError:
        c.ok = False
        counter[1] += 1
        if counter[0] + counter[1] >= n:
            ready.set()
        return
    writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    buf = b""
    header_done = False
    try:
        while not stop.is_set():
            chunk = await reader.read(65536)
            if not chunk:
                break
            now = time.time_ns()
            c.bytes += len(chunk)
            buf += chunk
            if not header_done:
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    continue
                buf = buf[i + 4:]
                header_done = True
            while True:
                i = buf.find(b"\n\n")
                if i < 0:
                    break
                msg, buf = buf[:i], buf[i + 2:]
                if b"data:" not in msg:
                    continue
                c.events += 1
                if not c.ready:
                    c.ready = True
                    counter[0] += 1
                    if counter[0] + counter[1] >= n:
                        ready.set()
                    continue
                for m in MARK.finditer(msg):
                    seq = int(m.group(1))
                    if seq not in c.seen:
                        c.seen.add(seq)
                        lat.append((now - int(m.group(2))) / 1e6)
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
    if not c.ready:
        c.ok = False


async def main() -> None:
    port, n = int(sys.argv[1]), int(sys.argv[2])
    path = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--path" else "/stream"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lat: list[float] = []
    counter = [0, 0]
    ready = asyncio.Event()
    stop = asyncio.Event()
    clients = [Client() for _ in range(n)]
    tasks = []
    t0 = time.monotonic()
    sem_batch = 200
    for i, c in enumerate(clients):
        tasks.append(asyncio.create_task(run_client(port, path, c, lat, ready, counter, n, stop)))
        if i % sem_batch == sem_batch - 1:
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(ready.wait(), timeout=max(30.0, n / 50))
    except asyncio.TimeoutError:
        pass
    gc.collect()
    gc.freeze()
    print(f"READY {counter[0]} {counter[1]} {time.monotonic() - t0:.2f}", flush=True)
    loop = asyncio.get_running_loop()
    r = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(r), sys.stdin)
    mark_events = 0
    while True:
        line = await r.readline()
        if not line or line.strip() == b"stop":
            break
        if line.strip() == b"count":
            print(json.dumps({"events": sum(c.events for c in clients)}), flush=True)
        if line.strip() == b"mark":
            mark_events = sum(c.events for c in clients)
    result = {
        "connected": counter[0], "failed": counter[1],
        "events": sum(c.events for c in clients), "events_since_mark": sum(c.events for c in clients) - mark_events,
        "bytes": sum(c.bytes for c in clients), "latencies_ms": lat,
        "still_open": sum(1 for t in tasks if not t.done()),
    }
    print(json.dumps(result), flush=True)
    stop.set()
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    asyncio.run(main())
