"""Approvals on the web page, in real Chromium against a real ``sessionwatch serve``.

A permission prompt is driven with the hook payloads Claude Code 2.1.330 sent
(tests/vectors/hooks/interactive.json, POSTed to /hooks). With away mode on,
the PermissionRequest's HTTP request stays open until it is answered: it is
sent from a thread, and the page's Approve / Deny must make it return Claude
Code's decision. Every wait is a condition with a deadline.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from .conftest import Server, wait_for
from .test_web_e2e import SESSION, SESSION_FILE, append_turn, browser, open_page, row_ids, server_sessions, wait_indicator  # noqa: F401  (fixtures)

VECTORS = Path(__file__).parent / "vectors" / "hooks" / "interactive.json"
CWD = "/home/ann/notes-app"


def hook_payloads(sid: str) -> dict[str, dict[str, Any]]:
    """The http hooks' payloads of the recorded interactive run, by event, for session ``sid``."""
    calls = json.loads(VECTORS.read_text(encoding="utf-8"))["calls"]
    text = json.dumps({c["event"]: c["payload"] for c in calls if c["form"] == "http"})
    text = text.replace("00000000-0000-4000-8000-000000000001", sid).replace("$CWD", CWD).replace("$HOME", "/home/ann")
    payloads: dict[str, dict[str, Any]] = json.loads(text)
    return payloads


def post_hook(srv: Server, payload: dict[str, Any]) -> httpx.Response:
    return httpx.post(srv.url + "/hooks", json=payload, timeout=120)


class HeldPrompt:
    """A PermissionRequest posted from a thread: its answer arrives when someone decides."""

    def __init__(self, srv: Server, sid: str) -> None:
        self.srv = srv
        self.sid = sid
        payloads = hook_payloads(sid)
        for name in ("UserPromptSubmit", "PreToolUse"):
            post_hook(srv, payloads[name]).raise_for_status()
        self.out: list[httpx.Response] = []
        self.thread = threading.Thread(target=lambda: self.out.append(post_hook(srv, payloads["PermissionRequest"])), daemon=True)
        self.thread.start()
        self.pending_id = str(wait_for(self._waiting, 10, "the prompt held in GET /away"))

    def _waiting(self) -> str | None:
        for w in httpx.get(self.srv.url + "/away", timeout=5).json()["waiting"]:
            if w["session_id"] == self.sid:
                return str(w["pending_id"])
        return None

    def answer(self) -> dict[str, Any]:
        """What the hook's HTTP request returned (Claude Code's decision)."""
        self.thread.join(30)
        assert not self.thread.is_alive(), "the held PermissionRequest never returned"
        assert self.out[0].status_code == 200, self.out[0].text
        body: dict[str, Any] = self.out[0].json()
        return body


