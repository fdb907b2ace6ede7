"""Agents: ``python -m bench.agents [--appends N] [--sessions M] [--replicas] [--json]``.

A ``sessionwatch serve`` and one ``sessionwatch agent`` (its own HOME and
projects folder), each its own process, and a ``/stream`` client of the
server in this process. Prints:

- **latency**: a transcript line appended on the agent's machine → the
  ``session-updated`` carrying it at the central stream client (N appends,
  one at a time; p50/p90/max); the same for N PreToolUse hook events posted
  to the agent's receiver;
- **catch-up**: M new sessions written while the server is down (the agent
  keeps them in its queue), then the server started again: the time from its
  start until ``/all`` shows all M.

``--replicas``: the same through three ``serve`` replicas on one PostgreSQL
database (a throwaway server, tests/pg.py) behind nginx (round robin, the
replicas example of deploy/nginx.conf): the agent pushes through nginx, so its
batches land on every replica in turn, and the stream client is on one of
them; "the server down" is nginx stopped, "started again" nginx started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import median, pct  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _line(sid: str, text: str) -> str:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    entry = {"type": "user", "sessionId": sid, "cwd": "/work/bench", "uuid": str(uuid.uuid4()), "timestamp": now,
             "message": {"role": "user", "content": text}}  # fmt: skip
    return json.dumps(entry) + "\n"


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)
    return value


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _drain(events: Queue[tuple[float, dict[str, Any]]]) -> None:
    """Forget what the stream client received so far (before a timed change)."""
    while True:
        try:
            events.get_nowait()
        except Empty:
            return


def _stream(url: str, out: Queue[tuple[float, dict[str, Any]]], stop: threading.Event) -> None:
    with httpx.Client(timeout=httpx.Timeout(5, read=60)) as client, client.stream("GET", url + "/stream") as r:
        for line in r.iter_lines():
            if stop.is_set():
                return
            if line.startswith("data: "):
                out.put((time.time(), json.loads(line[6:])))


class Central:
    """Where the agent pushes: one ``serve`` on SQLite, or (``replicas``) three
    on one PostgreSQL database behind nginx."""

    def __init__(self, root: Path, env: dict[str, str], replicas: bool) -> None:
        self.root = root
        self.env = env
        self.replicas = replicas
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cluster: Any = None
        self.nginx: Any = None
        self.url = ""

    def _serve(self, port: int, db: str, k: int) -> list[str]:
        (self.root / f"central-{k}").mkdir(exist_ok=True)
        return [sys.executable, "-m", "sessionwatch", "serve", "--port", str(port), "--db", db,
                "--projects-dir", str(self.root / f"central-{k}"), "--claude-dir", str(self.root / f"claude-{k}")]  # fmt: skip

    def start(self) -> str:
        if not self.replicas:
            port = _port()
            self.cmds = [self._serve(port, str(self.root / "server.db"), 0)]
            self.url = f"http://127.0.0.1:{port}"
            self._up()
            return self.url
        from tests.pg import Cluster
        from tests.test_nginx import Nginx
        from tests.test_replicas import replicas_conf

        self.cluster = Cluster().start()
        db = self.cluster.new_database()
        ports = [_port() for _ in range(3)]
        self.cmds = [self._serve(port, db, k) for k, port in enumerate(ports)]
        self._up(ports)
        nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        self.nginx = Nginx(nginx_bin, self.root / "nginx", None, replicas_conf(ports)).start()
        self.url = self.nginx.url
        return self.url

    def _up(self, ports: list[int] | None = None) -> None:
        for cmd in self.cmds:
            self.procs.append(subprocess.Popen(cmd, env=self.env, stderr=subprocess.DEVNULL))
        for cmd in self.cmds:
            url = f"http://127.0.0.1:{cmd[cmd.index('--port') + 1]}"
            _wait(lambda url=url: _healthy(url), 60, "the server")

    def cut(self) -> None:
        """The agent can no longer reach it."""
        if self.nginx is not None:
            self.nginx.stop()
        else:
            self._stop()

    def let_back(self) -> None:
        if self.nginx is not None:
            self.nginx.start()
        else:
            self.procs = [subprocess.Popen(cmd, env=self.env, stderr=subprocess.DEVNULL) for cmd in self.cmds]

    def _stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    def close(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        self._stop()
        if self.cluster is not None:
            self.cluster.stop()


def run(appends: int, sessions: int, replicas: bool = False) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        projects = root / "home" / ".claude" / "projects"
        folder = projects / "-work-bench"
        folder.mkdir(parents=True)
        ap = _port()
        central = Central(root, env, replicas)
        agent: subprocess.Popen[bytes] | None = None
        try:
            url = central.start()
            agent = subprocess.Popen(
                [sys.executable, "-m", "sessionwatch", "agent", "--server", url, "--port", str(ap), "--host-name", "bench",
                 "--projects-dir", str(projects), "--queue", str(root / "queue.db")],
                env={**env, "HOME": str(root / "home")}, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            _wait(lambda: _healthy(f"http://127.0.0.1:{ap}"), 30, "the agent")
            sid = str(uuid.uuid4())
            transcript = folder / f"{sid}.jsonl"
            transcript.write_text(_line(sid, "first"))
            _wait(lambda: any(s["id"] == sid for s in httpx.get(url + "/all").json()["sessions"]), 30, "the first session")
            events: Queue[tuple[float, dict[str, Any]]] = Queue()
            stop = threading.Event()
            threading.Thread(target=_stream, args=(url, events, stop), daemon=True).start()
            events.get(timeout=10)  # init
            latencies = []
            for i in range(1, appends + 1):
                _drain(events)
                t0 = time.time()
                with transcript.open("a") as f:
                    f.write(_line(sid, f"prompt {i}"))
                while True:
                    at, data = events.get(timeout=10)
                    if any(s["id"] == sid and s["message_count"] == i + 1 for s in data["sessions"]):
                        latencies.append((at - t0) * 1000)
                        break
                time.sleep(0.05)
            # hook events posted to the agent's receiver -> the central stream client
            hook_lat = []
            hsid = str(uuid.uuid4())
            hooks_url = f"http://127.0.0.1:{ap}/hooks"
            httpx.post(hooks_url, json={"hook_event_name": "SessionStart", "session_id": hsid, "cwd": "/bench", "source": "startup"})
            for i in range(appends):
                _drain(events)
                t0 = time.time()
                marker = f"bm{i}"
                body = {"hook_event_name": "PreToolUse", "session_id": hsid, "cwd": "/bench", "tool_name": marker,
                        "tool_use_id": f"toolu_{i}", "tool_input": {}}  # fmt: skip
                assert httpx.post(hooks_url, json=body).status_code == 200
                while True:
                    at, data = events.get(timeout=10)
                    if any(s["id"] == hsid and marker in (s.get("status_reason") or "") for s in data["sessions"]):
                        hook_lat.append((at - t0) * 1000)
                        break
                time.sleep(0.05)
            stop.set()

            # catch-up: the server down while the machine goes on
            central.cut()
            new = [str(uuid.uuid4()) for _ in range(sessions)]
            for n in new:
                (folder / f"{n}.jsonl").write_text(_line(n, "while the server was down"))
            time.sleep(2)  # the agent reads them and queues them
            t0 = time.monotonic()
            central.let_back()
            want = set(new)
            _wait(lambda: want <= {s["id"] for s in httpx.get(url + "/all", timeout=5).json()["sessions"]} if _healthy(url) else False,
                  300, "the queued sessions")  # fmt: skip
            catch_up = time.monotonic() - t0
        finally:
            if agent is not None and agent.poll() is None:
                agent.send_signal(signal.SIGINT)
                try:
                    agent.wait(15)
                except subprocess.TimeoutExpired:
                    agent.kill()
            central.close()
            shutil.rmtree(root, ignore_errors=True)
    return {
        "appends": appends,
        "p50_ms": median(latencies),
        "p90_ms": pct(latencies, 90),
        "max_ms": max(latencies),
        "hook_p50_ms": median(hook_lat),
        "hook_p90_ms": pct(hook_lat, 90),
        "hook_max_ms": max(hook_lat),
        "sessions_queued": sessions,
        "catch_up_s": catch_up,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--appends", type=int, default=50)
    p.add_argument("--sessions", type=int, default=2000)
    p.add_argument("--json", action="store_true", help="print the result as one JSON line (bench/run)")
    p.add_argument("--replicas", action="store_true", help="three replicas on PostgreSQL behind nginx")
    args = p.parse_args()
    r = run(args.appends, args.sessions, args.replicas)
    if args.json:
        print(json.dumps(r))
        return
    print(
        f"line appended on the agent's machine -> central stream client: p50 {r['p50_ms']:.0f} ms, "
        f"p90 {r['p90_ms']:.0f} ms, max {r['max_ms']:.0f} ms ({r['appends']} appends)"
    )
    print(
        f"hook event posted to the agent -> central stream client: p50 {r['hook_p50_ms']:.0f} ms, "
        f"p90 {r['hook_p90_ms']:.0f} ms, max {r['hook_max_ms']:.0f} ms ({r['appends']} events)"
    )
    print(f"{r['sessions_queued']} sessions queued while the server was down: all on /all {r['catch_up_s']:.1f} s after it started")


if __name__ == "__main__":
    main()
