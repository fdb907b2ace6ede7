"""The web page shows only what the signed-in token's role may do, in real
Chromium against a real server (frontend/auth.js ``can(action)``): a viewer
sees no Approve / Deny, Kill or Away; an operator sees them all."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from .conftest import Server, wait_for
from .test_roles import ADMIN_TOKEN, bearer, create_token
from .test_web_approvals import hook_payloads
from .test_web_e2e import browser, open_page, wait_indicator  # noqa: F401  (fixtures)


class Scene:
    """A server with a held permission prompt and a Panel session, and a token per role."""

    def __init__(self, srv: Server, tokens: dict[str, str], claude: str, panel: str) -> None:
        self.srv = srv
        self.tokens = tokens
        self.claude = claude
        self.panel = panel


@pytest.fixture
def scene(projects: Path, tmp_path: Path, sw_server: Callable[..., Server]) -> Iterator[Scene]:
    db = tmp_path / "sessionwatch.db"
    tokens = {role: create_token(db, f"web-{role}", role) for role in ("viewer", "agent", "operator")}
    srv = sw_server(projects_dir=projects, db=db, extra_args=["--token", ADMIN_TOKEN, "--approval-wait-s", "60"])
    admin = bearer(ADMIN_TOKEN)
    httpx.put(srv.url + "/away", json={"on": True}, headers=admin, timeout=5).raise_for_status()
    claude = str(uuid.uuid4())
    payloads = hook_payloads(claude)
    for name in ("UserPromptSubmit", "PreToolUse"):
        httpx.post(srv.url + "/hooks", json=payloads[name], headers=admin, timeout=10).raise_for_status()
    held = threading.Thread(
        target=lambda: httpx.post(srv.url + "/hooks", json=payloads["PermissionRequest"], headers=admin, timeout=90),
        daemon=True,
    )
    held.start()

    def waiting() -> bool:
        away = httpx.get(srv.url + "/away", headers=admin, timeout=5).json()
        return any(w["session_id"] == claude for w in away["waiting"])

    wait_for(waiting, 10, "the permission prompt to be held")
    panel = httpx.post(srv.url + "/sessions", json={"app_name": "reports"}, headers=admin, timeout=5).json()["session_id"]
    yield Scene(srv, {**tokens, "admin": ADMIN_TOKEN}, claude, panel)
    httpx.put(srv.url + "/away", json={"on": False}, headers=admin, timeout=5)  # releases the held hook
    held.join(30)


def sign_in(page: Page, token: str) -> None:
    expect(page.locator("#signin")).to_be_visible()
    page.fill("#token", token)
    page.click("#signin button[type=submit]")
    wait_indicator(page, ("Live",))


def rows_shown(page: Page, scene: Scene) -> tuple[object, object]:
    claude = page.locator(f'tr[data-id="{scene.claude}"]')
    panel = page.locator(f'tr[data-id="{scene.panel}"]')
    expect(claude.locator('td[data-col="status"]')).to_contain_text("needs_approval", timeout=10_000)
    expect(panel).to_be_visible(timeout=10_000)
    return claude, panel


@pytest.mark.parametrize("role", ["viewer", "agent"])
def test_a_viewer_or_agent_page_hides_approve_deny_away_and_kill(scene: Scene, open_page: Callable[..., Page], role: str) -> None:
    page = open_page(scene.srv.url + "/")
    sign_in(page, scene.tokens[role])
    assert page.evaluate("import('./static/auth.js').then((m) => [m.role(), m.can('read'), m.can('approve')])") == [
        role, True, False]  # fmt: skip
    claude, panel = rows_shown(page, scene)
    # loaded and drawn: the away switch's state came from GET /away (a viewer may read it)
    wait_for(lambda: page.evaluate("document.getElementById('away-toggle').hidden"), 5, "the Away switch to hide")
    expect(claude.locator("button.answer")).to_have_count(0)
    expect(panel.locator("button.kill")).to_have_count(0)
    expect(page.locator("#away-toggle")).to_be_hidden()
    # nor in the detail panel
    panel.locator('td[data-col="title"]').click()
    expect(page.locator("#detail")).to_contain_text("reports", timeout=5_000)
    expect(page.locator("#detail button.kill")).to_have_count(0)
    claude.locator('td[data-col="title"]').click()
    expect(page.locator("#detail")).to_contain_text("Write: note.txt", timeout=5_000)
    expect(page.locator("#detail button.answer")).to_have_count(0)


def test_an_operator_page_shows_approve_deny_away_and_kill_and_its_approval_names_it(
    scene: Scene, open_page: Callable[..., Page]
) -> None:
    page = open_page(scene.srv.url + "/")
    sign_in(page, scene.tokens["operator"])
    claude, panel = rows_shown(page, scene)
    expect(page.locator("#away-toggle")).to_be_visible()
    expect(page.locator("#away")).to_be_enabled()
    expect(panel.locator("button.kill")).to_be_enabled()
    expect(claude.locator("button.answer.deny")).to_be_enabled()
    claude.locator("button.answer.approve").click()
    expect(page.locator("#message")).to_contain_text("Approved", timeout=5_000)
    detail = httpx.get(f"{scene.srv.url}/sessions/{scene.claude}", headers=bearer(ADMIN_TOKEN), timeout=5).json()
    assert [a["by"]["who"] for a in detail["approvals"]] == ["web-operator"]
