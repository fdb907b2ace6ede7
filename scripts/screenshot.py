"""Refresh docs/screenshot.png, the picture at the top of the README.

Run it on purpose, when the page changed (it needs the ``[test]`` extra for
Playwright, and Debian's chromium):

    python scripts/screenshot.py            # writes docs/screenshot.png
    python scripts/screenshot.py --out x.png

It serves a copy of the fixture transcripts ($SESSIONWATCH_FIXTURES, or
../shared/fixtures/claude-projects beside the repository) on a free port,
registers one running Panel session, appends a turn to a Claude session, and
photographs the live page in Chromium. The tests call ``capture`` with a path in
tmp_path, so no test run rewrites the tracked picture.
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
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect, sync_playwright

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("SESSIONWATCH_FIXTURES") or REPO.parent / "shared" / "fixtures" / "claude-projects")
OUT = REPO / "docs" / "screenshot.png"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
#: A small fixture session (Claude Code 2.1.38, project /home/marco/projects/spotter).
SESSION_FILE = Path("-home-marco-projects-spotter") / "55604662-cf2a-4331-851a-ec234028f8ca.jsonl"


def _line(transcript: Path, **fields: object) -> str:
    first = json.loads(next(line for line in transcript.read_text().splitlines() if '"cwd"' in line))
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    base = {
        "isSidechain": False,
        "userType": "external",
        "cwd": first["cwd"],
        "sessionId": first.get("sessionId", transcript.stem),
        "version": first.get("version", "2.1.38"),
        "gitBranch": first.get("gitBranch", "main"),
        "parentUuid": None,
        "uuid": str(uuid.uuid4()),
        "timestamp": now,
    }
    return json.dumps({**base, **fields}) + "\n"


def stage(url: str, projects: Path) -> str:
    """Give the page something to show: a running Panel session and a fresh
    Claude turn. Returns the Panel session's id."""
    sid = str(httpx.post(f"{url}/sessions", json={"app_name": "forecast-dashboard", "user_id": "ana"}, timeout=5).json()["session_id"])
    httpx.put(f"{url}/sessions/{sid}/status", json={"status": "running", "current_task": "Refit model"}, timeout=5)
    transcript = projects / SESSION_FILE
    reply = {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Shipped."}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1200, "output_tokens": 340, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 5000},
    }
    with transcript.open("a", encoding="utf-8") as f:
        f.write(_line(transcript, type="user", message={"role": "user", "content": "ship it"}))
        f.write(_line(transcript, type="assistant", requestId=f"req_{uuid.uuid4().hex}", message=reply))
    return sid


def capture(browser: Browser, url: str, projects: Path, out: Path) -> Path:
    """Stage the sessions, open the page at 1360×720 in light mode, and save it to ``out``."""
    sid = stage(url, projects)
    context = browser.new_context(viewport={"width": 1360, "height": 720}, color_scheme="light")
    try:
        page = context.new_page()
        page.goto(url + "/")
        page.wait_for_function("() => document.querySelector('#conn .label').textContent === 'Live'", timeout=10_000)
        expect(page.locator(f'tr[data-id="{sid}"]')).to_be_visible(timeout=5_000)
        # Finish the flashes of the first paint so the picture is calm (the Live
        # dot pulses forever and cannot be finished).
        page.evaluate(
            "document.getAnimations().filter(a => a.effect.getTiming().iterations !== Infinity).forEach(a => a.finish())"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
    finally:
        context.close()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write the PNG (default: {OUT.relative_to(REPO)})")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        projects = Path(tmp) / "projects"
        shutil.copytree(FIXTURES, projects)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
        server = subprocess.Popen(
            [sys.executable, "-m", "sessionwatch", "serve", "--port", str(port),
             "--projects-dir", str(projects), "--db", str(Path(tmp) / "sessionwatch.db"), "--log-level", "warning"],
            env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                if server.poll() is not None:
                    sys.exit(f"sessionwatch serve exited with {server.returncode}")
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    sys.exit("sessionwatch serve did not answer /healthz within 30 s")
                time.sleep(0.1)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                try:
                    out = capture(browser, url, projects, args.out)
                finally:
                    browser.close()
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
