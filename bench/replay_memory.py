"""Replay window memory: ``python -m bench.replay_memory [--quick] [--json]``.

The attack of issue 8 (item 6): a real server (subprocess) with 300 Panel
sessions, each with a current task, one unfiltered ``/stream`` client reading
everything, then 4,096 ``POST /refresh``. Each refresh is an event carrying
every session, and the replay window keeps the last events for clients that
resume. Reports the server's resident memory (VmRSS) before the refreshes,
right after them, and again after a few seconds of quiet (the memory stays as
long as the window holds it). Before the byte bound the window kept 4,096
whole events whatever their size: about 2 GB.

The server runs through ``bench/replay_server.py``, which also reports the
hub's own count of the bytes its window keeps (``Hub.replay_bytes``), the
figure DESIGN.md bounds at 64 MiB; its peak over the run is reported.

Prints one summary line (the harness convention: the last line is the
figure), or with ``--json`` one JSON object (what ``bench/run`` reads).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import Server  # noqa: E402


class Drain(threading.Thread):
    """An unfiltered /stream client that reads and counts every byte."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.received = 0
        self.refreshes = 0
        self._tail = b""

    def run(self) -> None:
        try:
            while chunk := self.sock.recv(1 << 20):
                self.received += len(chunk)
                data = self._tail + chunk
                self.refreshes += data.count(b"event: refresh\n")
                self._tail = data[-32:]
        except OSError:
            pass


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="512 refreshes instead of 4,096")
    ap.add_argument("--sessions", type=int, default=300)
    ap.add_argument("--refreshes", type=int, default=None)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--settle-s", type=float, default=5.0, help="quiet time before the last RSS read")
    args = ap.parse_args()
    refreshes = args.refreshes or (512 if args.quick else 4096)
    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    (work / "projects").mkdir()
    stats = work / "replay-stats.json"
    srv = Server(work / "projects", work / "db.sqlite", log=work / "server.log")
    # the same `serve`, run by a wrapper that reports the hub's window size
    srv.cmd[1:3] = [str(REPO / "bench" / "replay_server.py"), str(stats)]
    with srv.start():
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            for i in range(args.sessions):
                r = c.post("/sessions", json={
                    "app_name": f"reports-{i % 17}", "user_id": f"user{i}@example.org",
                    "host": f"worker-{i % 8}.example.org", "pid": 1000 + i,
                    "url": f"http://worker-{i % 8}.example.org:5006/reports?session={i}",
                })  # fmt: skip
                r.raise_for_status()
                sid = r.json()["session_id"]
                c.put(f"/sessions/{sid}/status",
                      json={"status": "running", "current_task": f"Exporting quarter {i} to parquet"}
                      ).raise_for_status()  # fmt: skip
            drain = Drain(srv.port)
            drain.start()
            before = srv.rss()
            started = time.monotonic()
            for _ in range(refreshes):
                c.post("/refresh").raise_for_status()
            took = time.monotonic() - started
            deadline = time.monotonic() + 120
            while drain.refreshes < refreshes and time.monotonic() < deadline:
                time.sleep(0.05)
            after = srv.rss()
            time.sleep(args.settle_s)
            settled = srv.rss()
            event_kib = drain.received / max(drain.refreshes, 1) / 1024
            window = json.loads(stats.read_text()) if stats.exists() else {}
        drain.sock.close()
    if args.json:
        print(json.dumps({
            "sessions": args.sessions, "refreshes": refreshes, "seconds": round(took, 1),
            "event_kib": round(event_kib, 1), "received": drain.refreshes,
            "rss_before_mib": round(before / 1024, 1), "rss_after_mib": round(after / 1024, 1),
            "rss_settled_mib": round(settled / 1024, 1), **window,
        }))  # fmt: skip
        return 0
    print(
        f"{args.sessions} Panel sessions, {refreshes} POST /refresh ({took:.0f} s, "
        f"~{event_kib:.0f} KiB per refresh event, {drain.refreshes} received): "
        f"RSS {before / 1024:.0f} MiB before, {after / 1024:.0f} MiB after, "
        f"{settled / 1024:.0f} MiB {args.settle_s:g} s later; the hub's window peaked at "
        f"{window.get('peak_bytes', 0) / 2**20:.1f} MiB ({window.get('peak_events', 0)} events)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
