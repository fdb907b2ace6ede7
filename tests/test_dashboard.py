"""The Panel dashboard (sessionwatch.integrations.panel.dashboard).

The table logic and the connection state machine run against in-memory
events and the stand-in server; one end-to-end test drives the dashboard in
Chromium against a real `sessionwatch serve`, the example app and a real
websocket session, and kills that session with the dashboard's button.
"""

from __future__ import annotations

import html
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwatch.integrations.panel.dashboard import (
    KILL_BUTTON,
    KILL_PENDING,
    STATUS_COLOURS,
    DashboardView,
    Feed,
    Filters,
    diff_rows,
    search_matches,
    session_row,
)
from sessionwatch.integrations.panel.tracker import KILL_CLOSE_REASON
from tests.panel_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    BokehClient,
    FakeServer,
    PanelServe,
    StreamWatch,
    child_env,
    fake_server,
    free_port,
    wait_for,
)


def panel_session(sid: str, **fields: Any) -> dict[str, Any]:
    session = {
        "id": sid,
        "source": "panel",
        "project": "reports",
        "title": None,
        "status": "idle",
        "current_task": None,
        "user": "ana",
        "host": "box",
        "started_at": "2026-01-01T10:00:00Z",
        "last_activity": "2026-01-01T10:00:00Z",
        "duration_seconds": 5.0,
        "message_count": 0,
        "tool_calls": 0,
        "tokens": {"input": 0, "output": 0, "cache_creation": 0, "cache_read": 0},
        "cost_usd": None,
        "kill_requested": False,
        "is_stale": False,
    }
    session.update(fields)
    return session


def claude_session(sid: str, **fields: Any) -> dict[str, Any]:
    return panel_session(
        sid,
        source="claude",
        project="/home/ana/sessionwatch",
        title="Fix the parser",
        status="waiting",
        tokens={"input": 10, "output": 20, "cache_creation": 0, "cache_read": 5},
        cost_usd=0.125,
        message_count=4,
        tool_calls=2,
        **fields,
    )


def event(kind: str, sessions: list[dict[str, Any]]) -> str:
    return json.dumps({"type": kind, "sessions": sessions, "timestamp": time.time()})


# --------------------------------------------------------------------------
# Rows, filters, diffs
# --------------------------------------------------------------------------


def test_a_pending_prompt_shows_its_summary_as_the_task() -> None:
    pending = {"id": "t1", "kind": "permission", "tool": "Write", "summary": "Write: note.txt", "since": "2026-01-01T10:00:00Z", "answerable": False}
    row = session_row(claude_session("c1", status_reason="permission: Write", pending=pending))
    assert row["task"] == "waiting for you: Write: note.txt"
    assert session_row(claude_session("c2", pending=None))["task"] == "Fix the parser"


def test_rows_show_kill_only_for_panel_sessions() -> None:
    panel_row = session_row(panel_session("p1", current_task="Generating report"))
    assert panel_row["kill"] == KILL_BUTTON
    assert panel_row["task"] == "Generating report"
    assert session_row(panel_session("p2", kill_requested=True))["kill"] == KILL_PENDING
    claude_row = session_row(claude_session("c1"))
    assert claude_row["kill"] == ""
    assert claude_row["task"] == "Fix the parser"
    assert claude_row["tokens"] == 35
    assert claude_row["cost"] == "$0.12" or claude_row["cost"] == "$0.13"
    assert all(value is not None for value in claude_row.values())


def test_filters_by_source_status_and_text() -> None:
    p, c = panel_session("p-123", current_task="Nightly export"), claude_session("c-456")
    assert Filters().match("p-123", p) and Filters().match("c-456", c)
    assert not Filters(sources=("claude",)).match("p-123", p)
    assert not Filters(statuses=("running",)).match("c-456", c)
    assert Filters(text="nightly").match("p-123", p)
    assert not Filters(text="nightly").match("c-456", c)


SEARCH = json.loads((Path(__file__).parent / "vectors" / "search.json").read_text())


