"""The README's first command on a bare install: `sessionwatch serve` with its
defaults (a fresh HOME: no ~/.claude yet, no database yet) answers /healthz and
stops cleanly on Ctrl-C; `sessionwatch scan --json` reads the fixture
transcripts. Stdlib only: it runs before the test extra is installed.

Usage: python .ci/smoke.py PATH/TO/sessionwatch
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("SESSIONWATCH_FIXTURES", REPO.parent / "shared" / "fixtures" / "claude-projects"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fail(message: str) -> None:
    print(f"FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    exe = sys.argv[1]
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIONWATCH_", "XDG_"))}
        env["HOME"] = home
        port = free_port()
        log = Path(home) / "serve.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([exe, "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    fail(f"`sessionwatch serve` exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    fail(f"`sessionwatch serve` did not answer /healthz within 30 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(20)
            if code != 0:
                fail(f"`sessionwatch serve` exited with {code} after Ctrl-C:\n{log.read_text()[-3000:]}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        print(f"sessionwatch serve: /healthz answered on port {port} with HOME={home}, stopped with 0")

        scan = subprocess.run(
            [exe, "scan", "--json", "--projects-dir", str(FIXTURES)], env=env, capture_output=True, timeout=120
        )
        if scan.returncode != 0:
            fail(f"`sessionwatch scan --json` exited with {scan.returncode}:\n{scan.stderr.decode()[-3000:]}")
        body = json.loads(scan.stdout)
        sessions = body["sessions"] if isinstance(body, dict) else body
        if not sessions:
            fail("`sessionwatch scan --json` found no session in the fixtures")
        print(f"sessionwatch scan --json: {len(sessions)} sessions in {FIXTURES}")


if __name__ == "__main__":
    main()
