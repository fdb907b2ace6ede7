"""Away mode and Approve / Deny on the Panel dashboard, against a real ``sessionwatch serve``.

In the style of tests/test_dashboard.py: a dashboard tab (not served) whose
feed follows the real server's ``/stream``; its requests go through
``sessionwatch.clients``. A permission prompt is held with the hook payloads
Claude Code sent (tests/vectors/hooks/), from a thread, and the tab's buttons
must make that request return Claude Code's decision.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwatch.clients import ApiError, SyncApi
from sessionwatch.clients.control import approve, approve_body, get_away, set_away
from sessionwatch.integrations.panel.dashboard import DashboardView, Feed, session_row
from sessionwatch.integrations.panel.dashboard.rows import APPROVE_BUTTON, DENY_BUTTON

from .conftest import Server, wait_for
from .test_web_approvals import HeldPrompt, decision

PENDING = {"id": "p1", "kind": "permission", "tool": "Write", "summary": "Write: note.txt", "since": "2026-01-01T10:00:00Z", "answerable": True}


def claude(sid: str, **fields: Any) -> dict[str, Any]:
    return {"id": sid, "source": "claude", "project": "/w", "status": "needs_approval", "tokens": {}, **fields}


def test_rows_offer_approve_and_deny_only_for_a_held_prompt() -> None:
    held = session_row(claude("a", pending=PENDING, controls=["approve"]))
    assert (held["approve"], held["deny"]) == (APPROVE_BUTTON, DENY_BUTTON)
    shown = session_row(claude("b", pending=PENDING, controls=[]))  # away mode off: only shown
    assert (shown["approve"], shown["deny"]) == ("", "")
    assert session_row(claude("c", pending=None, controls=["approve"]))["approve"] == ""
    assert session_row({"id": "p", "source": "panel", "status": "idle"})["approve"] == ""


def test_approve_body_leaves_out_empty_messages() -> None:
    assert approve_body("p1", "deny", "   ") == {"pending_id": "p1", "decision": "deny"}
    with pytest.raises(ValueError):
        approve_body("p1", "maybe")  # type: ignore[arg-type]


class Click:
    def __init__(self, column: str, row: int) -> None:
        self.column = column
        self.row = row


@pytest.fixture
def srv(projects: Path, sw_server: Callable[..., Server]) -> Server:
    return sw_server(projects_dir=projects, extra_args=["--approval-wait-s", "60"])


@pytest.fixture
def tab(srv: Server) -> Iterator[DashboardView]:
    feed = Feed(srv.url).start()
    try:
        view = DashboardView(feed, srv.url, None)
        wait_for(lambda: feed.state == "live" and feed.sessions(), 10, "the feed live")
        yield view
    finally:
        feed.stop()


def row_of(view: DashboardView, sid: str) -> int:
    ids = [str(v) for v in view.table.value["id"]]
    return ids.index(sid)


def wait_buttons(view: DashboardView, sid: str) -> None:
    def shown() -> bool:
        view._apply()  # not served: apply what the feed holds
        return sid in view.rows and view.rows[sid]["approve"] == APPROVE_BUTTON

    wait_for(shown, 10, "Approve / Deny in the row")


def away(srv: Server) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(srv.url + "/away", timeout=5).json()
    return body


def test_away_switch_puts_and_shows_the_server_state(srv: Server, tab: DashboardView) -> None:
    wait_for(lambda: "Away: off" in tab.away_label.object, 10, "the switch loaded from GET /away")
    tab.away.value = True
    wait_for(lambda: away(srv)["on"] is True, 10, "PUT /away on")
    wait_for(lambda: "Away: on" in tab.away_label.object, 10, "the switch shows on")
    # Turned off elsewhere: the tab follows when a prompt comes or goes (and on load).
    with SyncApi(srv.url) as api:
        assert set_away(api, False)["on"] is False
        assert get_away(api)["on"] is False
    tab._load_away()
    assert tab.away.value is False and "Away: off" in tab.away_label.object
    assert away(srv)["on"] is False, "showing the server's state must not PUT it back"


def test_approve_and_deny_from_the_table_answer_the_held_hook(srv: Server, tab: DashboardView) -> None:
    tab.away.value = True
    wait_for(lambda: away(srv)["on"] is True, 10, "PUT /away on")

    sid = str(uuid.uuid4())
    prompt = HeldPrompt(srv, sid)
    wait_buttons(tab, sid)
    wait_for(lambda: "(1 waiting)" in tab.away_label.object, 10, "the switch counts the waiting prompt")
    tab._on_click(Click("approve", row_of(tab, sid)))
    assert prompt.answer() == decision("allow")
    wait_for(lambda: "Approved: Write: note.txt" in tab.message.object, 10, "the message")

    other = str(uuid.uuid4())
    prompt = HeldPrompt(srv, other)
    wait_buttons(tab, other)
    tab._on_click(Click("deny", row_of(tab, other)))
    assert tab.deny.open and "Write: note.txt" in tab.deny_text.object
    tab.deny_message.value = "not on a Sunday"
    tab._on_confirm_deny(None)
    assert not tab.deny.open
    assert prompt.answer() == decision("deny", message="not on a Sunday")
    recorded = httpx.get(f"{srv.url}/sessions/{other}", timeout=5).json()["approvals"]
    assert [(a["decision"], a["message"]) for a in recorded] == [("deny", "not on a Sunday")]


def test_an_answer_that_comes_too_late_shows_the_api_sentence(srv: Server, tab: DashboardView) -> None:
    with SyncApi(srv.url) as api:
        set_away(api, True)
    sid = str(uuid.uuid4())
    prompt = HeldPrompt(srv, sid)
    wait_buttons(tab, sid)
    with SyncApi(srv.url) as api:  # another dashboard answers first
        approve(api, sid, prompt.pending_id, "deny")
        with pytest.raises(ApiError) as raised:
            approve(api, sid, prompt.pending_id, "allow")
    assert raised.value.status == 409
    assert prompt.answer() == decision("deny", message="sessionwatch: denied from the dashboard")
    # The tab has not seen the change yet: its click gets the same 409.
    tab._request_answer(sid, prompt.pending_id, "allow", None, "Write: note.txt")
    wait_for(lambda: "no longer pending (already answered: deny)" in tab.message.object, 10, "the 409 sentence")
    assert tab.message.object.startswith("Could not answer the prompt: ")


# --- the token's role (named tokens): Kill, Approve / Deny and Away only for an operator ---------


@pytest.mark.parametrize(("role", "acting"), [("viewer", False), ("agent", False), ("operator", True), ("admin", True)])
def test_controls_show_only_for_a_role_that_may_act(
    projects: Path, tmp_path: Path, sw_server: Callable[..., Server], role: str, acting: bool
) -> None:
    from .test_roles import ADMIN_TOKEN, create_token

    db = tmp_path / "sessionwatch.db"
    token = ADMIN_TOKEN if role == "admin" else create_token(db, f"panel-{role}", role)
    srv = sw_server(projects_dir=projects, db=db, extra_args=["--token", ADMIN_TOKEN])
    feed = Feed(srv.url, token).start()
    try:
        view = DashboardView(feed, srv.url, token)
        wait_for(lambda: view.role == role, 10, "the tab to learn its token's role")
        hidden = {"kill", "approve", "deny"} & set(view.table.hidden_columns)
        assert (hidden == set(), view.away.visible, view.may_act()) == (acting, acting, acting)
        if not acting:  # a click on a hidden column's cell does nothing either
            sid = httpx.post(srv.url + "/sessions", json={"app_name": "x"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5).json()["session_id"]
            wait_for(lambda: (view._apply(), sid in view.rows)[1], 10, "the Panel row")
            view._on_click(Click("kill", row_of(view, sid)))
            assert not view.confirm.open
    finally:
        feed.stop()
