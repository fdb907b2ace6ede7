"""``--webhook URL`` (webhooks.py): one POST per transition, to a real receiver.

The receiver is a small HTTP server in the test. Statuses the hooks bring
(needs_approval, failed, ended, "budget reached") come from another branch:
they are driven here with Session structs through a Hub, the fields that
branch adds (``status_reason``, ``pending``) on a subclass. Against a real
``sessionwatch serve``: a Claude transcript appended in tmp projects
(running → waiting) and Panel sessions through the tracker API (which never
make a webhook transition).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from sessionwatch.hub.core import Hub
from sessionwatch.metrics import Metrics
from sessionwatch.model import Session
from sessionwatch.webhooks import Webhooks, body, transitions

from .conftest import Server, free_port, wait_for
from .sessions import session


class Pending(msgspec.Struct):
    id: str
    kind: str
    tool: str
    summary: str
    since: str
    answerable: bool


class Hooked(Session, frozen=True):
    """A Session with the fields the hooks branch adds (DESIGN.md, Session)."""

    status_reason: str | None = None
    pending: Pending | None = None


def hooked(sid: str, **kw: Any) -> Hooked:
    base = msgspec.structs.asdict(session(sid))
    base.update(kw)
    return Hooked(**base)


PENDING = Pending("p1", "permission", "Write", "write notes.txt", "2026-11-22T08:00:00Z", True)


class Receiver:
    """Records every POST; answers ``codes`` in turn (then 200), or holds while ``hold`` is unset."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.codes: list[int] = []
        self.hold: threading.Event | None = None
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with rec.lock:
                    code = rec.codes.pop(0) if rec.codes else 200
                    rec.bodies.append(json.loads(raw))
                if rec.hold is not None:
                    rec.hold.wait(30)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def got(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.bodies)

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


# --- which changes send -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "kinds"),
    [
        ({"status": "running"}, {"status": "needs_approval", "pending": PENDING}, ["needs_approval"]),
        ({"status": "running"}, {"status": "waiting"}, ["waiting"]),
        ({"status": "running"}, {"status": "failed", "status_reason": "API error 529"}, ["failed"]),
        ({"status": "waiting"}, {"status": "ended", "status_reason": "exit"}, ["ended"]),
        ({"status": "running"}, {"status": "running", "status_reason": "budget reached ($5.00)"}, ["budget_reached"]),
        ({"status": "running"}, {"status": "waiting", "status_reason": "budget reached"}, ["waiting", "budget_reached"]),
        # unrelated updates: nothing
        ({"status": "running"}, {"status": "running", "message_count": 5, "cost_usd": 1.0}, []),
        ({"status": "needs_approval", "pending": PENDING}, {"status": "needs_approval", "pending": PENDING, "cost_usd": 2.0}, []),
        ({"status": "idle"}, {"status": "waiting"}, []),  # not after a turn
        ({"status": "waiting"}, {"status": "idle"}, []),
        ({"status": "idle"}, {"status": "running"}, []),
        ({"status": "running", "status_reason": "budget reached"}, {"status": "running", "status_reason": "budget reached", "title": "t"}, []),
        # first seen
        (None, {"status": "needs_approval", "pending": PENDING}, ["needs_approval"]),
        (None, {"status": "failed"}, ["failed"]),
        (None, {"status": "ended"}, []),
        (None, {"status": "waiting"}, []),
    ],
)
def test_transitions(old: dict[str, Any] | None, new: dict[str, Any], kinds: list[str]) -> None:
    assert transitions(hooked("s", **old) if old is not None else None, hooked("s", **new)) == kinds


def test_transitions_of_todays_sessions_without_the_hook_fields() -> None:
    assert transitions(session("s", status="running"), session("s", status="waiting")) == ["waiting"]
    assert transitions(session("s", status="waiting"), session("s", status="waiting", title="x")) == []


def test_body_says_which_session_and_what_it_wants() -> None:
    s = hooked(
        "a b/1", status="needs_approval", pending=PENDING, title="Fix the bug", project="/w/app",
        host="box", cost_usd=0.25, status_reason="wants to use Write",
    )
    assert body("needs_approval", s, "http://127.0.0.1:8765", 1_800_000_000.0) == {
        "event": "needs_approval",
        "session_id": "a b/1",
        "source": "claude",
        "title": "Fix the bug",
        "project": "/w/app",
        "host": "box",
        "status": "needs_approval",
        "status_reason": "wants to use Write",
        "pending": {"tool": "Write", "summary": "write notes.txt", "since": "2026-11-22T08:00:00Z"},
        "cost_usd": 0.25,
        "url": "http://127.0.0.1:8765/?session=a%20b%2F1",
        "timestamp": "2027-01-15T08:00:00Z",
    }


