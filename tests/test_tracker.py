"""The Panel session tracker (sessionwatch.integrations.panel: tracker, worker, backends).

Exact request counting runs against a small stand-in server
(`panel_helpers.FakeServer`); everything else against the real parts: a real
`sessionwatch serve`, the example app under a real Panel server, sessions
opened over a real websocket (bokeh's `pull_session`) and, for kills,
Chromium.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwatch.integrations.panel import bokeh_compat, tracker as tracker_module
from sessionwatch.integrations.panel.tracker import KILL_CLOSE_CODE, KILL_CLOSE_REASON, SessionTracker
from sessionwatch.integrations.panel.worker import Worker
from tests.panel_helpers import (
    CHROMIUM_ARGS,
    EXAMPLE_APP,
    BokehClient,
    FakeServer,
    PanelServe,
    StreamWatch,
    fake_server,
    free_port,
    threaded_panel,
    wait_for,
)

ServerFactory = Callable[..., Any]

# Issue 4 asks for a kill within 2 s; it takes well under 100 ms (bench/kill.py
# measures it). Tests only wait for the kill with a looser deadline, so a loaded
# CI machine cannot make them flaky, while a broken kill path (seconds to
# minutes, or never) fails.
KILL_DEADLINE_S = 5.0


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with fake_server() as server:
        yield server


@pytest.fixture
def tracking() -> Iterator[None]:
    """End every tracker the test started. Request it after the server
    fixtures: it is torn down first, while the servers still answer."""
    yield
    for tracker in list(SessionTracker._trackers.values()):
        tracker.stop()
    worker = Worker._instance
    if worker is None:
        return
    backends = list(worker.backends.values())

    def drained() -> bool:
        return not any(b.records for b in backends)  # type: ignore[attr-defined]

    try:
        wait_for(drained, timeout=3, what="trackers to deregister")
    except AssertionError:
        # Deregistrations aimed at a server the test stopped on purpose
        # would be retried forever in this shared process: drop them.
        for backend in backends:
            worker.call(backend.records.clear)  # type: ignore[attr-defined]


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point the in-process example app at a server (or database)."""

    def configure(url: str | None = None, db: Path | None = None, heartbeat_s: float = 1.0) -> None:
        for name in ("SESSIONWATCH_URL", "SESSIONWATCH_TRACKER_DB", "SESSIONWATCH_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        if url:
            monkeypatch.setenv("SESSIONWATCH_URL", url)
        if db:
            monkeypatch.setenv("SESSIONWATCH_TRACKER_DB", str(db))
        monkeypatch.setenv("SESSIONWATCH_HEARTBEAT_S", str(heartbeat_s))

    return configure


def app_name() -> str:
    return f"test-{time.monotonic_ns()}"


# --------------------------------------------------------------------------
# Against the stand-in server: tasks, batching, offline behaviour
# --------------------------------------------------------------------------


def test_public_import_path_is_the_tracker_and_its_constants() -> None:
    """`from sessionwatch.tracker import ...` (the README, examples/panel_app.py)
    names the same objects as the implementation, and only those."""
    import sessionwatch.tracker as public

    assert sorted(public.__all__) == [
        "AUTH_RETRY_S",
        "DEFAULT_HEARTBEAT_INTERVAL",
        "DEFAULT_SERVER_URL",
        "KILL_CLOSE_CODE",
        "KILL_CLOSE_REASON",
        "PANEL_SCHEMA",
        "SessionTracker",
    ]
    for name in public.__all__:
        assert getattr(public, name) is getattr(tracker_module, name), name
    assert public.DEFAULT_HEARTBEAT_INTERVAL == 15.0 and public.KILL_CLOSE_CODE == 1001


def test_task_marks_running_then_idle_also_when_it_raises(server: FakeServer, tracking: None) -> None:
    tracker = SessionTracker.get_tracker(app_name(), server_url=server.url)
    sid = tracker.session_id
    wait_for(lambda: sid in server.sessions, what="registration")

    with tracker.task("Generating report"):
        wait_for(
            lambda: server.sessions[sid]["status"] == "running"
            and server.sessions[sid]["current_task"] == "Generating report",
            what="running",
        )
    wait_for(lambda: server.sessions[sid]["status"] == "idle", what="idle")
    assert server.sessions[sid]["current_task"] is None

    with pytest.raises(RuntimeError), tracker.task("Doomed"):
        wait_for(lambda: server.sessions[sid]["status"] == "running", what="running")
        raise RuntimeError("boom")
    wait_for(lambda: server.sessions[sid]["status"] == "idle", what="idle after an error")
    assert tracker.status == "idle"
    tracker.stop()
    wait_for(lambda: sid not in server.sessions, what="deregistration on stop()")


def test_nested_and_concurrent_tasks_show_the_latest_active_task(server: FakeServer, tracking: None) -> None:
    tracker = SessionTracker.get_tracker(app_name(), server_url=server.url)
    sid = tracker.session_id

    def shown() -> tuple[str, str | None]:
        session = server.sessions.get(sid, {})
        return session.get("status", ""), session.get("current_task")

    with tracker.task("outer"):
        with tracker.task("inner"):
            wait_for(lambda: shown() == ("running", "inner"), what="inner task shown")
        wait_for(lambda: shown() == ("running", "outer"), what="outer task shown again")
        # A task in another thread that outlives the outer one.
        started, release = threading.Event(), threading.Event()

        def background() -> None:
            with tracker.task("background"):
                started.set()
                release.wait(10)

        thread = threading.Thread(target=background)
        thread.start()
        started.wait(5)
        wait_for(lambda: shown() == ("running", "background"), what="background task shown")
    # outer ended, background still runs: still running
    wait_for(lambda: shown() == ("running", "background"), what="still running")
    release.set()
    thread.join(5)
    wait_for(lambda: shown() == ("idle", None), what="idle once every task ended")


def test_same_tracker_for_the_same_session_outside_panel(server: FakeServer, tracking: None) -> None:
    name = app_name()
    first = SessionTracker.get_tracker(name, server_url=server.url)
    assert SessionTracker.get_tracker(name, server_url=server.url) is first
    first.stop()
    assert SessionTracker.get_tracker(name, server_url=server.url) is not first


def test_200_sessions_share_one_heartbeat_request_per_beat(server: FakeServer, tracking: None) -> None:
    interval = 0.4
    trackers = [
        SessionTracker.get_tracker(app_name(), server_url=server.url, heartbeat_interval=interval)
        for _ in range(200)
    ]
    ids = {t.session_id for t in trackers}
    wait_for(lambda: ids <= set(server.sessions), timeout=30, what="200 registrations")
    wait_for(lambda: server.heartbeat_bodies and set(server.heartbeat_bodies[-1]) == ids, timeout=5)
    # The beat goes on, and each beat is one request carrying all 200 sessions
    # (its rate per interval is a figure for bench/, not an assert).
    before = server.requests["POST /heartbeats"]
    wait_for(lambda: server.requests["POST /heartbeats"] - before >= 3, timeout=10, what="three more heartbeats")
    made = server.requests["POST /heartbeats"] - before
    assert all(set(body) == ids for body in server.heartbeat_bodies[-made:])
    # Heartbeats are the only periodic traffic: no per-session requests.
    assert server.requests["POST /sessions"] == 200
    assert server.requests["PUT /sessions/{id}/status"] == 0


def test_server_down_at_start_then_registered_and_reregistered_after_restart(tracking: None) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tracker = SessionTracker.get_tracker(app_name(), server_url=url, heartbeat_interval=0.3)

    def work_offline() -> None:
        for _ in range(100):
            with tracker.task("works offline"):
                pass

    # Never waits for the network: a hundred tasks finish while nothing answers.
    worker = threading.Thread(target=work_offline, daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "tasks blocked while the server was down"
    with tracker.task("started while the server was down"):
        server = FakeServer(port=port).start()
        try:
            sid = tracker.session_id
            wait_for(lambda: sid in server.sessions, timeout=15, what="registration once the server is up")
            wait_for(lambda: server.sessions[sid]["status"] == "running", what="status sent after registration")
            server.stop()
            # A new server that never heard of the session: the heartbeat
            # answer (`unknown`) or the stream's `init` makes it register again.
            server = FakeServer(port=port).start()
            wait_for(lambda: sid in server.sessions, timeout=15, what="re-registration")
            wait_for(
                lambda: server.sessions[sid]["current_task"] == "started while the server was down",
                what="status restored after re-registration",
            )
        finally:
            tracker.stop()
            wait_for(lambda: sid not in server.sessions, what="deregistration")
            server.stop()


def test_kill_outside_a_panel_session_ends_tracking(server: FakeServer, tracking: None) -> None:
    tracker = SessionTracker.get_tracker(app_name(), server_url=server.url)
    sid = tracker.session_id
    wait_for(lambda: sid in server.sessions)
    server.kill(sid)
    wait_for(lambda: tracker.stopped, timeout=5, what="tracking to end")
    wait_for(lambda: sid not in server.sessions, what="deregistration")


# --------------------------------------------------------------------------
# The Panel/bokeh private path (fails when a Panel upgrade breaks it)
# --------------------------------------------------------------------------


def test_close_panel_session_private_path() -> None:
    """close_panel_session: 1001 + reason to the client, session destroyed,
    periodic callbacks stopped, on_session_destroyed hooks run."""
    import panel as pn

    contexts: dict[str, Any] = {}
    ticks: dict[str, int] = {}
    destroyed: list[str] = []

    def app() -> Any:
        doc = pn.state.curdoc
        sid = doc.session_context.id
        contexts[sid] = doc
        ticks[sid] = 0

        def tick() -> None:
            ticks[sid] += 1

        pn.state.add_periodic_callback(tick, period=50)
        pn.state.on_session_destroyed(lambda ctx: destroyed.append(ctx.id))
        return pn.pane.Markdown("hello")

    with threaded_panel({"app": app}) as base:
        client = BokehClient(f"{base}/app")
        try:
            sid = client.id
            wait_for(lambda: ticks.get(sid, 0) > 2, what="periodic callback running")
            doc = contexts[sid]
            context = doc.session_context
            result: list[bool] = []

            async def close() -> None:
                result.append(await tracker_module.close_panel_session(context))

            bokeh_compat.call_soon(doc, close)
            assert client.closed.wait(5), "websocket not closed"
            assert client.close_code == KILL_CLOSE_CODE
            assert client.close_reason == KILL_CLOSE_REASON
            wait_for(lambda: result == [True], timeout=5, what="session destroyed")
            assert context.destroyed
            assert destroyed == [sid]
            count = ticks[sid]
            time.sleep(0.3)  # six periods: a running callback would have ticked
            assert ticks[sid] == count, "periodic callback still running after destroy"
        finally:
            client.close()


# --------------------------------------------------------------------------
# Direct (SQLite) mode, no server
# --------------------------------------------------------------------------


def _rows(db: Path) -> dict[str, dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return {r["id"]: dict(r) for r in conn.execute("SELECT * FROM panel_sessions")}
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def test_direct_mode_writes_rows_and_obeys_kill_flag(tmp_path: Path, tracking: None) -> None:
    db = tmp_path / "sub" / "sessionwatch.db"
    tracker = SessionTracker.get_tracker(app_name(), db_path=db, heartbeat_interval=0.5)
    sid = tracker.session_id
    row = wait_for(lambda: _rows(db).get(sid), what="row written")
    assert row["status"] == "idle" and row["pid"] == os.getpid() and row["kill_requested"] == 0
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with tracker.task("direct"):
        wait_for(lambda: _rows(db)[sid]["status"] == "running", what="running row")
        assert _rows(db)[sid]["current_task"] == "direct"
    wait_for(lambda: _rows(db)[sid]["status"] == "idle", what="idle row")
    first_beat = _rows(db)[sid]["last_heartbeat"]
    wait_for(lambda: _rows(db)[sid]["last_heartbeat"] > first_beat, timeout=5, what="heartbeat")

    with conn:
        conn.execute("UPDATE panel_sessions SET kill_requested = 1 WHERE id = ?", (sid,))
    wait_for(lambda: tracker.stopped, timeout=KILL_DEADLINE_S, what="kill noticed")
    wait_for(lambda: sid not in _rows(db), what="row deleted")
    conn.close()


WRITER = """
import sys, time
from sessionwatch.integrations.panel.tracker import SessionTracker
db, n = sys.argv[1], int(sys.argv[2])
trackers = [SessionTracker.get_tracker(f"writer-{i}", db_path=db, heartbeat_interval=0.2) for i in range(n)]
for round in range(20):
    for t in trackers:
        with t.task(f"round {round}"):
            pass
    time.sleep(0.02)
print(" ".join(t.session_id for t in trackers), flush=True)
sys.stdin.readline()   # stay alive (heartbeating) until told to exit
"""


def test_direct_mode_several_processes_write_one_database(tmp_path: Path) -> None:
    db = tmp_path / "sessionwatch.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), "25"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        ids: set[str] = set()
        for proc in procs:
            assert proc.stdout is not None
            ids.update(proc.stdout.readline().split())
        assert len(ids) == 75
        wait_for(lambda: ids <= set(_rows(db)), timeout=15, what="75 rows from 3 processes")
        wait_for(
            lambda: all(r["status"] == "idle" for r in _rows(db).values()),
            timeout=15,
            what="final statuses",
        )
    finally:
        # A line on stdin: each exits normally and atexit deregisters.
        errors = [proc.communicate(input="\n", timeout=20)[1] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert not any("locked" in e or "Traceback" in e for e in errors), errors
    assert _rows(db) == {}, "atexit did not deregister"


# --------------------------------------------------------------------------
# End to end: real sessionwatch server, the example app, real websockets
# --------------------------------------------------------------------------


@contextlib.contextmanager
def example_session(server_url: str) -> Iterator[tuple[str, BokehClient, StreamWatch]]:
    """The example app served in this process, one websocket session of it and
    a follower of the server's Panel sessions: (app base URL, client, watch)."""
    watch = StreamWatch(server_url, "?source=panel")
    try:
        with threaded_panel({"panel_app": str(EXAMPLE_APP)}) as base:
            client = BokehClient(f"{base}/panel_app")
            try:
                yield base, client, watch
            finally:
                client.close()
    finally:
        watch.close()


def kill_closes(server_url: str, client: BokehClient, watch: StreamWatch) -> None:
    """Kill the client's session from the API: its websocket closes with 1001
    and the session leaves the stream."""
    sid = client.id
    assert httpx.post(f"{server_url}/sessions/{sid}/kill", json={"by": "test"}).status_code == 200
    assert client.closed.wait(KILL_DEADLINE_S), "websocket not closed"
    assert client.close_code == 1001  # "going away": the browser shows disconnect_notification
    assert client.close_reason == KILL_CLOSE_REASON
    watch.wait_gone(sid, timeout=5)


def test_example_app_registers_and_kill_closes_the_session(
    sw_server: ServerFactory, example_env: Callable[..., None], tracking: None
) -> None:
    srv = sw_server()
    example_env(url=srv.url)
    with example_session(srv.url) as (base, client, watch):
        sid = client.id
        session = watch.wait_session(sid, what="registration on /stream")
        assert session["source"] == "panel"
        assert session["project"] == "task-runner"
        assert session["status"] == "idle"
        detail = httpx.get(f"{srv.url}/sessions/{sid}").json()
        assert detail["pid"] == os.getpid()
        assert detail["url"] == f"{base}/panel_app"
        document = SessionTracker._trackers[sid]._panel.document  # type: ignore[union-attr]
        context = document.session_context

        kill_closes(srv.url, client, watch)
        wait_for(lambda: context.destroyed, timeout=5, what="Panel session destroyed")
        assert httpx.get(f"{srv.url}/sessions/{sid}").status_code == 404

        # A browser that reconnects with the killed id (bokeh would
        # recreate the session) is closed again and not tracked.
        seen = len(watch.events)
        try:
            again: BokehClient | None = BokehClient(f"{base}/panel_app", session_id=sid)
        except RuntimeError:
            again = None  # closed before the document even arrived
        if again is not None:
            assert again.closed.wait(5), "the killed session came back to life"
            again.close()
        watch.settle(1.5)  # the window in which a re-registration would show
        assert not [e for e in watch.events[seen:] if any(s["id"] == sid for s in e[1]["sessions"])]


def test_server_down_app_still_works_and_session_appears_when_it_starts(
    sw_server: ServerFactory, example_env: Callable[..., None], tracking: None
) -> None:
    srv = sw_server()
    srv.stop()
    example_env(url=srv.url)
    with threaded_panel({"panel_app": str(EXAMPLE_APP)}) as base:
        client = BokehClient(f"{base}/panel_app")
        try:
            # The app is served as usual: the document arrived with its widgets.
            names = {getattr(m, "name", None) for m in client.session.document.roots}
            assert client.session.document.roots, names
            srv.start()
            watch = StreamWatch(srv.url, "?source=panel")
            try:
                watch.wait_session(client.id, timeout=15, what="registration after the server started")
            finally:
                watch.close()
        finally:
            client.close()


def test_direct_mode_session_reaches_the_stream_through_the_watcher(
    sw_server: ServerFactory, example_env: Callable[..., None], tracking: None
) -> None:
    srv = sw_server()
    example_env(db=srv.db)
    with example_session(srv.url) as (_, client, watch):
        watch.wait_session(client.id, what="direct-mode row streamed by the server")
        kill_closes(srv.url, client, watch)


def test_stale_then_cleaned_up_after_the_app_process_dies(
    sw_server: ServerFactory, tmp_path: Path
) -> None:
    srv = sw_server(extra_args=["--stale-after-s", "1", "--cleanup-after-s", "2"])
    app = PanelServe(env={"SESSIONWATCH_URL": srv.url, "SESSIONWATCH_HEARTBEAT_S": "0.3"}).start()
    watch = StreamWatch(srv.url, "?source=panel")
    try:
        client = BokehClient(app.url)
        sid = client.id
        watch.wait_session(sid, what="registration")
        # Heartbeating keeps it fresh well past --stale-after-s.
        time.sleep(2.0)  # the window being checked, not a wait for luck
        assert watch.wait_session(sid)["status"] == "idle"
        assert not [e for e in watch.events if e[0] == "session-updated"
                    and any(s["id"] == sid and s["status"] == "stale" for s in e[1]["sessions"])]
        assert app.process is not None
        app.process.send_signal(signal.SIGKILL)  # no atexit, no goodbye
        app.process.wait()
        # Stale after --stale-after-s, then deleted after --cleanup-after-s
        # (deadlines well past both: a loaded machine must not fail this).
        watch.wait_session(sid, lambda s: s["status"] == "stale" and s["is_stale"], timeout=10, what="stale")
        watch.wait_gone(sid, timeout=10)
        client.close()
    finally:
        watch.close()
        app.stop()


def test_process_exit_deregisters_its_sessions(sw_server: ServerFactory) -> None:
    srv = sw_server()
    app = PanelServe(env={"SESSIONWATCH_URL": srv.url}).start()
    watch = StreamWatch(srv.url, "?source=panel")
    try:
        clients = [BokehClient(app.url) for _ in range(3)]
        for client in clients:
            watch.wait_session(client.id, what="registration")
        app.stop()  # SIGINT: panel serve exits normally, atexit runs
        for client in clients:
            watch.wait_gone(client.id, timeout=10)
            client.close()
    finally:
        watch.close()
        app.stop()


# --------------------------------------------------------------------------
# Chromium
# --------------------------------------------------------------------------

RECORD_CLOSES = """
window.__closes = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    this.addEventListener('close', (e) => window.__closes.push({code: e.code, reason: e.reason}));
  }
};
"""


def test_browser_task_runs_and_kill_shows_the_disconnect_notification(
    sw_server: ServerFactory, chromium_bin: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    srv = sw_server()
    app = PanelServe(env={"SESSIONWATCH_URL": srv.url}).start()
    watch = StreamWatch(srv.url, "?source=panel")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_bin, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.add_init_script(RECORD_CLOSES)
            page.goto(app.url)
            expect(page.get_by_text("Task runner")).to_be_visible(timeout=20_000)
            sid = watch.wait(
                lambda w: next(iter(w.sessions), None), timeout=10, what="the browser's session"
            )
            page.get_by_role("textbox").first.fill("Browser task")
            page.get_by_role("button", name="Run task").click()
            watch.wait_session(
                sid, lambda s: s["status"] == "running" and s["current_task"] == "Browser task",
                what="running",
            )
            expect(page.get_by_text("Running: Browser task")).to_be_visible(timeout=5_000)
            watch.wait_session(sid, lambda s: s["status"] == "idle", timeout=15, what="idle again")

            assert httpx.post(f"{srv.url}/sessions/{sid}/kill").status_code == 200
            expect(page.get_by_text("This session was ended")).to_be_visible(timeout=KILL_DEADLINE_S * 1000)
            closes = page.evaluate("window.__closes")
            assert {"code": 1001, "reason": KILL_CLOSE_REASON} in closes, closes
            watch.wait_gone(sid, timeout=5)
            browser.close()
    finally:
        watch.close()
        app.stop()


def test_token_is_sent_when_the_server_requires_one(
    sw_server: ServerFactory, monkeypatch: pytest.MonkeyPatch, tracking: None
) -> None:
    srv = sw_server(extra_args=["--token", "s3cret"])
    auth = {"Authorization": "Bearer s3cret"}
    watch = StreamWatch(srv.url, "?source=panel", headers=auth)
    try:
        monkeypatch.setenv("SESSIONWATCH_TOKEN", "s3cret")
        tracker = SessionTracker.get_tracker(app_name(), server_url=srv.url)
        sid = tracker.session_id
        watch.wait_session(sid, what="registration with the token")
        with tracker.task("authorised"):
            watch.wait_session(sid, lambda s: s["status"] == "running", what="status with the token")
        assert httpx.post(f"{srv.url}/sessions/{sid}/kill").status_code == 401
        assert httpx.post(f"{srv.url}/sessions/{sid}/kill", headers=auth).status_code == 200
        wait_for(lambda: tracker.stopped, timeout=5, what="kill heard on the authorised stream")
        watch.wait_gone(sid)
    finally:
        watch.close()


def test_rejected_token_is_reported_once_and_not_hammered(
    sw_server: ServerFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tracking: None,
) -> None:
    # It used to count as "unreachable": retried every 0.5 to 5 s for ever,
    # the stream too, and logged as if the server were down.
    srv = sw_server(extra_args=["--token", "s3cret"])
    sent: list[str] = []
    original = httpx.AsyncClient.send

    async def send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        if str(request.url).startswith(srv.url):
            sent.append(f"{request.method} {request.url.path}")
        return await original(self, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", send)
    monkeypatch.setenv("SESSIONWATCH_TOKEN", "wrong")
    caplog.set_level(logging.INFO, logger="sessionwatch.tracker")
    tracker = SessionTracker.get_tracker(app_name(), server_url=srv.url, heartbeat_interval=0.05)
    with tracker.task("works untracked"):
        pass
    # Both the registration and the stream were turned away ...
    wait_for(lambda: {"POST /sessions", "GET /stream"} <= set(sent), what="both requests refused")
    wait_for(lambda: "rejected the token" in caplog.text, what="the rejection logged")
    before = len(sent)
    # ... and nothing is sent again for a while (the next try is a minute away).
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        time.sleep(0.1)
    assert sent[before:] == []
    rejected = [r for r in caplog.records if "rejected the token" in r.getMessage()]
    assert len(rejected) == 1, [r.getMessage() for r in rejected]
    assert "unreachable" not in caplog.text
    tracker.stop()
