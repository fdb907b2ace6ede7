"""The web dashboard in real Chromium against a real ``sessionwatch serve``.

Debian's chromium, driven by Playwright; never a downloaded browser. Every
wait is a condition with a deadline (``wait_for_function``, ``expect``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from playwright import sync_api
from playwright.sync_api import Browser, Page, expect

from scripts import screenshot

from .conftest import CHROMIUM_ARGS

# A small transcript from the fixtures (Claude Code 2.1.38, project /home/marco/projects/spotter).
SESSION = "55604662-cf2a-4331-851a-ec234028f8ca"
SESSION_FILE = Path("-home-marco-projects-spotter") / f"{SESSION}.jsonl"

# Fast timings for the tests that exercise the polling fallback.
FAST = {"backoffMs": [100, 100, 100, 100, 100], "pollMs": 300, "sseRetryMs": 1000}


# --- helpers ------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _transcript_fields(transcript: Path) -> dict[str, Any]:
    first = json.loads(next(line for line in transcript.read_text().splitlines() if '"cwd"' in line))
    return {
        "isSidechain": False,
        "userType": "external",
        "cwd": first["cwd"],
        "sessionId": first.get("sessionId", transcript.stem),
        "version": first.get("version", "2.1.38"),
        "gitBranch": first.get("gitBranch", "main"),
    }


def _append(transcript: Path, line: dict[str, Any]) -> None:
    with transcript.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def append_prompt(transcript: Path, prompt: str = "one more thing") -> None:
    """Append a user prompt, as Claude Code writes it: the session is running."""
    _append(
        transcript,
        {
            **_transcript_fields(transcript),
            "parentUuid": None,
            "type": "user",
            "message": {"role": "user", "content": prompt},
            "uuid": str(uuid.uuid4()),
            "timestamp": now_iso(),
        },
    )


def append_reply(transcript: Path, reply: str = "Done.") -> None:
    """Append an assistant reply that ends the turn: the session waits for the user."""
    _append(
        transcript,
        {
            **_transcript_fields(transcript),
            "parentUuid": None,
            "type": "assistant",
            "requestId": f"req_{uuid.uuid4().hex}",
            "message": {
                "id": f"msg_{uuid.uuid4().hex}",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [{"type": "text", "text": reply}],
                "stop_reason": "end_turn",
                "usage": {
                    "input_tokens": 1200,
                    "output_tokens": 340,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 5000,
                },
            },
            "uuid": str(uuid.uuid4()),
            "timestamp": now_iso(),
        },
    )


def append_turn(transcript: Path, prompt: str = "one more thing", reply: str = "Done.") -> None:
    append_prompt(transcript, prompt)
    append_reply(transcript, reply)


def server_sessions(url: str, **headers: str) -> dict[str, dict[str, Any]]:
    body = httpx.get(f"{url}/all", headers=headers, timeout=5).json()
    return {s["id"]: s for s in body["sessions"]}


def indicator(page: Page) -> str:
    return page.inner_text("#conn .label")


def wait_indicator(page: Page, labels: tuple[str, ...], timeout_ms: int = 10_000) -> None:
    page.wait_for_function(
        "labels => labels.includes(document.querySelector('#conn .label').textContent)",
        arg=list(labels),
        timeout=timeout_ms,
    )


def cell(page: Page, session_id: str, col: str) -> str:
    return page.inner_text(f'tr[data-id="{session_id}"] td[data-col="{col}"]')


def wait_cell(page: Page, session_id: str, col: str, expected: str, timeout_ms: int) -> None:
    page.wait_for_function(
        """([id, col, expected]) => {
            const td = document.querySelector(`tr[data-id="${CSS.escape(id)}"] td[data-col="${col}"]`);
            return td !== null && td.textContent === expected;
        }""",
        arg=[session_id, col, expected],
        timeout=timeout_ms,
    )


def wait_rows(page: Page, count: int, timeout_ms: int) -> None:
    # Always a function: the page's Content-Security-Policy forbids eval of a bare expression.
    page.wait_for_function("n => document.querySelectorAll('#rows tr').length === n", arg=count, timeout=timeout_ms)


def row_ids(page: Page) -> list[str]:
    return page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.id)")


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(chromium_bin: str) -> Iterator[Browser]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_bin, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Factory for pages; fails the test on any uncaught page error."""
    contexts = []
    errors: list[str] = []

    def make(url: str, *, options: dict[str, Any] | None = None, **context_args: Any) -> Page:
        context = browser.new_context(**{"viewport": {"width": 1280, "height": 760}, **context_args})
        contexts.append(context)
        if options is not None:
            context.add_init_script(f"window.SESSIONWATCH_OPTIONS = {json.dumps(options)};")
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        return page

    yield make
    for context in contexts:
        context.close()
    assert errors == [], f"errors in the page: {errors}"


