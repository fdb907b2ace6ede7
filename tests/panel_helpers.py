"""Real parts for the Panel tests: a Panel server, a bokeh websocket client,
a small stand-in sessionwatch server for exact request counting, and waits
with deadlines."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx

from sessionwatch.clients.follow import StreamEvent, apply_event

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_APP = ROOT / "examples" / "panel_app.py"
#: Debian's Chromium; tests that drive it request the `chromium_bin` fixture, which fails when it is missing.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except Exception as error:  # noqa: BLE001 - keep polling; report the last error
            last_error = error
            value = None  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what or predicate}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        time.sleep(interval)


# --------------------------------------------------------------------------
# A stand-in sessionwatch server (tracker REST API + /stream), counting requests
# --------------------------------------------------------------------------


@dataclass
class FakeServer:
    """Implements the tracker half of the API contract in memory."""

    port: int = field(default_factory=free_port)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    heartbeat_bodies: list[list[str]] = field(default_factory=list)
    subscribers: list[queue.Queue[bytes | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    httpd: ThreadingHTTPServer | None = None
    #: Answer /stream with this status instead of a stream (None: stream).
    stream_status: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"null")

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                server.requests[f"GET {self.path.split('?')[0]}"] += 1
                if self.path.startswith("/stream") and server.stream_status is not None:
                    self._send(server.stream_status, {"error": "no stream today"})
                elif self.path.startswith("/stream"):
                    self._stream()
                elif self.path.startswith("/all"):
                    self._send(200, {"sessions": list(server.sessions.values()), "last_event_id": 0})
                else:
                    self._send(404, {"error": "unknown path"})

            def _stream(self) -> None:
                q: queue.Queue[bytes | None] = queue.Queue()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                with server.lock:
                    server.subscribers.append(q)
                    init = server._event("init", list(server.sessions.values()))
                try:
                    self._chunk(init)
                    while True:
                        item = q.get()
                        if item is None:
                            break
                        self._chunk(item)
                except OSError:
                    pass
                finally:
                    with server.lock:
                        if q in server.subscribers:
                            server.subscribers.remove(q)
                    self.close_connection = True

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def do_POST(self) -> None:
                path = self.path.split("?")[0]
                parts = path.strip("/").split("/")
                body = self._body()
                if path == "/sessions":
                    server.requests["POST /sessions"] += 1
                    sid = body["session_id"]
                    with server.lock:
                        existed = sid in server.sessions
                        session = {
                            "id": sid,
                            "source": "panel",
                            "project": body["app_name"],
                            "status": "idle",
                            "current_task": None,
                            "kill_requested": False,
                            "user": body.get("user_id"),
                            "pid": body.get("pid"),
                            "url": body.get("url"),
                        }
                        server.sessions[sid] = session
                        server._broadcast("session-updated" if existed else "session-created", [session])
                    self._send(200 if existed else 201, {"session_id": sid})
                elif path == "/heartbeats":
                    server.requests["POST /heartbeats"] += 1
                    ids = body["session_ids"]
                    with server.lock:
                        server.heartbeat_bodies.append(ids)
                        kill = [i for i in ids if server.sessions.get(i, {}).get("kill_requested")]
                        unknown = [i for i in ids if i not in server.sessions]
                    self._send(200, {"kill": kill, "unknown": unknown})
                elif len(parts) == 3 and parts[0] == "sessions" and parts[2] == "kill":
                    server.requests["POST /sessions/{id}/kill"] += 1
                    if not server.kill(parts[1]):
                        self._send(404, {"error": "unknown session"})
                    else:
                        self._send(200, {"kill_requested": True})
                else:
                    self._send(404, {"error": "unknown path"})

            def do_PUT(self) -> None:
                parts = self.path.strip("/").split("/")
                body = self._body()
                server.requests["PUT /sessions/{id}/status"] += 1
                with server.lock:
                    session = server.sessions.get(parts[1])
                    if session is None:
                        self._send(404, {"error": "unknown session"})
                        return
                    session["status"] = body["status"]
                    session["current_task"] = body.get("current_task")
                    server._broadcast("session-updated", [session])
                self._send(200, session)

            def do_DELETE(self) -> None:
                parts = self.path.strip("/").split("/")
                server.requests["DELETE /sessions/{id}"] += 1
                with server.lock:
                    found = server.sessions.pop(parts[1], None)
                    if found:
                        server._broadcast("session-deleted", [{"id": parts[1]}])
                self._send(200 if found else 404, {"deleted": bool(found)})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        with self.lock:
            for q in self.subscribers:
                q.put(None)
            self.subscribers.clear()

    def _event(self, kind: str, sessions: list[dict[str, Any]]) -> bytes:
        data = json.dumps({"type": kind, "sessions": sessions, "timestamp": time.time()})
        return f"event: {kind}\ndata: {data}\n\n".encode()

    def _broadcast(self, kind: str, sessions: list[dict[str, Any]]) -> None:
        data = self._event(kind, sessions)
        for q in self.subscribers:
            q.put(data)

    def kill(self, sid: str) -> bool:
        with self.lock:
            session = self.sessions.get(sid)
            if session is None:
                return False
            session["kill_requested"] = True
            self._broadcast("session-updated", [session])
        return True


@contextlib.contextmanager
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer().start()
    try:
        yield server
    finally:
        server.stop()


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


# --------------------------------------------------------------------------
# Panel servers and clients
# --------------------------------------------------------------------------


@dataclass
class PanelServe:
    """`panel serve examples/panel_app.py` as a subprocess."""

    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    app: Path = EXAMPLE_APP
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.app.stem}"

    def start(self) -> PanelServe:
        args = [
            sys.executable, "-m", "panel", "serve", str(self.app),
            "--port", str(self.port), "--address", "127.0.0.1",
            "--allow-websocket-origin", f"127.0.0.1:{self.port}", "--liveness",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, env=child_env(**self.env))
        process = self.process

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"panel serve exited with {process.returncode}")
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/liveness", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30, interval=0.1, what="panel serve")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class BokehClient:
    """A real websocket session opened with bokeh's `pull_session`.

    The client's IOLoop keeps running in a thread so that it answers the
    server's close frame like a browser does, and records the close code.
    """

    def __init__(self, url: str, session_id: str | None = None) -> None:
        self.url = url
        self.session_id = session_id
        self.closed = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        # Its own thread from the start: bokeh's client runs an IOLoop, which
        # cannot start on a thread that already runs one (Playwright's).
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"pull_session({url}) failed: {self._error!r}")

    def _run(self) -> None:
        import panel  # noqa: F401  (registers Panel's bokeh models for the client)
        from bokeh.client import pull_session

        try:
            self.session = pull_session(url=self.url, session_id=self.session_id)
        except BaseException as error:  # noqa: BLE001 - reported by __init__
            self._error = error
            self._ready.set()
            self.closed.set()
            return
        self._ready.set()
        try:
            self.session._connection.loop_until_closed()
        finally:
            self.closed.set()

    @property
    def id(self) -> str:
        return str(self.session.id)

    @property
    def close_code(self) -> int | None:
        # The tornado client connection under bokeh's wrapper (test-only peek).
        wrapper = self.session._connection._socket
        return None if wrapper is None else wrapper._socket.close_code  # type: ignore[no-any-return]

    @property
    def close_reason(self) -> str | None:
        wrapper = self.session._connection._socket
        return None if wrapper is None else wrapper._socket.close_reason  # type: ignore[no-any-return]

    def close(self) -> None:
        if not self.closed.is_set():
            with contextlib.suppress(Exception):
                loop = self.session._connection.io_loop
                loop.add_callback(self.session._connection.close)
            self.closed.wait(5)


# --------------------------------------------------------------------------
# Following /stream
# --------------------------------------------------------------------------


class StreamWatch:
    """Follows `/stream` and keeps the sessions it describes, for waits."""

    def __init__(self, base_url: str, query: str = "", headers: dict[str, str] | None = None) -> None:
        from tests.sse import SSEClient

        self.client = SSEClient(f"{base_url}/stream{query}", headers=headers or {}).start()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, dict[str, Any], float]] = []

    def _pump(self, timeout: float) -> None:
        try:
            item = self.client.events.get(timeout=timeout)
        except queue.Empty:
            return
        self.events.append((item.event, item.data, item.at))
        sessions = item.data.get("sessions", [])
        # The clients' own rule for keeping a copy of the sessions.
        apply_event(self.sessions, StreamEvent(item.event, item.id, sessions, item.data))

    def wait(self, predicate: Callable[[StreamWatch], T], timeout: float = 10.0, what: str = "") -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what or predicate} on /stream; "
                    f"sessions: {json.dumps(self.sessions)[:1500]}"
                )
            self._pump(min(left, 0.1))

    def settle(self, seconds: float) -> None:
        """Take in whatever arrives during `seconds` (for asserting absence)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._pump(min(left, 0.1))

    def wait_session(
        self, sid: str, check: Callable[[dict[str, Any]], bool] = lambda s: True, timeout: float = 10.0, what: str = ""
    ) -> dict[str, Any]:
        def found(watch: StreamWatch) -> dict[str, Any] | None:
            session = watch.sessions.get(sid)
            return session if session is not None and check(session) else None

        return self.wait(found, timeout, what or f"session {sid}")

    def wait_gone(self, sid: str, timeout: float = 10.0) -> float:
        """Wait for `sid` to be deleted; return when (time.time())."""

        def gone(watch: StreamWatch) -> float | None:
            for event, data, at in watch.events:
                if event == "session-deleted" and any(s["id"] == sid for s in data["sessions"]):
                    return at
            return None

        return self.wait(gone, timeout, f"session {sid} deleted")

    def close(self) -> None:
        self.client.stop()


@contextlib.contextmanager
def threaded_panel(apps: dict[str, Any]) -> Iterator[str]:
    """Serve `apps` with `pn.serve(threaded=True)` in this process; yield the base URL."""
    import panel as pn

    port = free_port()
    thread = pn.serve(
        apps,
        port=port,
        address="127.0.0.1",
        websocket_origin=[f"127.0.0.1:{port}"],
        threaded=True,
        show=False,
        verbose=False,
    )

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout=20, what="the Panel server to listen")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        thread.stop()