@pytest.mark.parametrize("case", SEARCH["cases"], ids=[repr(c["q"]) for c in SEARCH["cases"]])
def test_search_means_what_it_means_on_the_web_page(case: dict[str, Any]) -> None:
    # It used to look at ids, users, hosts and models too, and took the
    # query as one string where the web page wants every word.
    session = SEARCH["session"]
    assert search_matches(session, case["q"]) is case["match"]
    assert Filters(text=case["q"]).match(session["id"], session) is case["match"]


def test_diff_patches_changed_cells_adds_and_removes() -> None:
    old = {"a": session_row(panel_session("a")), "b": session_row(panel_session("b"))}
    new = {
        "a": session_row(panel_session("a", status="running", current_task="t")),
        "c": session_row(panel_session("c")),
    }
    diff = diff_rows(old, new)
    assert diff.patch == {"status": [("a", "running")], "task": [("a", "t")]}
    assert list(diff.add) == ["c"]
    assert diff.remove == ["b"]


# --------------------------------------------------------------------------
# The table follows the feed in place
# --------------------------------------------------------------------------


@pytest.fixture
def view() -> Iterator[tuple[Feed, DashboardView, dict[str, int]]]:
    """A dashboard tab (not served) on a feed fed by hand, with a count of
    how the table was updated."""
    feed = Feed("http://127.0.0.1:9")  # never started
    view = DashboardView(feed, feed.server_url, None)
    calls = {"value": 0, "patch": 0, "stream": 0}
    replace = view._replace_table

    def counted_replace(rows: dict[str, dict[str, Any]]) -> None:
        calls["value"] += 1
        replace(rows)

    view._replace_table = counted_replace  # type: ignore[method-assign]
    for name in ("patch", "stream"):
        original = getattr(view.table, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _original(*args, **kwargs)

        setattr(view.table, name, counted)
    yield feed, view, calls


def table_rows(view: DashboardView) -> dict[str, dict[str, Any]]:
    frame = view.table.value
    return {str(row["id"]): dict(row) for _, row in frame.iterrows()}


def test_updates_patch_and_stream_instead_of_reloading(
    view: tuple[Feed, DashboardView, dict[str, int]],
) -> None:
    feed, dash, calls = view
    feed._on_event("init", "1", event("init", [panel_session("a"), claude_session("c")]))
    assert set(table_rows(dash)) == {"a", "c"}
    calls.update(value=0, patch=0, stream=0)

    feed._on_event("session-updated", "2", event("session-updated", [panel_session("a", status="running", current_task="Build")]))
    assert calls == {"value": 0, "patch": 1, "stream": 0}
    assert table_rows(dash)["a"]["status"] == "running"
    assert table_rows(dash)["a"]["task"] == "Build"

    feed._on_event("session-created", "3", event("session-created", [panel_session("b")]))
    assert calls == {"value": 0, "patch": 1, "stream": 1}
    assert set(table_rows(dash)) == {"a", "b", "c"}

    # An update that changes nothing visible sends nothing.
    feed._on_event("session-updated", "4", event("session-updated", [panel_session("b")]))
    assert calls == {"value": 0, "patch": 1, "stream": 1}

    # Removal is the one change that rebuilds the data (Tabulator has no row removal).
    feed._on_event("session-deleted", "5", event("session-deleted", [{"id": "a"}]))
    assert calls["value"] == 1 and calls["patch"] == 1 and calls["stream"] == 1
    assert set(table_rows(dash)) == {"b", "c"}
    assert feed.last_event_id == "5"

    # A garbled event is skipped; the table stays.
    feed._on_event("session-updated", "6", "{not json")
    assert set(table_rows(dash)) == {"b", "c"}

    # refresh replaces everything
    feed._on_event("refresh", "7", event("refresh", [claude_session("c")]))
    assert set(table_rows(dash)) == {"c"}
    assert "1** sessions" in dash.summary.object


def test_filters_apply_to_live_updates(view: tuple[Feed, DashboardView, dict[str, int]]) -> None:
    feed, dash, _ = view
    feed._on_event("init", "1", event("init", [panel_session("a"), claude_session("c")]))
    dash.source_filter.value = ["panel"]
    assert set(table_rows(dash)) == {"a"}
    feed._on_event("session-created", "2", event("session-created", [claude_session("d")]))
    assert set(table_rows(dash)) == {"a"}
    dash.status_filter.value = ["running"]
    assert set(table_rows(dash)) == set()
    feed._on_event("session-updated", "3", event("session-updated", [panel_session("a", status="running")]))
    assert set(table_rows(dash)) == {"a"}
    dash.status_filter.value = list(STATUS_COLOURS)
    dash.source_filter.value = ["panel", "claude"]
    dash.text_filter.value_input = "sessionwatch"
    assert set(table_rows(dash)) == {"c", "d"}


def test_the_host_menu_lists_the_hosts_and_keeps_one_machines_sessions(view: tuple[Feed, DashboardView, dict[str, int]]) -> None:
    feed, dash, _ = view
    sessions = [claude_session("a", host="alpha"), claude_session("b", host="beta"), panel_session("p")]
    feed._on_event("init", "1", event("init", sessions))
    assert list(dash.host_filter.options) == ["All hosts", "alpha", "beta", "box"]
    dash.host_filter.value = "beta"
    assert set(table_rows(dash)) == {"b"}
    feed._on_event("session-created", "2", event("session-created", [claude_session("c", host="gamma")]))
    assert set(table_rows(dash)) == {"b"} and "gamma" in dash.host_filter.options
    dash.host_filter.value = ""
    assert set(table_rows(dash)) == {"a", "b", "c", "p"}


# --------------------------------------------------------------------------
# Connection states: the web page's fallback rules
# --------------------------------------------------------------------------


class States:
    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.seen: list[str] = []
        self.lock = threading.Lock()
        feed.subscribe(self)

    def __call__(self, what: str) -> None:
        if what == "state":
            with self.lock:
                self.seen.append(self.feed.state)

    def wait(self, state: str, timeout: float = 10.0) -> None:
        wait_for(lambda: self.feed.state == state, timeout=timeout, what=f"state {state} (seen {self.seen})")


def test_feed_reconnects_five_times_then_polls_then_goes_live_again() -> None:
    with fake_server() as server:
        server.sessions["a"] = panel_session("a")
        server.stream_status = 503
        feed = Feed(server.url, backoff_s=(0.05, 0.05, 0.05, 0.05, 0.05), poll_s=0.1, sse_retry_s=0.5)
        states = States(feed)
        feed.start()
        try:
            states.wait("polling")
            assert states.seen[:5] == ["reconnecting"] * 5, states.seen
            assert feed.attempt == 5
            assert "a" in feed.sessions()  # the snapshot from /all
            server.sessions["b"] = panel_session("b")
            wait_for(lambda: "b" in feed.sessions(), timeout=5, what="the next poll")
            server.stream_status = None  # the stream works again
            states.wait("live")
            assert feed.attempt == 0
            server.kill("b")
            wait_for(lambda: feed.sessions()["b"]["kill_requested"], timeout=5, what="event while live")
        finally:
            feed.stop()


def test_feed_is_offline_while_nothing_answers_and_recovers() -> None:
    port = free_port()
    feed = Feed(f"http://127.0.0.1:{port}", backoff_s=(0.05,) * 5, poll_s=0.1, sse_retry_s=0.3)
    states = States(feed)
    feed.start()
    try:
        states.wait("offline")
        server = FakeServer(port=port).start()
        try:
            states.wait("live")
        finally:
            server.stop()
    finally:
        feed.stop()


@pytest.mark.parametrize("status", [401, 403])
def test_feed_reports_a_rejected_token(status: int) -> None:
    # 403 used to count as the server being away: five reconnects, then polling.
    with fake_server() as server:
        server.stream_status = status
        feed = Feed(server.url, token="wrong", backoff_s=(0.05,) * 5, poll_s=0.1)
        states = States(feed)
        feed.start()
        try:
            states.wait("unauthorized")
            assert "reconnecting" not in states.seen
        finally:
            feed.stop()


# --------------------------------------------------------------------------
# Chromium, real server, real app
# --------------------------------------------------------------------------


class DashboardProcess:
    """`python -m sessionwatch dashboard` as a subprocess."""

    def __init__(self, server_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sessionwatch", "dashboard",
             "--server-url", server_url, "--port", str(self.port)],
            env=child_env(),
        )  # fmt: skip

        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"dashboard exited with {self.process.returncode}")
            try:
                return httpx.get(self.url, timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30, interval=0.1, what="the dashboard")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError("dashboard ignored Ctrl-C") from None
        return self.process.returncode


