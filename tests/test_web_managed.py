"""Managed sessions on the web page, in real Chromium against a real
``sessionwatch serve`` that starts the real Claude Code CLI against the
scripted fake Messages API (tests/fakeapi.py), as tests/test_managed.py does.

The page starts a session from its form, streams the conversation, sends a
second message, answers a Write permission inline, stops and resumes; a
``sessionwatch run`` reported through ``POST /runs`` raises the LIVE banner.
Every wait is a condition with a deadline.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from .conftest import Server, wait_for
from .fakeapi import Turn, Usage
from .test_managed import MODEL, Managed, managed  # noqa: F401  (the fixture)
from .test_web_e2e import browser, open_page, wait_indicator  # noqa: F401  (fixtures)

TURN_MS = 60_000  # a turn of the real CLI on two shared cores

# Every EventSource the page makes, to tell whether the conversation's stream is closed.
KEEP_EVENT_SOURCES = """
window.__eventSources = [];
const Original = window.EventSource;
window.EventSource = class extends Original {
    constructor(...args) { super(...args); window.__eventSources.push(this); }
};
"""


def start_from_the_form(page: Page, prompt: str, cwd: str, **fields: str) -> None:
    page.locator("#new-session-open").click()
    expect(page.locator("#new-session")).to_be_visible()
    page.fill("#new-prompt", prompt)
    page.fill("#new-cwd", cwd)
    for name, value in fields.items():
        if name == "permission_mode":
            page.select_option("#new-permission-mode", value)
        else:
            page.fill(f"#new-{name.replace('_', '-')}", value)
    page.locator("#new-start").click()


def opened_session(page: Page) -> str:
    """The id of the session whose detail the page opened (the URL's ?session=)."""
    page.wait_for_function("() => new URL(location.href).searchParams.get('session')", timeout=10_000)
    sid = page.evaluate("() => new URL(location.href).searchParams.get('session')")
    assert isinstance(sid, str) and sid
    return sid


def conversation(page: Page, kind: str) -> Any:
    return page.locator(f"#detail-body .conversation li[data-kind='{kind}']")


def test_new_session_streams_its_reply_then_a_second_turn_then_stop_and_resume(
    managed: Callable[..., Managed], open_page: Callable[..., Page]  # noqa: F811
) -> None:
    m = managed([Turn.text("first answer", usage=Usage(1200, 300)), Turn.text("second answer", usage=Usage(800, 100))])
    page = open_page(m.srv.url + "/")
    wait_indicator(page, ("Live",))

    start_from_the_form(page, "say hello", str(m.where.cwd), name="greeter", model=MODEL, max_cost_usd="2")
    sid = opened_session(page)
    expect(page.locator("#new-session")).to_be_hidden()
    # the row, with its managed marker
    expect(page.locator(f'tr[data-id="{sid}"] .managed-marker')).to_have_text("greeter", timeout=10_000)
    # the conversation streams: the prompt sent, the reply, the turn's end with its cost
    expect(conversation(page, "prompt").first).to_contain_text("say hello", timeout=TURN_MS)
    expect(conversation(page, "reply").first).to_contain_text("first answer", timeout=TURN_MS)
    expect(conversation(page, "result")).to_have_count(1, timeout=TURN_MS)
    expect(page.locator("#detail-body section.managed")).to_have_attribute("data-state", "waiting", timeout=TURN_MS)
    # raw protocol lines only when asked for
    assert conversation(page, "raw").count() == 0
    assert any(x["kind"] == "raw" for x in m.logs(sid)), "the CLI wrote protocol lines"
    page.locator("#detail-body .show-raw").check()
    expect(conversation(page, "raw").first).to_be_attached()
    page.locator("#detail-body .show-raw").uncheck()
    expect(conversation(page, "raw")).to_have_count(0)

    # what a waiting session offers: the message box, Stop; no Resume
    buttons = page.locator("#detail-body .managed-buttons button")
    expect(buttons).to_have_text(["Stop"])

    # the message box sends a second turn
    page.fill("#detail-body .managed-text", "again please")
    page.locator("#detail-body .managed-send button.send").click()
    expect(conversation(page, "reply").nth(1)).to_contain_text("second answer", timeout=TURN_MS)
    expect(conversation(page, "result")).to_have_count(2, timeout=TURN_MS)
    expect(page.locator("#detail-body .managed-text")).to_have_value("")
    # each turn's cost is the difference of the process's running totals
    totals = [x["cost_usd"] for x in m.logs(sid, kind="result")]
    assert len(totals) == 2 and totals[1] > totals[0] > 0
    shown = page.locator("#detail-body .conversation .turn-cost").all_inner_texts()
    assert shown == [f"this turn ${totals[0]:.4f}", f"this turn ${totals[1] - totals[0]:.4f}"], (shown, totals)

    # Stop: the process ends; Resume and Delete are offered instead
    page.locator("#detail-body button.action-stop").click()
    expect(page.locator("#detail-body section.managed")).to_have_attribute("data-state", "stopped", timeout=30_000)
    expect(buttons).to_have_text(["Resume", "Delete"], timeout=10_000)
    expect(page.locator("#detail-body .managed-send button.send")).to_be_hidden()
    # Resume (no text): a new process, waiting for a message
    page.locator("#detail-body button.action-resume").click()
    expect(page.locator("#detail-body section.managed")).to_have_attribute("data-state", "waiting", timeout=TURN_MS)
    expect(buttons).to_have_text(["Stop"], timeout=10_000)
    assert [a["action"] for a in httpx.get(f"{m.srv.url}/sessions/{sid}", timeout=10).json()["actions"]][-2:] == ["stop", "resume"]
    # the conversation goes on streaming across the restart of the process: both processes' starts
    page.wait_for_function(
        "() => [...document.querySelectorAll(\"#detail-body .conversation li[data-kind='system'] .text\")]"
        ".filter(t => t.textContent.startsWith('started:')).length === 2",
        timeout=TURN_MS,
    )
    # who did what, newest first
    expect(page.locator("#detail-body .actions-log li .action")).to_have_text(["resume", "stop", "send", "start"], timeout=10_000)
    expect(page.locator("#detail-body .actions-log li").last).to_contain_text("by local from 127.0.0.1")

    # closing the detail takes its managed part away (its stream too: see the restart test)
    page.locator("#detail-close").click()
    expect(page.locator("#detail")).to_be_hidden()
    assert page.locator("#detail-body .conversation").count() == 0


def test_a_write_permission_is_approved_inline_and_the_file_is_written(
    managed: Callable[..., Managed], open_page: Callable[..., Page]  # noqa: F811
) -> None:
    m = managed([])
    target = m.where.cwd / "note.txt"
    m.api.add(Turn.tool_use("Write", {"file_path": str(target), "content": "hello\n"}), Turn.text("wrote it"))
    page = open_page(m.srv.url + "/")
    wait_indicator(page, ("Live",))
    start_from_the_form(page, "write a note", str(m.where.cwd), model=MODEL)
    sid = opened_session(page)

    ask = page.locator("#detail-body .managed-pending")
    expect(ask).to_contain_text("note.txt", timeout=TURN_MS)
    expect(conversation(page, "permission").first).to_contain_text("asks", timeout=10_000)
    expect(page.locator(f'tr[data-id="{sid}"] td[data-col="status"]')).to_contain_text("needs_approval")
    assert not target.exists()
    ask.locator("button.answer.approve").click()
    wait_for(target.exists, 30, "the approved Write to create the file")
    assert target.read_text() == "hello\n"
    expect(ask).to_be_hidden(timeout=10_000)
    expect(conversation(page, "permission").filter(has_text="allowed")).to_have_count(1, timeout=10_000)
    expect(conversation(page, "reply").last).to_contain_text("wrote it", timeout=TURN_MS)
    expect(conversation(page, "tool").first).to_contain_text("note.txt")
    expect(conversation(page, "tool").first.locator(".who")).to_have_text("Write")


def test_interrupt_ends_a_turn_that_is_still_running(
    managed: Callable[..., Managed], open_page: Callable[..., Page]  # noqa: F811
) -> None:
    gate = threading.Event()
    m = managed([Turn.text("too slow", gate=gate)])
    try:
        page = open_page(m.srv.url + "/")
        wait_indicator(page, ("Live",))
        start_from_the_form(page, "take your time", str(m.where.cwd), model=MODEL)
        opened_session(page)
        m.api.wait_requests(1)
        interrupt = page.locator("#detail-body button.action-interrupt")
        expect(interrupt).to_be_visible(timeout=TURN_MS)
        interrupt.click()
        expect(page.locator("#detail-body section.managed")).to_have_attribute("data-state", "waiting", timeout=TURN_MS)
        expect(page.locator("#detail-body .managed-buttons button")).to_have_text(["Stop"], timeout=10_000)
        expect(conversation(page, "result").last).to_contain_text("turn", timeout=10_000)
        assert conversation(page, "reply").count() == 0
        expect(page.locator("#detail-body .managed-error")).to_have_text("")
    finally:
        gate.set()


def test_a_refused_start_shows_the_api_sentence(projects: Path, sw_server: Callable[..., Server], open_page: Callable[..., Page]) -> None:  # noqa: F811
    srv = sw_server(projects_dir=projects)
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    start_from_the_form(page, "hello", "/no/such/dir")
    expect(page.locator("#new-error")).to_have_text("Could not start the session: cwd /no/such/dir does not exist", timeout=10_000)
    expect(page.locator("#new-session")).to_be_visible()
    # bypassPermissions is offered; this server refuses it and the page says why
    page.fill("#new-cwd", str(projects))
    page.select_option("#new-permission-mode", "bypassPermissions")
    page.locator("#new-start").click()
    expect(page.locator("#new-error")).to_contain_text("--allow-bypass-permissions", timeout=10_000)
    # checked before sending: an empty prompt
    page.fill("#new-prompt", "")
    page.locator("#new-start").click()
    expect(page.locator("#new-error")).to_have_text("Write the first prompt.")
    assert not [s for s in httpx.get(srv.url + "/all", timeout=10).json()["sessions"] if s.get("managed")]


def test_live_banner_follows_a_run_reported_through_post_runs(
    projects: Path, sw_server: Callable[..., Server], open_page: Callable[..., Page]  # noqa: F811
) -> None:
    srv = sw_server(projects_dir=projects)
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    banner = page.locator("#live-banner")
    expect(banner).to_be_hidden()
    sid = str(uuid.uuid4())
    evil = '<img src=x onerror="window.__owned=1">'

    def report(state: str, cost: float, turns: int, logs: list[dict[str, Any]] | None = None) -> None:
        body = {"session_id": sid, "name": "nightly", "cwd": str(projects), "pid": 4242, "state": state,
                "figures": {"total_cost_usd": cost, "num_turns": turns}, "logs": logs or []}  # fmt: skip
        r = httpx.post(srv.url + "/runs", json=body, timeout=10)
        assert r.status_code == 200, r.text

    now = time.time()
    report("running", 0.12, 3, [
        {"ts": now, "level": "info", "source": "stdin", "kind": "prompt", "content": "fix the build"},
        {"ts": now, "level": "info", "source": "stdout", "kind": "reply", "content": evil},
        {"ts": now, "level": "info", "source": "stdout", "kind": "result", "content": "turn ended", "cost_usd": 0.12},
    ])  # fmt: skip
    expect(banner).to_be_visible(timeout=10_000)
    expect(banner).to_contain_text("LIVE")
    expect(banner.locator("button.live-run")).to_have_text("nightly: $0.12, 3 turns")
    expect(page.locator(f'tr[data-id="{sid}"] .managed-marker')).to_have_text("run · nightly")
    report("running", 0.3, 4)
    expect(banner.locator("button.live-run")).to_have_text("nightly: $0.30, 4 turns", timeout=10_000)

    # the banner opens the run's detail: its conversation, model output as text, and Stop (a run's only control)
    banner.locator("button.live-run").click()
    expect(conversation(page, "reply")).to_have_count(1, timeout=10_000)
    expect(conversation(page, "reply").locator(".text")).to_have_text(evil)
    assert page.locator("#detail-body .conversation img").count() == 0
    assert page.evaluate("() => window.__owned === undefined")
    expect(page.locator("#detail-body .turn-cost")).to_have_text("this turn $0.1200")
    expect(page.locator("#detail-body .managed-buttons button")).to_have_text(["Stop"])
    expect(page.locator("#detail-body .managed-send")).to_be_hidden()

    # a line reported later streams in
    report("running", 0.3, 4, [{"ts": time.time(), "level": "info", "source": "stdout", "kind": "tool", "content": "Bash: make", "tool_name": "Bash"}])
    expect(conversation(page, "tool")).to_have_text(re.compile(r"Bash\s*Bash: make"), timeout=10_000)

    report("ended", 0.31, 5)
    expect(banner).to_be_hidden(timeout=10_000)
    expect(page.locator("#detail-body .managed-buttons button")).to_have_text(["Delete"], timeout=10_000)

    # Delete asks first; then the run is forgotten: its row goes, the detail says so
    asked: list[str] = []

    def confirm(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    page.locator("#detail-body button.action-delete").click()
    expect(page.locator(f'tr[data-id="{sid}"]')).to_have_count(0, timeout=10_000)
    expect(page.locator("#detail-body")).to_contain_text("This session is gone", timeout=10_000)
    assert asked and "nightly" in asked[0]
    assert httpx.get(f"{srv.url}/sessions/{sid}/logs", timeout=10).status_code == 404


def test_a_403_hides_the_buttons_of_a_token_that_may_only_read(
    projects: Path, sw_server: Callable[..., Server], open_page: Callable[..., Page]  # noqa: F811
) -> None:
    srv = sw_server(projects_dir=projects)
    sid = str(uuid.uuid4())
    r = httpx.post(srv.url + "/runs", json={"session_id": sid, "name": "nightly", "state": "running", "figures": {}}, timeout=10)
    assert r.status_code == 200, r.text
    page = open_page(f"{srv.url}/?session={sid}")
    wait_indicator(page, ("Live",))
    stop = page.locator("#detail-body button.action-stop")
    expect(stop).to_be_visible(timeout=10_000)
    expect(page.locator("#new-session-open")).to_be_visible()
    # this person's token may only read: the server says 403 (the route stands in for a viewer token)
    page.route(
        f"**/sessions/{sid}/stop",
        lambda route: route.fulfill(status=403, content_type="application/json", body='{"error": "this token may only read"}'),
    )
    stop.click()
    expect(page.locator("#detail-body .managed-error")).to_have_text("Could not stop the session: this token may only read")
    expect(page.locator("#detail-body .managed-buttons button")).to_have_count(0)
    expect(page.locator("#new-session-open")).to_be_hidden()


def test_the_conversation_follows_again_after_the_last_line_it_saw_when_the_server_restarts(
    projects: Path, sw_server: Callable[..., Server], open_page: Callable[..., Page]  # noqa: F811
) -> None:
    srv = sw_server(projects_dir=projects)
    sid = str(uuid.uuid4())

    def report(*contents: str) -> None:
        logs = [{"ts": time.time(), "level": "info", "source": "stdout", "kind": "reply", "content": c} for c in contents]
        body = {"session_id": sid, "name": "nightly", "state": "running", "figures": {}, "logs": logs}
        r = httpx.post(srv.url + "/runs", json=body, timeout=10)
        assert r.status_code == 200, r.text

    report("one", "two")
    follows: list[str] = []
    page = open_page(f"{srv.url}/?session={sid}")
    page.on("request", lambda req: follows.append(req.url) if "/logs?follow=1" in req.url else None)
    page.add_init_script(KEEP_EVENT_SOURCES)
    page.reload()
    replies = conversation(page, "reply").locator(".text")
    expect(replies).to_have_text(["one", "two"], timeout=10_000)
    last = max(x["id"] for x in httpx.get(f"{srv.url}/sessions/{sid}/logs", timeout=10).json()["logs"])

    srv.stop()
    expect(page.locator("#detail-body .conversation-view")).not_to_have_attribute("data-state", "live", timeout=10_000)
    srv.start()
    report("three")
    expect(replies).to_have_text(["one", "two", "three"], timeout=30_000)
    assert any(url.endswith(f"&after={last}") for url in follows), follows
    # closing the detail closes its stream
    expect(page.locator("#detail-body .conversation-view")).to_have_attribute("data-state", "live", timeout=10_000)
    assert page.evaluate(f"() => window.__eventSources.filter(e => e.url.includes('{sid}/logs') && e.readyState !== 2).length") == 1
    page.locator("#detail-close").click()
    page.wait_for_function(
        "id => window.__eventSources.filter(e => e.url.includes(id + '/logs') && e.readyState !== 2).length === 0",
        arg=sid,
        timeout=5_000,
    )


def test_with_a_token_the_buttons_wait_for_sign_in_and_a_401_asks_again(
    projects: Path, sw_server: Callable[..., Server], open_page: Callable[..., Page]  # noqa: F811
) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--token", "s3cret"])
    sid = str(uuid.uuid4())
    auth = {"Authorization": "Bearer s3cret"}
    body = {"session_id": sid, "name": "nightly", "state": "running", "figures": {"total_cost_usd": 0.05, "num_turns": 1}}
    assert httpx.post(srv.url + "/runs", json=body, headers=auth, timeout=10).status_code == 200
    page = open_page(f"{srv.url}/?session={sid}")
    # not signed in: the sign-in form, no New session
    expect(page.locator("#signin")).to_be_visible(timeout=10_000)
    expect(page.locator("#new-session-open")).to_be_hidden()
    page.fill("#token", "s3cret")
    page.locator("#signin button[type=submit]").click()
    wait_indicator(page, ("Live",))
    expect(page.locator("#new-session-open")).to_be_visible()
    expect(page.locator("#live-banner button.live-run")).to_have_text("nightly: $0.05, 1 turn", timeout=10_000)
    stop = page.locator("#detail-body button.action-stop")
    expect(stop).to_be_visible(timeout=10_000)

    # the sign-in expired (the cookie is gone): Stop gets 401, the page asks for the token and hides what it offers
    page.context.clear_cookies()
    stop.click()
    expect(page.locator("#signin")).to_be_visible(timeout=10_000)
    expect(page.locator("#new-session-open")).to_be_hidden()
    expect(page.locator("#detail-body .managed-buttons button")).to_have_count(0)
    assert httpx.get(f"{srv.url}/sessions/{sid}", headers=auth, timeout=10).json()["controls"] == ["stop"], "nothing was stopped"
