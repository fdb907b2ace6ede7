"""Managed sessions against the real Claude Code CLI (tests/claude_cli.py) and
a scripted fake Messages API (tests/fakeapi.py), through a real ``serve``.

The server runs with the CLI's environment (a temporary HOME, the fake API's
URL), so the processes it starts talk only to the fake, and its
``--projects-dir`` is that HOME's: the transcript, the process and the
hooks are one row.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.claude_cli import ClaudeHome, claude_bin, clean_env
from tests.conftest import Server, wait_for
from tests.fakeapi import FakeAPI, Turn, Usage
from tests.sse import SSEClient

MODEL = "claude-sonnet-4-5-20250929"


class Managed:
    """A server that runs managed sessions, the fake API, and the HOME both use."""

    def __init__(self, srv: Server, api: FakeAPI, where: ClaudeHome) -> None:
        self.srv, self.api, self.where = srv, api, where
        self.http = httpx.Client(base_url=srv.url, timeout=30)

    def start(self, prompt: str = "hello", **body: Any) -> httpx.Response:
        return self.http.post("/managed", json={"prompt": prompt, "cwd": str(self.where.cwd), "model": MODEL, **body})

    def session(self, sid: str) -> dict[str, Any] | None:
        for s in self.http.get("/all").json()["sessions"]:
            if s["id"] == sid:
                return dict(s)
        return None

    def wait_session(self, sid: str, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def check() -> bool:
            s = self.session(sid)
            if s is not None and predicate(s):
                found.append(s)
                return True
            return False

        try:
            wait_for(check, timeout, what)
        except AssertionError:
            raise AssertionError(f"{what}; last seen: {self.session(sid)}; logs: {self.logs(sid)[-8:]}") from None
        return found[-1]

    def logs(self, sid: str, **params: Any) -> list[dict[str, Any]]:
        r = self.http.get(f"/sessions/{sid}/logs", params={"limit": 1000, **params})
        return list(r.json().get("logs", [])) if r.status_code == 200 else []


@pytest.fixture
def managed(tmp_path: Path, sw_server: Callable[..., Server]) -> Iterator[Callable[..., Managed]]:
    apis: list[FakeAPI] = []

    def make(turns: list[Turn], flags: list[str] | None = None) -> Managed:
        where = ClaudeHome.create(tmp_path)
        api = FakeAPI(turns).start()
        apis.append(api)
        env = clean_env(where.home, api.url)
        srv = sw_server(
            projects_dir=where.projects_dir,
            extra_args=["--claude-bin", str(claude_bin()), "--idle-after-s", "600", *(flags or [])],
            env=env,
        )
        return Managed(srv, api, where)

    yield make
    for api in apis:
        api.stop()


def claude_pids() -> set[int]:
    """Every running process whose executable is the bundled CLI."""
    target = os.path.realpath(claude_bin())
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.path.realpath(entry / "exe") == target:
                    pids.add(int(entry.name))
            except OSError:
                continue
    return pids


def test_start_two_messages_two_turns_one_row_exact_tokens_and_cost(managed: Callable[..., Managed]) -> None:
    m = managed([Turn.text("first answer", usage=Usage(1200, 300)), Turn.text("second answer", usage=Usage(800, 100))])
    stream = SSEClient(m.srv.url + "/stream").start()
    assert stream.next().event == "init"
    r = m.start("say hello", name="greeter")
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    assert r.json()["name"] == "greeter"
    created = stream.next(timeout=10)
    assert created.event == "session-created"
    assert created.data["sessions"][0]["id"] == sid
    assert created.data["sessions"][0]["managed"]["name"] == "greeter"
    m.wait_session(sid, lambda s: s["status"] == "waiting", "the first turn to end")
    r = m.http.post(f"/sessions/{sid}/messages", json={"text": "again"})
    assert r.status_code == 202, r.text
    s = m.wait_session(sid, lambda s: s["managed"]["num_turns"] == 2 and s["status"] == "waiting", "the second turn to end")
    # one row: the transcript's tokens (final usage per response), the process's figures
    assert [x["id"] for x in m.http.get("/all").json()["sessions"]].count(sid) == 1
    assert m.where.transcript(sid).exists()
    s = m.wait_session(sid, lambda s: s["tokens"]["input"] == 2000, "the transcript's tokens")
    assert s["tokens"] == {"input": 2000, "output": 400, "cache_creation": 0, "cache_read": 0}
    cli_cost = s["managed"]["total_cost_usd"]
    assert cli_cost is not None and cli_cost > 0
    assert s["cost_usd"] == pytest.approx(cli_cost, rel=0.01)
    assert s["controls"] == ["send", "stop"]
    kinds = [x["kind"] for x in m.logs(sid) if x["kind"] != "raw"]
    assert kinds.count("prompt") == 2 and kinds.count("reply") == 2 and kinds.count("result") == 2
    stream.stop()
