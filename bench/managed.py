"""``POST /managed`` → ``session-created``: ``python -m bench.managed [--starts N]``.

A ``sessionwatch serve`` whose environment is the Claude Code CLI's clean one
(a temporary HOME, the scripted fake Messages API of tests/fakeapi.py on
127.0.0.1), one ``/stream`` client, then N managed sessions started one after
another with the real CLI the Claude Agent SDK bundles (``--claude-bin``).
For each: the time from the POST's start to the ``session-created`` event at
the client (the row carries the id the CLI is started with, ``--session-id``),
and to the first event that shows the CLI's own ``system/init`` (the row's
managed state ``running``: the process started and read the prompt, so
process start is included); then the session's turn ends and it is stopped
before the next start, so each start meets the same server. One warm-up start
is not counted. As a reference, alternating with those starts (so under the
same load), the same CLI is spawned directly, without sessionwatch, and timed
to its ``system/init``: what the process start itself costs. sessionwatch's
own share of the path to init is taken from the session's log lines (stamped
by the server): POST → the process spawned, plus the init line read → its
event at the client. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import Server, median, pct
from tests.claude_cli import ClaudeHome, claude_bin, clean_env
from tests.fakeapi import FakeAPI, Turn, Usage
from tests.sse import SSEClient


class ManagedServer(Server):
    """The bench's server, with the CLI's environment and the managed flags."""

    def __init__(self, where: ClaudeHome, db: Path, env: dict[str, str], log: Path) -> None:
        super().__init__(where.projects_dir, db, log=log, keepalive_s=5)
        self.cmd += ["--claude-bin", str(claude_bin()), "--idle-after-s", "600"]
        self.env = {**env, "PATH": os.path.dirname(sys.executable) + ":" + env["PATH"],
                    "PYTHONPATH": os.environ.get("PYTHONPATH", "")}  # fmt: skip

    def start(self, wait: bool = True, timeout: float = 120.0) -> ManagedServer:
        import subprocess

        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=out, env=self.env)
        if wait:
            self.wait_healthy(timeout)
        return self


def until(stream: SSEClient, sid: str, test: Any, timeout: float = 30.0) -> float:
    """The receipt time of the first event about ``sid`` that passes ``test``."""
    deadline = time.monotonic() + timeout
    while True:
        e = stream.next(timeout=max(0.01, deadline - time.monotonic()))
        for s in e.data.get("sessions") or []:
            if s.get("id") == sid and test(e.event, s):
                return e.at


def direct_init(where: ClaudeHome, env: dict[str, str]) -> float:
    """The same CLI started directly (no sessionwatch): ms from spawn to its
    ``system/init`` line, the reference for what the process start costs."""
    import subprocess
    import uuid

    cmd = [str(claude_bin()), "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
           "--permission-prompt-tool", "stdio", f"--session-id={uuid.uuid4()}"]  # fmt: skip
    t = time.time()
    proc = subprocess.Popen(cmd, cwd=where.cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    # what a managed session writes first: the SDK's initialize request, then the prompt
    proc.stdin.write(b'{"type":"control_request","request_id":"init_bench","request":{"subtype":"initialize","hooks":null}}\n')
    proc.stdin.write(b'{"type":"user","message":{"role":"user","content":"hi"},"parent_tool_use_id":null,"session_id":""}\n')
    proc.stdin.flush()
    try:
        for line in proc.stdout:
            if b'"subtype":"init"' in line:
                return (time.time() - t) * 1000
        raise RuntimeError("the CLI ended before its system/init")
    finally:
        proc.kill()
        proc.wait()


def run(starts: int) -> dict[str, Any]:
    created: list[float] = []
    init: list[float] = []
    direct: list[float] = []
    #: sessionwatch's own share of the path to init: POST → process spawned, plus init read → event received
    own: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        where = ClaudeHome.create(root)
        where.projects_dir.mkdir(parents=True)
        with FakeAPI([Turn.text(f"answer {i}", usage=Usage(100, 10)) for i in range(2 * starts + 2)]) as api:
            env = clean_env(where.home, api.url)
            with ManagedServer(where, root / "db.sqlite", env, root / "server.log").start() as srv:
                stream = SSEClient(srv.url + "/stream").start()
                assert stream.next().event == "init"
                with httpx.Client(base_url=srv.url, timeout=30) as http:
                    for i in range(starts + 1):
                        t = time.time()
                        r = http.post("/managed", json={"prompt": f"hello {i}", "cwd": str(where.cwd), "name": f"bench-{i}"})
                        assert r.status_code == 201, r.text
                        sid = r.json()["session_id"]
                        at_created = until(stream, sid, lambda ev, s: ev == "session-created")
                        at_init = until(stream, sid, lambda ev, s: (s.get("managed") or {}).get("state") == "running")
                        until(stream, sid, lambda ev, s: s.get("status") == "waiting")
                        logs = http.get(f"/sessions/{sid}/logs", params={"kind": "system"}).json()["logs"]
                        spawned = next(x["ts"] for x in logs if x["source"] == "system" and x["content"].startswith("started:"))
                        read_init = next(x["ts"] for x in logs if x["source"] == "stdout")
                        if i > 0:  # the first start warms the page cache up
                            created.append((at_created - t) * 1000)
                            init.append((at_init - t) * 1000)
                            own.append(((spawned - t) + (at_init - read_init)) * 1000)
                        stopped = http.post(f"/sessions/{sid}/stop", json={})
                        assert stopped.status_code == 200, stopped.text
                        if i > 0:  # the reference, alternating with the measured starts (same load)
                            direct.append(direct_init(where, env))
                stream.stop()
            api.check()
    return {
        "starts": len(created),
        "created_p50_ms": round(median(created), 1), "created_p95_ms": round(pct(created, 95), 1),
        "created_max_ms": round(max(created), 1),
        "init_p50_ms": round(median(init), 1), "init_p95_ms": round(pct(init, 95), 1), "init_max_ms": round(max(init), 1),
        "direct_p50_ms": round(median(direct), 1), "direct_p95_ms": round(pct(direct, 95), 1),
        "own_p50_ms": round(median(own), 1), "own_p95_ms": round(pct(own, 95), 1),
    }  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--starts", type=int, default=10)
    a = p.parse_args()
    print(json.dumps(run(a.starts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