def decision(behavior: str, **extra: str) -> dict[str, Any]:
    return {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": behavior, **extra}}}


def row(page: Page, sid: str) -> Any:
    return page.locator(f'tr[data-id="{sid}"]')


@pytest.fixture
def srv(projects: Path, sw_server: Callable[..., Server]) -> Server:
    return sw_server(projects_dir=projects, extra_args=["--approval-wait-s", "60"])


def test_away_switch_then_approve_from_the_row_returns_allow_to_the_hook(
    srv: Server, projects: Path, open_page: Callable[..., Page]
) -> None:
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    page.wait_for_selector("#rows tr")

    # The switch shows the server's state, and turning it on is PUT /away.
    expect(page.locator("#away")).not_to_be_checked()
    expect(page.locator("#away-toggle")).to_have_attribute("data-on", "off")
    page.locator("#away").check()
    wait_for(lambda: httpx.get(srv.url + "/away", timeout=5).json()["on"] is True or None, 10, "away mode on")
    expect(page.locator("#away-toggle")).to_have_attribute("data-on", "on")

    sid = str(uuid.uuid4())
    prompt = HeldPrompt(srv, sid)
    r = row(page, sid)
    expect(r.locator('td[data-col="status"]')).to_contain_text("needs_approval", timeout=10_000)
    # The row names the tool and says in one line what it wants to do.
    expect(r.locator('td[data-col="status"] .status-note')).to_have_text("Write: note.txt")
    # Needs-approval rows come first: a fixture session active after the prompt stays below it
    # (the default sort is by last activity, most recent first).
    before = server_sessions(srv.url)[SESSION]["message_count"]
    append_turn(projects / SESSION_FILE, prompt="meanwhile", reply="Done.")
    page.wait_for_function(
        "([id, n]) => document.querySelector(`tr[data-id='${id}'] td[data-col='message_count']`).textContent !== n",
        arg=[SESSION, str(before)],
        timeout=5_000,
    )
    assert row_ids(page)[:2] == [sid, SESSION]
    # The switch counts the prompt waiting for an answer.
    expect(page.locator("#away-toggle .away-label")).to_have_text("Away (1 waiting)", timeout=5_000)

    r.locator("button.answer.approve").click()
    assert prompt.answer() == decision("allow")
    expect(page.locator("#message")).to_contain_text("Approved: Write: note.txt", timeout=5_000)
    # The prompt is no longer answerable: its buttons go.
    expect(r.locator("button.answer")).to_have_count(0, timeout=5_000)

    # The detail lists the decision: what, who, from where.
    r.locator('td[data-col="project"]').click()
    item = page.locator("#detail-body .approvals li")
    expect(item).to_have_count(1, timeout=5_000)
    expect(item).to_contain_text("allowed")
    expect(item).to_contain_text("Write: note.txt")
    expect(item).to_contain_text("by local from 127.0.0.1")
    recorded = httpx.get(f"{srv.url}/sessions/{sid}", timeout=5).json()["approvals"]
    assert [(a["decision"], a["tool"], a["pending_id"]) for a in recorded] == [("allow", "Write", prompt.pending_id)]


def test_deny_with_a_message_from_the_detail_reaches_the_hook_and_is_listed(srv: Server, open_page: Callable[..., Page]) -> None:
    sid = str(uuid.uuid4())
    page = open_page(f"{srv.url}/?session={sid}")
    wait_indicator(page, ("Live",))
    # Away mode turned on elsewhere: the switch follows once a prompt is held.
    httpx.put(srv.url + "/away", json={"on": True}, timeout=5).raise_for_status()
    prompt = HeldPrompt(srv, sid)
    expect(page.locator("#away")).to_be_checked(timeout=5_000)

    deny = page.locator("#detail-body .detail-actions button.answer.deny")
    expect(deny).to_be_enabled(timeout=10_000)
    asked: list[str] = []

    def reply(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept("  not on a Sunday ")

    page.once("dialog", reply)
    deny.click()
    assert prompt.answer() == decision("deny", message="not on a Sunday")
    assert len(asked) == 1 and "message" in asked[0]
    item = page.locator("#detail-body .approvals li")
    expect(item).to_have_count(1, timeout=5_000)
    expect(item).to_contain_text("denied")
    expect(item.locator(".message")).to_have_text("not on a Sunday")


def test_cancelled_deny_sends_nothing_and_a_409_shows_the_api_sentence(srv: Server, open_page: Callable[..., Page]) -> None:
    httpx.put(srv.url + "/away", json={"on": True}, timeout=5).raise_for_status()
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    sid = str(uuid.uuid4())
    prompt = HeldPrompt(srv, sid)
    r = row(page, sid)
    expect(r.locator("button.answer.deny")).to_be_enabled(timeout=10_000)

    # Cancel in the deny dialog: nothing is sent, the prompt still waits.
    page.once("dialog", lambda d: d.dismiss())
    r.locator("button.answer.deny").click()
    assert prompt._waiting() == prompt.pending_id
    assert prompt.thread.is_alive()

    # Someone else answers first (another dashboard); the page's click then gets the server's 409.
    def answered_elsewhere_first(route: Route) -> None:
        other = httpx.post(
            f"{srv.url}/sessions/{sid}/approve", json={"pending_id": prompt.pending_id, "decision": "deny"}, timeout=10
        )
        assert other.status_code == 200, other.text
        route.fulfill(response=route.fetch())

    page.route(f"**/sessions/{sid}/approve", answered_elsewhere_first)
    r.locator("button.answer.approve").click()
    expect(page.locator("#message")).to_have_text(
        "Could not answer the prompt: that prompt is no longer pending (already answered: deny)", timeout=5_000
    )
    assert prompt.answer() == decision("deny", message="sessionwatch: denied from the dashboard")


RECORD_NOTIFICATIONS = """
window.__notifications = [];
window.Notification = class {
    constructor(title, options) {
        this.title = title;
        window.__notifications.push({ title, body: options && options.body, url: options && options.data && options.data.url });
        window.__lastNotification = this;
    }
    static get permission() { return 'granted'; }
    static requestPermission() { return Promise.resolve('granted'); }
};
"""


def test_notification_names_session_and_tool_links_to_detail_and_is_quiet_for_the_open_one(
    srv: Server, browser: Any  # noqa: F811 (the fixture)
) -> None:
    context = browser.new_context()
    try:
        context.add_init_script(RECORD_NOTIFICATIONS)
        page = context.new_page()
        page.goto(srv.url + "/")
        wait_indicator(page, ("Live",))
        page.check("#notify")
        looked_at, other = str(uuid.uuid4()), str(uuid.uuid4())
        a, b = hook_payloads(looked_at), hook_payloads(other)
        for payloads in (a, b):
            post_hook(srv, payloads["UserPromptSubmit"]).raise_for_status()
        expect(row(page, looked_at)).to_be_visible(timeout=5_000)
        expect(row(page, other)).to_be_visible(timeout=5_000)
        row(page, looked_at).locator('td[data-col="project"]').click()
        expect(page.locator("#detail")).to_be_visible()

        # Away mode off: the prompts are only shown (the hook answers at once).
        assert post_hook(srv, a["PermissionRequest"]).json() == {}
        expect(row(page, looked_at).locator('td[data-col="status"]')).to_contain_text("needs_approval", timeout=5_000)
        assert post_hook(srv, b["PermissionRequest"]).json() == {}
        page.wait_for_function("() => window.__notifications.length >= 1", timeout=5_000)
        expect(row(page, other).locator('td[data-col="status"]')).to_contain_text("needs_approval", timeout=5_000)
        # Only the other session's: the one whose detail is open stays quiet.
        notes = page.evaluate("window.__notifications")
        assert notes == [
            {"title": "Write needs approval in notes-app", "body": "Write: note.txt", "url": f"?session={other}"}
        ], notes
        # A click opens that session's detail (the URL's ?session=).
        page.evaluate("() => window.__lastNotification.onclick()")
        page.wait_for_function("id => new URL(location.href).searchParams.get('session') === id", arg=other, timeout=5_000)
        expect(page.locator("#detail-body")).to_contain_text(other, timeout=5_000)
    finally:
        context.close()