# --- tests ----------------------------------------------------------------------------


def test_table_shows_every_session_and_goes_live(shared_server, open_page) -> None:
    srv = shared_server
    expected = server_sessions(srv.url)
    assert len(expected) > 5

    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    wait_rows(page, len(expected), 10_000)
    assert sorted(row_ids(page)) == sorted(expected)

    s = expected[SESSION]
    assert cell(page, SESSION, "project") == "spotter"
    assert cell(page, SESSION, "title") == s["title"]
    assert cell(page, SESSION, "git_branch") == s["git_branch"]
    assert cell(page, SESSION, "message_count") == str(s["message_count"])
    assert cell(page, SESSION, "status") == s["status"]
    assert page.get_attribute(f'tr[data-id="{SESSION}"] .status', "class") == f"status status-{s['status']}"
    # Default order: most recent activity first.
    latest = max(expected.values(), key=lambda x: x["last_activity"])
    assert row_ids(page)[0] == latest["id"]


def test_appended_line_updates_the_row_without_reload(sw_server, projects, open_page) -> None:
    srv = sw_server(projects_dir=projects)
    before = server_sessions(srv.url)[SESSION]
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    wait_cell(page, SESSION, "message_count", str(before["message_count"]), 10_000)
    page.evaluate("window.__sameDocument = true")
    page.click(f'tr[data-id="{SESSION}"] td[data-col="project"]')  # select it
    expect(page.locator("#detail")).to_be_visible()

    append_turn(projects / SESSION_FILE, prompt="check the deploy", reply="All green.")
    # How fast is measured in bench/; here the update must arrive, without a reload.
    page.wait_for_function(
        """([id, old]) => {
            const td = document.querySelector(`tr[data-id="${id}"] td[data-col="message_count"]`);
            return td !== null && td.textContent !== old;
        }""",
        arg=[SESSION, str(before["message_count"])],
        timeout=5_000,
    )

    after = server_sessions(srv.url)[SESSION]
    assert after["message_count"] > before["message_count"]
    wait_cell(page, SESSION, "message_count", str(after["message_count"]), 5_000)
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    # The changed cell flashes; the selection survives the update.
    assert "flash" in (page.get_attribute(f'tr[data-id="{SESSION}"] td[data-col="message_count"]', "class") or "")
    assert "selected" in (page.get_attribute(f'tr[data-id="{SESSION}"]', "class") or "")
    # The detail panel follows the session too.
    expect(page.locator("#detail-body .recent li").last).to_contain_text("All green.", timeout=5_000)


def test_search_filters_and_sort_are_kept_in_the_url(shared_server, open_page) -> None:
    srv = shared_server
    sessions = server_sessions(srv.url)
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    wait_rows(page, len(sessions), 10_000)

    def haystack(s: dict[str, Any]) -> str:
        return " ".join(v for v in (s["project"], s["title"], s["git_branch"], s["current_task"]) if v).lower()

    page.fill("#q", "spotter")
    wanted = sorted(i for i, s in sessions.items() if "spotter" in haystack(s))
    assert 0 < len(wanted) < len(sessions)
    wait_rows(page, len(wanted), 5_000)
    assert sorted(row_ids(page)) == wanted
    assert "q=spotter" in page.url

    # Sort by messages, most first.
    page.click('th[data-col="message_count"] button')
    page.wait_for_function("() => location.search.includes('sort=message_count')", timeout=5_000)
    counts = [int(t) for t in page.eval_on_selector_all('#rows td[data-col="message_count"]', "tds => tds.map(t => t.textContent)")]
    assert counts == sorted(counts, reverse=True)

    # A shared link opens the same view.
    page.goto(page.url)
    wait_indicator(page, ("Live",))
    wait_rows(page, len(wanted), 10_000)
    assert page.input_value("#q") == "spotter"
    assert page.get_attribute('th[data-col="message_count"]', "aria-sort") == "descending"

    # Filtering by a source with no sessions says so.
    page.select_option("#source", "panel")
    expect(page.locator("#empty")).to_have_text("No sessions match the search and filters.")
    assert "source=panel" in page.url


