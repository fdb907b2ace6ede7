"""sessionwatch.clients against a real `sessionwatch serve`: the one HTTP
client and stream follower the tracker and the dashboard share."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwatch.clients.follow import Follower, StreamEvent, apply_event, parse_event
from sessionwatch.clients.http import (
    ApiError,
    AsyncApi,
    AuthError,
    Backoff,
    ServerUnreachable,
    SyncApi,
    auth_headers,
)

from .conftest import Server, free_port

ServerFactory = Callable[..., Server]


def counting(api: SyncApi | AsyncApi) -> list[str]:
    """Record every request `api` sends."""
    sent: list[str] = []

    def hook(request: httpx.Request) -> None:
        sent.append(f"{request.method} {request.url.path}")

    async def ahook(request: httpx.Request) -> None:
        hook(request)

    api.http.event_hooks["request"].append(ahook if isinstance(api, AsyncApi) else hook)
    return sent


def registration(sid: str) -> dict[str, Any]:
    return {"app_name": "clients-test", "session_id": sid, "pid": 4242}


# --------------------------------------------------------------------------
# http.py
# --------------------------------------------------------------------------


def test_bearer_header_only_with_a_token() -> None:
    assert auth_headers("s3cret") == {"Authorization": "Bearer s3cret"}
    assert auth_headers(None) == {} and auth_headers("") == {}


def test_backoff_is_the_web_pages_then_its_last_delay() -> None:
    backoff = Backoff()
    assert [backoff.next() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
    assert backoff.exhausted
    backoff.reset()
    assert backoff.next() == 1.0


def test_rejected_token_is_an_auth_error_and_never_retried(sw_server: ServerFactory) -> None:
    srv = sw_server(extra_args=["--token", "s3cret"])
    with SyncApi(srv.url, "wrong") as api:
        sent = counting(api)
        with pytest.raises(AuthError, match="rejected the token"):
            api.request("GET", "/all", retries=[0.01] * 5)
    assert sent == ["GET /all"]
    with SyncApi(srv.url, "s3cret") as api:
        assert api.request("GET", "/all").json()["sessions"] == []


def test_server_down_is_unreachable_then_retried_until_it_is_up(
    sw_server: ServerFactory, tmp_path: Path
) -> None:
    port = free_port()
    with SyncApi(f"http://127.0.0.1:{port}") as api:
        with pytest.raises(ServerUnreachable, match="unreachable"):
            api.request("GET", "/all")
        answers: list[int] = []
        # Retries for up to ~60 s; the server comes up meanwhile.
        worker = threading.Thread(
            target=lambda: answers.append(api.request("GET", "/all", retries=[0.2] * 300).status_code),
            daemon=True,
        )
        worker.start()
        sw_server(port=port)
        worker.join(60)
    assert answers == [200]


def test_api_error_carries_the_servers_sentence(sw_server: ServerFactory) -> None:
    srv = sw_server()
    with SyncApi(srv.url) as api:
        sent = counting(api)
        with pytest.raises(ApiError) as raised:
            api.request("POST", "/sessions", json=registration("stream"), retries=[0.01] * 3)
    assert raised.value.status == 400
    assert raised.value.sentence == "session_id 'stream' is reserved for the API's own routes"
    assert str(raised.value) == raised.value.sentence
    assert len(sent) == 1  # a 4xx is not retried


def test_json_bodies_are_accepted_by_the_server(sw_server: ServerFactory) -> None:
    # The server refuses anything but application/json with 415.
    srv = sw_server()
    with SyncApi(srv.url) as api:
        assert api.request("POST", "/sessions", json=registration("json-1")).status_code == 201
        assert api.request("PUT", "/sessions/json-1/status", json={"status": "running"}).status_code == 200


# --------------------------------------------------------------------------
# follow.py
# --------------------------------------------------------------------------


def test_parse_event_skips_keepalives_and_garbage() -> None:
    assert parse_event("keepalive", None, '{"sessions": []}') is None
    assert parse_event("session-updated", "3", "{not json") is None
    assert parse_event("session-updated", "3", "[1, 2]") is None
    assert parse_event("init", "4", "") is None
    event = parse_event("init", "5", '{"sessions": [{"id": "a"}, 7], "timestamp": 1.0}')
    assert event == StreamEvent("init", "5", [{"id": "a"}], {"sessions": [{"id": "a"}, 7], "timestamp": 1.0})


async def collect_until(
    follower: Follower, events: list[StreamEvent], done: Callable[[], bool], timeout: float = 10.0
) -> None:
    """Follow until `done()`, then disconnect."""
    task = asyncio.create_task(follower.follow(events.append))
    deadline = time.monotonic() + timeout
    try:
        while not done():
            if task.done():
                task.result()  # raises what ended the stream
            assert time.monotonic() < deadline, f"timed out; events: {events}"
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_follower_resumes_with_last_event_id(sw_server: ServerFactory) -> None:
    srv = sw_server()
    async with AsyncApi(srv.url) as api:
        follower = Follower(api, params={"source": "panel"})
        first: list[StreamEvent] = []
        await collect_until(follower, first, lambda: bool(first))
        assert first[0].type == "init"
        await api.request("POST", "/sessions", json=registration("seen-1"))
        await collect_until(follower, first, lambda: first[-1].type == "session-created")
        seen = follower.last_event_id
        assert seen is not None and seen == first[-1].id
        # Missed while disconnected:
        await api.request("POST", "/sessions", json=registration("missed-1"))
        await api.request("PUT", "/sessions/missed-1/status", json={"status": "running"})
        second: list[StreamEvent] = []
        await collect_until(follower, second, lambda: len(second) >= 2)
    assert [e.type for e in second[:2]] == ["session-created", "session-updated"]
    assert second[0].sessions[0]["id"] == "missed-1"
    assert int(second[0].id or 0) == int(seen) + 1


async def test_follower_reports_a_rejected_token_and_an_api_error(sw_server: ServerFactory) -> None:
    srv = sw_server(extra_args=["--token", "s3cret"])
    async with AsyncApi(srv.url, "wrong") as api:
        with pytest.raises(AuthError):
            await Follower(api).follow(lambda event: None)
    async with AsyncApi(srv.url, "s3cret") as api:
        with pytest.raises(ApiError) as raised:
            await Follower(api, params={"source": "nope"}).follow(lambda event: None)
        assert raised.value.status == 400 and "source" in raised.value.sentence


async def test_follower_run_reconnects_after_the_server_restarts(sw_server: ServerFactory) -> None:
    srv = sw_server()
    async with AsyncApi(srv.url) as api:
        follower = Follower(api, backoff_s=(0.1,))
        events: list[StreamEvent] = []
        errors: list[Exception] = []
        task = asyncio.create_task(follower.run(events.append, on_error=errors.append))
        try:
            deadline = time.monotonic() + 10
            while not events:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            await asyncio.to_thread(srv.stop)
            deadline = time.monotonic() + 10
            while not errors:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            assert isinstance(errors[0], ServerUnreachable)
            await asyncio.to_thread(srv.start)
            await api.request("POST", "/sessions", json=registration("after-restart"), retries=[0.2] * 50)
            deadline = time.monotonic() + 15
            while not any(s.get("id") == "after-restart" for e in events for s in e.sessions):
                assert time.monotonic() < deadline, f"events: {events}"
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


# --------------------------------------------------------------------------
# What importing a client costs
# --------------------------------------------------------------------------


def test_importing_the_tracker_does_not_import_the_servers_store() -> None:
    code = (
        "import sys, sessionwatch.tracker, sessionwatch.integrations.panel.tracker\n"
        "heavy = sorted(m for m in ('aiosqlite', 'sessionwatch.store.sqlite', 'starlette', 'sessionwatch.server', 'sessionwatch.engine') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "from sessionwatch.integrations.panel.tracker import SessionTracker\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_apply_event_keeps_a_copy_of_the_sessions() -> None:
    sessions: dict[str, dict[str, Any]] = {"old": {"id": "old"}}
    assert apply_event(sessions, StreamEvent("init", "1", [{"id": "a"}, {"id": "b"}]))
    assert list(sessions) == ["a", "b"]
    assert not apply_event(sessions, StreamEvent("session-updated", "2", [{"id": "a", "status": "running"}]))
    assert not apply_event(sessions, StreamEvent("session-created", "3", [{"id": "c"}]))
    assert not apply_event(sessions, StreamEvent("session-deleted", "4", [{"id": "b"}]))
    assert sessions == {"a": {"id": "a", "status": "running"}, "c": {"id": "c"}}
