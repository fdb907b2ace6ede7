"""Kill latency: ``python -m bench.kill [--quick]``.

A real sessionwatch server (subprocess), the example Panel app served in this
process, real bokeh websocket sessions; for each sample: open a session, wait
for it on ``/stream``, ``POST /sessions/{id}/kill``, and time until the
websocket is closed with code 1001. Prints one summary line (the harness
takes the last line for its table).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import Server, median, pct  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    samples = 5 if args.quick else 30
    work = Path(tempfile.mkdtemp(prefix="bench-kill-"))
    (work / "projects").mkdir()
    with Server(work / "projects", work / "db.sqlite", debounce_ms=50, log=work / "server.log").start() as srv:
        os.environ["SESSIONWATCH_URL"] = srv.url
        os.environ["SESSIONWATCH_HEARTBEAT_S"] = "1"
        os.environ.pop("SESSIONWATCH_TOKEN", None)
        os.environ.pop("SESSIONWATCH_TRACKER_DB", None)
        # the real websocket client and in-process Panel server of the tests
        from tests.panel_helpers import BokehClient, StreamWatch, threaded_panel

        closed_ms: list[float] = []
        gone_ms: list[float] = []
        watch = StreamWatch(srv.url, "?source=panel")
        try:
            with threaded_panel({"panel_app": str(REPO / "examples" / "panel_app.py")}) as base:
                for _ in range(samples):
                    client = BokehClient(f"{base}/panel_app")
                    try:
                        sid = client.id
                        watch.wait_session(sid, what="registration")
                        started = time.monotonic()
                        httpx.post(f"{srv.url}/sessions/{sid}/kill", json={"by": "bench"}).raise_for_status()
                        if not client.closed.wait(10):
                            raise RuntimeError("websocket not closed within 10 s")
                        closed_ms.append((time.monotonic() - started) * 1000)
                        if client.close_code != 1001:
                            raise RuntimeError(f"closed with {client.close_code}, not 1001")
                        watch.wait_gone(sid, timeout=10)
                        gone_ms.append((time.monotonic() - started) * 1000)
                    finally:
                        client.close()
        finally:
            watch.close()
    print(
        f"websocket closed p50 {median(closed_ms):.0f} ms / p99 {pct(closed_ms, 99):.0f} ms / "
        f"max {max(closed_ms):.0f} ms; off the stream p50 {median(gone_ms):.0f} ms "
        f"({len(closed_ms)} kills, default settings)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
