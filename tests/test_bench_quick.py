"""The benchmark harness must keep working: run its smoke pass and check it
prints the table. Figures are reported by the harness, never asserted here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_smoke_runs_and_prints_the_table() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["PYTHON"] = sys.executable  # bench/run uses the interpreter that runs the tests
    r = subprocess.run(
        [str(REPO / "bench" / "run"), "--smoke", "--no-write"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "| figure | measured | target | met? |" in r.stdout
    for figure in ("append → client", "memory per SSE connection", "cold index",
                   "one line appended", "warm restart", "fan-out", "tracker heartbeats", "kill latency",
                   "tracker registrations with", "replay window memory", "`POST /managed`"):
        assert figure in r.stdout, figure
    assert "failed:" not in r.stdout