# --- through a hub, to a real receiver ----------------------------------------------------------


async def wait_async(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_one_post_per_transition_through_the_hub(receiver: Receiver) -> None:
    hub = Hub()
    hooks = Webhooks([receiver.url], dashboard="http://127.0.0.1:8765", backoff_s=(0.01,))
    hub.listeners.append(hooks.observe)
    hub.load([hooked("s1", status="running")])
    task = asyncio.create_task(hooks.run())
    try:
        steps: list[dict[str, Any]] = [
            {"status": "running", "message_count": 1},
            {"status": "needs_approval", "pending": PENDING},
            {"status": "needs_approval", "pending": PENDING, "cost_usd": 0.5},
            {"status": "running", "cost_usd": 0.6},
            {"status": "waiting", "cost_usd": 0.7},
            {"status": "waiting", "cost_usd": 0.7, "title": "renamed"},
            {"status": "running"},
            {"status": "running", "status_reason": "budget reached ($1.00)"},
            {"status": "failed", "status_reason": "API error: 529 overloaded"},
            {"status": "ended", "status_reason": "prompt_input_exit"},
            {"status": "ended", "status_reason": "prompt_input_exit", "title": "again"},
        ]
        for step in steps:
            hub.apply({"s1": hooked("s1", **step)})
        await wait_async(lambda: len(receiver.got()) >= 5, "five webhook POSTs")
        await asyncio.sleep(0)  # anything more would already be queued
        got = receiver.got()
        assert [b["event"] for b in got] == ["needs_approval", "waiting", "budget_reached", "failed", "ended"]
        assert got[0]["pending"]["tool"] == "Write" and got[1]["cost_usd"] == 0.7
        assert got[3]["status_reason"] == "API error: 529 overloaded"
        assert all(b["session_id"] == "s1" and b["url"].endswith("/?session=s1") for b in got)
        assert hooks.sent == 5 and hooks.failures == {}
    finally:
        task.cancel()


async def test_a_failing_receiver_is_retried_with_backoff(receiver: Receiver) -> None:
    receiver.codes = [500, 503]  # two failures, then 200
    metrics = Metrics()
    hooks = Webhooks([receiver.url], dashboard="http://x", metrics=metrics, backoff_s=(0.01, 0.01, 0.01))
    task = asyncio.create_task(hooks.run())
    try:
        hooks.observe(hooked("s", status="running"), hooked("s", status="waiting"))
        await wait_async(lambda: hooks.sent == 1, "the third attempt to get through")
        assert [b["event"] for b in receiver.got()] == ["waiting"] * 3
        assert hooks.failures == {"error": 2}
        assert metrics.registry.get_sample_value("sessionwatch_webhook_failures_total", {"reason": "error"}) == 2
    finally:
        task.cancel()


async def test_a_dead_receiver_is_given_up_and_counted() -> None:
    hooks = Webhooks([f"http://127.0.0.1:{free_port()}/x"], dashboard="http://x", metrics=Metrics(), backoff_s=(0.01, 0.01))
    task = asyncio.create_task(hooks.run())
    try:
        hooks.observe(hooked("s", status="running"), hooked("s", status="failed"))
        await wait_async(lambda: hooks.failures.get("gave_up") == 1, "the message to be given up")
        assert hooks.failures == {"error": 3, "gave_up": 1}
    finally:
        task.cancel()


async def test_a_hanging_receiver_holds_nothing_but_its_own_queue(receiver: Receiver) -> None:
    """observe() never waits: with the receiver hanging and the queue full, messages are dropped and counted,
    and a second receiver still gets every message."""
    receiver.hold = threading.Event()
    other = Receiver()
    try:
        hooks = Webhooks([receiver.url, other.url], dashboard="http://x", queue_size=2, timeout_s=30)
        task = asyncio.create_task(hooks.run())
        hooks.observe(None, hooked("s0", status="failed"))
        await wait_async(lambda: len(receiver.got()) == 1, "the first POST to hang")
        await wait_async(lambda: len(other.got()) == 1, "the other receiver's first")
        for n in range(1, 6):
            hooks.observe(None, hooked(f"s{n}", status="failed"))  # returns at once
            await wait_async(lambda: len(other.got()) == n + 1, "the other receiver to keep up")
        assert hooks.failures == {"queue_full": 3}  # 2 queued behind the hanging POST, 3 dropped
        assert [b["session_id"] for b in other.got()] == [f"s{n}" for n in range(6)]
        task.cancel()
    finally:
        other.stop()


async def test_a_4xx_answer_is_not_retried(receiver: Receiver) -> None:
    receiver.codes = [404]
    hooks = Webhooks([receiver.url], dashboard="http://x", backoff_s=(0.01,))
    task = asyncio.create_task(hooks.run())
    try:
        hooks.observe(hooked("s", status="running"), hooked("s", status="waiting"))
        hooks.observe(hooked("s", status="waiting"), hooked("s", status="ended"))
        await wait_async(lambda: hooks.sent == 1, "the second message")
        assert [b["event"] for b in receiver.got()] == ["waiting", "ended"]
        assert hooks.failures == {"rejected": 1}
    finally:
        task.cancel()


# --- a real server -------------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def entry(**fields: Any) -> bytes:
    base = {"sessionId": "live-1", "timestamp": now_iso(), "cwd": "/work/app"}
    base.update(fields)
    return json.dumps(base).encode() + b"\n"


def test_real_server_posts_once_when_a_turn_ends(tmp_path: Path, receiver: Receiver) -> None:
    projects = tmp_path / "projects"
    (projects / "-work-app").mkdir(parents=True)
    srv = Server(projects, tmp_path / "sw.db", free_port(), ["--webhook", receiver.url], tmp_path / "server.log").start()
    try:
        # Panel sessions through the tracker API: no webhook transition among their statuses
        sid = httpx.post(srv.url + "/sessions", json={"app_name": "reports", "user_id": "ann"}).json()["session_id"]
        for status in ("running", "idle", "running"):
            assert httpx.put(srv.url + f"/sessions/{sid}/status", json={"status": status}).status_code == 200
        httpx.post(srv.url + f"/sessions/{sid}/heartbeat")
        # a Claude session: a prompt (running), then the reply (waiting)
        path = projects / "-work-app" / "live-1.jsonl"
        path.write_bytes(entry(type="user", message={"role": "user", "content": "fix it"}))
        wait_for(lambda: _status(srv, "live-1") == "running", 15, "the session to run")
        with open(path, "ab") as f:
            f.write(entry(
                type="assistant", requestId="r1",
                message={"id": "m1", "model": "claude-sonnet-4-5", "role": "assistant",
                         "content": [{"type": "text", "text": "Done."}], "usage": {"input_tokens": 10, "output_tokens": 5}},
            ))
        wait_for(lambda: receiver.got(), 15, "the webhook")
        # one more unrelated change must not send anything: a title, after which the Panel session is seen again
        with open(path, "ab") as f:
            f.write(entry(type="custom-title", customTitle="Fix it"))
        wait_for(lambda: (_detail(srv, "live-1") or {}).get("title") == "Fix it", 15, "the title")
        httpx.put(srv.url + f"/sessions/{sid}/status", json={"status": "idle"})
    finally:
        srv.stop()
    got = receiver.got()
    assert [(b["event"], b["session_id"]) for b in got] == [("waiting", "live-1")]
    assert got[0]["project"] == "/work/app" and got[0]["status"] == "waiting"
    assert got[0]["url"] == f"http://127.0.0.1:{srv.port}/?session=live-1"


def _detail(srv: Server, sid: str) -> dict[str, Any] | None:
    r = httpx.get(srv.url + f"/sessions/{sid}")
    return r.json() if r.status_code == 200 else None


def _status(srv: Server, sid: str) -> str | None:
    d = _detail(srv, sid)
    return None if d is None else d.get("status")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "not a url", "http://"])
def test_a_bad_webhook_url_is_one_line(tmp_path: Path, url: str) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    proc = subprocess.run(
        [sys.executable, "-m", "sessionwatch", "serve", "--db", str(tmp_path / "x.db"), "--port", str(free_port()), "--webhook", url],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--webhook" in proc.stderr and proc.stdout == ""
