"""``python bench/replay_server.py STATS_FILE serve ARGS...``: ``sessionwatch
serve`` exactly as the command runs it, plus a thread that writes the hub's
own count of its replay window (``Hub.replay_bytes``, the bytes of every
message it keeps) to STATS_FILE every 50 ms, with the largest value seen.

The replay window's bound is a figure of DESIGN.md ("replay window memory,
whatever the events' size ≤ 64 MiB"); the server's resident memory also
moves with the allocator and everything else it holds, so the harness reads
the hub's count this way, from outside the product's code.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any


def main() -> int:
    stats = Path(sys.argv[1])
    import sessionwatch.server.app as appmod
    from sessionwatch import cli

    create_app = appmod.create_app

    def create_and_watch(settings: Any) -> Any:
        app = create_app(settings)
        hub = app.state.engine.hub

        def watch() -> None:
            peak = peak_events = 0
            while True:
                size, events = hub.replay_bytes, len(hub.buffer)
                if size > peak:
                    peak, peak_events = size, events
                tmp = stats.with_suffix(".tmp")
                tmp.write_text(json.dumps({
                    "replay_bytes": size, "events": events, "peak_bytes": peak,
                    "peak_events": peak_events, "limit_bytes": hub.buffer_bytes,
                }))  # fmt: skip
                os.replace(tmp, stats)
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True, name="bench-replay-stats").start()
        return app

    appmod.create_app = create_and_watch
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
