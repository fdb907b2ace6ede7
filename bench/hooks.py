"""Hook event → client: ``python -m bench.hooks [--clients N] [--events M] [--rate R]``.

A ``sessionwatch serve`` over an empty projects folder, N ``/stream`` clients
(bench/sseclients.py, their own process), then M PreToolUse events for one
session POSTed to ``/hooks`` at R per second, each naming a tool
``bm:<seq>:<send time ns>``: the status reason ``tool: bm:...`` carries the
marker to every client, which records when it arrived. Prints the latency
from the POST's start to each client's receipt (p50/p99/max) and the POST's
own round trip (the hook's time, Claude Code's wait).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import REPO, Server, median, pct


def run(clients: int, events: int, rate: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "projects").mkdir()
        with Server(root / "projects", root / "db.sqlite", log=root / "server.log").start() as srv:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.sseclients", str(srv.port), str(clients)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, text=True,
            )
            assert proc.stdin is not None and proc.stdout is not None
            ready = proc.stdout.readline().split()
            connected = int(ready[1]) if len(ready) > 1 else 0
            posts: list[float] = []
            with httpx.Client(base_url=srv.url, timeout=5) as http:
                sid = "bench-hooks-session"
                http.post("/hooks", json={"hook_event_name": "SessionStart", "session_id": sid, "cwd": "/bench", "source": "startup"})
                for seq in range(events):
                    t = time.time_ns()
                    body = {
                        "hook_event_name": "PreToolUse", "session_id": sid, "cwd": "/bench",
                        "tool_name": f"bm:{seq}:{t}", "tool_use_id": f"toolu_{seq}", "tool_input": {},
                    }
                    r = http.post("/hooks", json=body)
                    posts.append((time.time_ns() - t) / 1e6)
                    assert r.status_code == 200, r.text
                    time.sleep(max(0.0, 1 / rate - posts[-1] / 1000))
            time.sleep(1.0)
            proc.stdin.write("stop\n")
            proc.stdin.flush()
            out = proc.stdout.readline()
            proc.wait(30)
    result = json.loads(out) if out else {}
    lat: list[float] = result.get("latencies_ms", [])
    return {
        "clients": connected, "events": events, "receipts": len(lat), "expected": events * connected,
        "p50_ms": round(median(lat), 2) if lat else None, "p99_ms": round(pct(lat, 99), 2) if lat else None,
        "max_ms": round(max(lat), 2) if lat else None,
        "post_p50_ms": round(median(posts), 2), "post_p99_ms": round(pct(posts, 99), 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--events", type=int, default=200)
    p.add_argument("--rate", type=float, default=4.0, help="events per second (4, as the append benchmark)")
    a = p.parse_args()
    print(json.dumps(run(a.clients, a.events, a.rate)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