def test_server_restart_goes_offline_then_live_and_catches_up(sw_server, projects, open_page) -> None:
    srv = sw_server(projects_dir=projects)
    before = server_sessions(srv.url)[SESSION]
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    wait_cell(page, SESSION, "message_count", str(before["message_count"]), 10_000)
    page.evaluate("window.__sameDocument = true")

    srv.stop()
    wait_indicator(page, ("Offline", "Polling"), 5_000)

    # Changes made while the server is down...
    append_turn(projects / SESSION_FILE, prompt="while you were away", reply="Caught up.")
    append_turn(projects / SESSION_FILE, prompt="and again", reply="Still here.")

    srv.start()
    after = server_sessions(srv.url)[SESSION]
    assert after["message_count"] > before["message_count"]
    # ...reach the page once it is back (the first retries come at 1, 2, 4 s).
    wait_indicator(page, ("Live",), 20_000)
    wait_cell(page, SESSION, "message_count", str(after["message_count"]), 5_000)
    assert page.evaluate("window.__sameDocument") is True


def test_falls_back_to_polling_when_the_stream_is_refused(sw_server, projects, open_page) -> None:
    srv = sw_server(projects_dir=projects)
    page = open_page("about:blank", options=FAST)
    # A proxy that answers the stream with 502: the browser gives the
    # EventSource up for good, and the page must not.
    page.route("**/stream*", lambda route: route.fulfill(status=502, body="Bad Gateway"))
    page.goto(srv.url + "/")
    wait_indicator(page, ("Polling",), 10_000)
    assert page.get_attribute("#conn", "class") == "indicator polling"
    before = server_sessions(srv.url)[SESSION]
    wait_cell(page, SESSION, "message_count", str(before["message_count"]), 5_000)

    append_turn(projects / SESSION_FILE)
    page.wait_for_function(
        """([id, old]) => {
            const td = document.querySelector(`tr[data-id="${id}"] td[data-col="message_count"]`);
            return td !== null && td.textContent !== old;
        }""",
        arg=[SESSION, str(before["message_count"])],
        timeout=5_000,
    )

    # The stream comes back: Live again, and events flow.
    page.unroute("**/stream*")
    wait_indicator(page, ("Live",), 10_000)
    mid = server_sessions(srv.url)[SESSION]
    append_turn(projects / SESSION_FILE)
    page.wait_for_function(
        """([id, old]) => {
            const td = document.querySelector(`tr[data-id="${id}"] td[data-col="message_count"]`);
            return td !== null && td.textContent !== old;
        }""",
        arg=[SESSION, str(mid["message_count"])],
        timeout=5_000,
    )


def test_offline_when_nothing_answers(sw_server, projects, open_page) -> None:
    srv = sw_server(projects_dir=projects)
    page = open_page(srv.url + "/", options=FAST)
    wait_indicator(page, ("Live",))
    srv.stop()
    wait_indicator(page, ("Offline",), 5_000)
    # Past the reconnect attempts, the polls find no server either.
    page.wait_for_function("() => document.querySelector('#conn').dataset.state === 'offline'", timeout=10_000)
    srv.start()
    wait_indicator(page, ("Live",), 15_000)


def test_session_detail_shows_recent_activity(shared_server, open_page) -> None:
    srv = shared_server
    detail = httpx.get(f"{srv.url}/sessions/{SESSION}", timeout=5).json()
    assert detail["recent"], "the fixture session has recent activity"
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    page.click(f'tr[data-id="{SESSION}"]')
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-body")).to_contain_text(SESSION)
    expect(page.locator("#detail-body .recent li")).to_have_count(len(detail["recent"]))
    expect(page.locator("#detail-body .recent li").last).to_contain_text(detail["recent"][-1]["summary"][:40])
    assert f"session={SESSION}" in page.url
    page.keyboard.press("Escape")
    expect(page.locator("#detail")).to_be_hidden()


def test_panel_session_appears_and_can_be_killed_after_confirming(sw_server, projects, open_page) -> None:
    srv = sw_server(projects_dir=projects)
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))

    sid = httpx.post(f"{srv.url}/sessions", json={"app_name": "forecast-app", "user_id": "ana"}, timeout=5).json()["session_id"]
    row = page.locator(f'tr[data-id="{sid}"]')
    expect(row).to_be_visible(timeout=5_000)
    expect(row.locator('td[data-col="source"]')).to_have_text("panel")
    kill = row.locator("button.kill")
    expect(kill).to_be_enabled()

    # Dismissing the confirmation kills nothing.
    page.once("dialog", lambda d: d.dismiss())
    kill.click()
    assert httpx.get(f"{srv.url}/sessions/{sid}", timeout=5).json()["kill_requested"] is False

    page.once("dialog", lambda d: d.accept())
    kill.click()
    expect(row.locator("button.kill")).to_have_text("Kill requested", timeout=5_000)
    expect(row.locator("button.kill")).to_be_disabled()
    assert httpx.get(f"{srv.url}/sessions/{sid}", timeout=5).json()["kill_requested"] is True

    # Deregistered: the row goes away without a reload.
    httpx.delete(f"{srv.url}/sessions/{sid}", timeout=5)
    expect(row).to_have_count(0, timeout=5_000)