@pytest.mark.usefixtures("chromium_bin")  # fails, never skips, without Chromium
def test_dashboard_in_chromium_rows_live_and_kill(
    sw_server: Callable[..., Any], projects: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    srv = sw_server(projects_dir=projects)
    claude_count = sum(1 for s in httpx.get(f"{srv.url}/all").json()["sessions"] if s["source"] == "claude")
    assert claude_count > 0
    app = PanelServe(env={"SESSIONWATCH_URL": srv.url}).start()
    dashboard = DashboardProcess(srv.url)
    watch = StreamWatch(srv.url, "?source=panel")
    client: BokehClient | None = None
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.goto(dashboard.url)
            expect(page.locator(".sw-connection-live")).to_be_visible(timeout=20_000)
            rows = page.locator(".tabulator-row")
            expect(rows).to_have_count(claude_count, timeout=10_000)

            # A Panel session opened now appears without a reload.
            client = BokehClient(app.url)
            sid = client.id
            app_name = watch.wait_session(sid)["project"]
            expect(rows).to_have_count(claude_count + 1, timeout=10_000)
            page.get_by_placeholder("project, title, branch, task…").fill(app_name)
            expect(rows).to_have_count(1, timeout=10_000)
            status = rows.first.locator(".sw-status")
            expect(status).to_have_text("idle")
            expect(status).to_have_css("background-color", "rgb(220, 252, 231)")  # idle green

            # Status changes land in place: flag it running via the API the tracker uses.
            httpx.put(f"{srv.url}/sessions/{sid}/status", json={"status": "running", "current_task": "Export"})
            expect(status).to_have_text("running", timeout=10_000)
            expect(status).to_have_css("background-color", "rgb(254, 240, 138)")  # running yellow
            expect(rows.first).to_contain_text("Export")

            # Kill: the button asks first, then the app's session closes.
            rows.first.locator(".sw-kill").click()
            confirm = page.get_by_role("button", name="Kill session")
            expect(confirm).to_be_visible(timeout=5_000)
            assert not client.closed.is_set()
            requested = time.monotonic()
            confirm.click()
            assert client.closed.wait(5), "the app's websocket stayed open"
            assert client.close_code == 1001 and client.close_reason == KILL_CLOSE_REASON
            latency = time.monotonic() - requested
            watch.wait_gone(sid, timeout=10)  # deregistered by the app's tracker
            try:
                expect(rows).to_have_count(0, timeout=10_000)  # and gone from the table
            except AssertionError:
                print("\n".join(console))
                raise
            print(f"\ndashboard kill: websocket closed {latency * 1000:.0f} ms after Confirm")
            detail = httpx.get(f"{srv.url}/sessions/{sid}")
            assert detail.status_code == 404  # deregistered, not just flagged
            browser.close()
    finally:
        if client is not None:
            client.close()
        watch.close()
        code = dashboard.stop()
        app.stop()
    assert code == 0, "dashboard did not exit cleanly on Ctrl-C"


def test_feed_uses_the_token(sw_server: Callable[..., Any], projects: Path) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--token", "s3cret"])
    feed = Feed(srv.url, token="s3cret")
    states = States(feed)
    feed.start()
    try:
        states.wait("live")
        wait_for(lambda: feed.sessions(), timeout=10, what="the init event")
    finally:
        feed.stop()
    wrong = Feed(srv.url, token="nope")
    states = States(wrong)
    wrong.start()
    try:
        states.wait("unauthorized")
    finally:
        wrong.stop()


# --------------------------------------------------------------------------
# Session fields are text, never markup
# --------------------------------------------------------------------------

HOSTILE_APP = "![x](http://127.0.0.1:9/t.png) [u](https://example.org/u) <img src=http://127.0.0.1:9/h.png>"
HOSTILE_USER = "*eve* <b>[v](https://example.org/v)</b>"


def test_kill_confirmation_shows_session_fields_as_plain_text(
    view: tuple[Feed, DashboardView, dict[str, int]],
) -> None:
    """Regression: the confirmation was a Markdown pane fed the app name, so
    `![x](http://host/t.png)` made the browser fetch the image and `[u](...)`
    became a link."""
    import panel as pn

    feed, dash, _ = view
    feed._on_event("init", "1", event("init", [panel_session("p-1", project=HOSTILE_APP, user=HOSTILE_USER)]))

    class Click:
        column = "kill"
        row = 0

    dash._on_click(Click())
    assert dash.confirm.open
    pane = dash.confirm_text
    assert not isinstance(pane, pn.pane.Markdown)
    shown = pane.object
    # Not Markdown, and no tag of the fields' own survives: the HTML the pane
    # renders has only the dashboard's markup.
    assert "<img" not in shown and "<a " not in shown and "<b>[" not in shown, shown
    text = html.unescape(re.sub(r"<[^>]+>", "", shown))
    assert HOSTILE_APP in text and HOSTILE_USER in text  # shown as typed


@pytest.mark.usefixtures("chromium_bin")  # fails, never skips, without Chromium
def test_hostile_session_fields_fetch_nothing_and_link_nowhere_in_chromium(
    sw_server: Callable[..., Any], tmp_path: Path
) -> None:
    """Regression, in the browser: an app name `![x](http://host/t.png)` made the
    kill confirmation fetch the image. Fields with Markdown and HTML in them
    are shown as typed, in the table and the confirmation, and the page asks
    nothing of the URLs in them."""
    from playwright.sync_api import expect, sync_playwright

    (tmp_path / "projects").mkdir()
    srv = sw_server(projects_dir=tmp_path / "projects")
    trap = f"http://127.0.0.1:{free_port()}"  # nothing listens: a fetch would only show as a request
    app_name = f"![x]({trap}/md.png) [u](https://example.org/u) <img src={trap}/html.png>"
    user = f"<img src={trap}/user.png>*eve*"
    task = f"![t]({trap}/task.png)"
    r = httpx.post(f"{srv.url}/sessions", json={"app_name": app_name, "user_id": user})
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    httpx.put(f"{srv.url}/sessions/{sid}/status", json={"status": "running", "current_task": task}).raise_for_status()
    dashboard = DashboardProcess(srv.url)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            requests: list[str] = []
            page.on("request", lambda req: requests.append(req.url))
            page.goto(dashboard.url)
            rows = page.locator(".tabulator-row")
            expect(rows).to_have_count(1, timeout=20_000)
            for text in (app_name, user, task):
                expect(rows.first).to_contain_text(text)  # as typed, in the cells
            rows.first.locator(".sw-kill").click()
            expect(page.get_by_role("button", name="Kill session")).to_be_visible(timeout=5_000)
            expect(page.get_by_text("Kill Panel session")).to_contain_text(app_name)
            expect(page.get_by_text("Kill Panel session")).to_contain_text(user)
            # Nothing in the page points at the fields' URLs (a rendered image
            # is fetched as soon as it is in the document).
            assert page.locator(f"img[src^='{trap}']").count() == 0
            assert page.locator("a[href^='https://example.org']").count() == 0
            assert [u for u in requests if u.startswith(trap) or "example.org" in u] == []
            browser.close()
    finally:
        dashboard.stop()