def test_kill_texts_say_the_kill_arrives_at_once(sw_server, projects, open_page) -> None:
    """A kill reaches a tracker through /stream at once; the heartbeat answer is only the
    fallback. The page said the app ends the session "at its next heartbeat" (issue 9)."""
    srv = sw_server(projects_dir=projects)
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    sid = httpx.post(f"{srv.url}/sessions", json={"app_name": "wording-app"}, timeout=5).json()["session_id"]
    row = page.locator(f'tr[data-id="{sid}"]')
    expect(row.locator("button.kill")).to_be_enabled(timeout=5_000)

    asked: list[str] = []

    def accept(dialog: sync_api.Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    row.locator("button.kill").click()
    expect(page.locator("#message")).to_contain_text("at once", timeout=5_000)
    assert len(asked) == 1 and "at once" in asked[0], asked
    title = row.locator("button.kill").get_attribute("title") or ""
    assert "Kill requested" in title and "next heartbeat" not in title


def test_menus_offer_the_model_statuses_and_sources(sw_server, projects, open_page) -> None:
    """The status and source menus come from frontend/model.js, the one list."""
    srv = sw_server(projects_dir=projects)
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    model = page.evaluate(
        "async () => { const m = await import('./static/model.js');"
        " return {statuses: [...m.STATUSES], sources: [...m.SOURCES]}; }"
    )
    statuses = page.eval_on_selector_all("#status option", "os => os.map(o => o.value)")
    sources = page.eval_on_selector_all("#source option", "os => os.map(o => o.value)")
    assert statuses == ["", *model["statuses"]] and "waiting" in statuses
    assert sources == ["", *model["sources"]] == ["", "claude", "panel"]
    chips = page.eval_on_selector_all("#totals .chip", "cs => cs.map(c => c.dataset.status)")
    assert chips == model["statuses"]


def test_sign_in_with_token_sets_a_cookie_the_stream_uses(sw_server, projects, open_page) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--token", "s3cret-token"])
    page = open_page(srv.url + "/")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#main")).to_be_hidden()

    page.fill("#token", "wrong")
    page.click("#signin button[type=submit]")
    expect(page.locator("#signin-error")).to_have_text("That token is not right.")

    page.fill("#token", "s3cret-token")
    page.click("#signin button[type=submit]")
    wait_indicator(page, ("Live",))
    expect(page.locator("#signin")).to_be_hidden()
    expected = server_sessions(srv.url, Authorization="Bearer s3cret-token")
    wait_rows(page, len(expected), 10_000)
    # HttpOnly: page scripts cannot read the token.
    assert "s3cret-token" not in page.evaluate("document.cookie")
    assert "token=" not in page.evaluate("performance.getEntriesByType('resource').map(e => e.name).join(' ')")

    # A Panel session can be killed once signed in.
    sid = httpx.post(
        f"{srv.url}/sessions", json={"app_name": "app"}, headers={"Authorization": "Bearer s3cret-token"}, timeout=5
    ).json()["session_id"]
    expect(page.locator(f'tr[data-id="{sid}"] button.kill')).to_be_enabled(timeout=5_000)

    page.click("#signout")
    expect(page.locator("#signin")).to_be_visible()
    page.reload()
    expect(page.locator("#signin")).to_be_visible()


def test_server_restarted_with_a_token_asks_for_it(sw_server, projects, open_page) -> None:
    srv = sw_server(projects_dir=projects)
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    srv.stop()
    srv.extra_args = ["--token", "new-token"]
    srv.start()
    # The EventSource only sees an error; the page asks /auth and shows the form.
    expect(page.locator("#signin")).to_be_visible(timeout=10_000)
    expect(page.locator("#signin-error")).to_have_text("This server now needs its access token.")
    page.fill("#token", "new-token")
    page.click("#signin button[type=submit]")
    wait_indicator(page, ("Live",))


def test_untrusted_titles_are_shown_as_text(sw_server, tmp_path, open_page) -> None:
    projects = tmp_path / "hostile"
    (projects / "-tmp-evil").mkdir(parents=True)
    evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    line = {
        "type": "user",
        "sessionId": "evil",
        "cwd": "/tmp/<b>evil</b>",
        "gitBranch": "<i>main</i>",
        "uuid": str(uuid.uuid4()),
        "timestamp": now_iso(),
        "message": {"role": "user", "content": evil},
    }
    (projects / "-tmp-evil" / "evil.jsonl").write_text(json.dumps(line) + "\n")
    srv = sw_server(projects_dir=projects)
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    expect(page.locator('tr[data-id="evil"] td[data-col="title"]')).to_have_text(evil)
    assert page.locator("#rows img, #rows script, #rows b, #rows i").count() == 0
    page.click('tr[data-id="evil"]')
    expect(page.locator("#detail-body")).to_contain_text("/tmp/<b>evil</b>")
    assert page.locator("#detail img, #detail b").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_empty_state_then_first_session_appears(sw_server, tmp_path, open_page) -> None:
    projects = tmp_path / "empty"
    # The project folder exists, empty: this test is about the page, not about
    # the watcher picking up a folder and its first file created together.
    folder = projects / "-home-me-new"
    folder.mkdir(parents=True)
    srv = sw_server(projects_dir=projects)
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    expect(page.locator("#empty")).to_have_text("No sessions yet — start Claude Code in any project")

    first = {
        "type": "user",
        "sessionId": "fresh",
        "cwd": "/home/me/new",
        "uuid": str(uuid.uuid4()),
        "timestamp": now_iso(),
        "message": {"role": "user", "content": "hello there"},
    }
    (folder / "fresh.jsonl").write_text(json.dumps(first) + "\n")
    expect(page.locator('tr[data-id="fresh"]')).to_be_visible(timeout=5_000)
    expect(page.locator("#empty")).to_be_hidden()
    expect(page.locator('tr[data-id="fresh"] td[data-col="title"]')).to_have_text("hello there")


RECORD_NOTIFICATIONS = """
window.__notifications = [];
window.Notification = class {
    constructor(title, options) { window.__notifications.push({ title, body: options && options.body }); }
    static get permission() { return 'granted'; }
    static requestPermission() { return Promise.resolve('granted'); }
};
"""


def test_notifications_when_claude_waits_and_when_panel_goes_stale(sw_server, projects, browser) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--stale-after-s", "2"])
    context = browser.new_context()
    try:
        context.add_init_script(RECORD_NOTIFICATIONS)
        page = context.new_page()
        page.goto(srv.url + "/")
        wait_indicator(page, ("Live",))
        notes = lambda: page.evaluate("window.__notifications")

        # Off until the user opts in.
        append_prompt(projects / SESSION_FILE, "quiet, please")
        wait_cell(page, SESSION, "status", "running", 5_000)
        append_reply(projects / SESSION_FILE, "Done quietly.")
        wait_cell(page, SESSION, "status", "waiting", 5_000)
        assert notes() == []

        page.check("#notify")
        append_prompt(projects / SESSION_FILE, "now tell me")
        wait_cell(page, SESSION, "status", "running", 5_000)
        append_reply(projects / SESSION_FILE, "Finished.")
        page.wait_for_function("() => window.__notifications.length === 1", timeout=5_000)
        title = server_sessions(srv.url)[SESSION]["title"]
        assert notes() == [{"title": "Claude is waiting in spotter", "body": title}]

        httpx.post(f"{srv.url}/sessions", json={"app_name": "notebook-app"}, timeout=5)
        page.wait_for_function("() => window.__notifications.length === 2", timeout=10_000)
        assert notes()[1]["title"] == "Panel session stale: notebook-app"
    finally:
        context.close()


def test_usable_at_375_px_in_dark_mode(shared_server, open_page) -> None:
    srv = shared_server
    page = open_page(srv.url + "/", viewport={"width": 375, "height": 740}, color_scheme="dark")
    wait_indicator(page, ("Live",))
    page.wait_for_selector("#rows tr")
    # Nothing pushes the page sideways; the table scrolls inside its frame.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.is_visible("#q") and page.is_visible("#conn")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    channels = [int(c) for c in background[background.index("(") + 1 : background.index(")")].split(",")[:3]]
    assert sum(channels) < 3 * 80, f"dark mode background is {background}"
    # The detail panel fills the narrow screen.
    page.click("#rows tr")
    box = page.locator("#detail").bounding_box()
    assert box is not None and box["width"] <= 375


def test_screenshot_script_captures_the_live_page(sw_server, projects, browser, tmp_path) -> None:
    """scripts/screenshot.py (run on purpose to refresh docs/screenshot.png)
    keeps working; the test writes its picture to tmp_path, never the tracked one."""
    srv = sw_server(projects_dir=projects)
    out = screenshot.capture(browser, srv.url, projects, tmp_path / "screenshot.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000
