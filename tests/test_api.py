"""REST endpoints and their bad-input answers, on a real server."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import FIXTURES, Server, free_port
from .sse import SSEClient

SID = "ba79134d-b6e9-4867-af0c-6941038c9e4b"


@pytest.fixture
def srv(projects: Path, sw_server: Callable[..., Server]) -> Iterator[Server]:
    yield sw_server(extra_args=["--stale-after-s", "1", "--cleanup-after-s", "600"])


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that change nothing (bad input only)."""
    tmp = tmp_path_factory.mktemp("shared")
    shutil.copytree(FIXTURES, tmp / "projects")
    srv = Server(tmp / "projects", tmp / "sessionwatch.db", free_port(), [], tmp / "server.log").start()
    yield srv
    srv.stop()


def test_all_and_sessions_share_a_body(srv: Server) -> None:
    a = httpx.get(srv.url + "/all").json()
    b = httpx.get(srv.url + "/sessions").json()
    assert set(a) == {"sessions", "last_event_id", "timestamp"}
    assert [s["id"] for s in a["sessions"]] == [s["id"] for s in b["sessions"]]
    fields = set(a["sessions"][0])
    assert fields == {
        "id", "source", "project", "title", "status", "current_task", "user", "host", "git_branch",
        "model", "version", "started_at", "last_activity", "duration_seconds", "message_count",
        "tool_calls", "tokens", "cost_usd", "kill_requested", "is_stale",
        "status_reason", "pending", "controls", "managed", "max_cost_usd",
    }


def test_session_detail_has_short_recent_activity(srv: Server) -> None:
    r = httpx.get(srv.url + f"/sessions/{SID}")
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == SID and body["recent"]
    assert all(set(i) == {"timestamp", "kind", "summary"} and len(i["summary"]) <= 80 for i in body["recent"])
    assert httpx.get(srv.url + "/sessions/nope").json() == {"error": "no session with id 'nope'"}
    assert httpx.get(srv.url + "/sessions/nope").status_code == 404


def test_tracker_lifecycle_and_events(srv: Server) -> None:
    client = SSEClient(srv.url + "/stream?source=panel").start()
    client.next()
    r = httpx.post(srv.url + "/sessions", json={"app_name": "reports", "user_id": "ann", "pid": 42})
    assert r.status_code == 201
    sid = r.json()["session_id"]
    created = client.next()
    assert created.event == "session-created"
    s = created.data["sessions"][0]
    assert (s["source"], s["project"], s["user"], s["status"]) == ("panel", "reports", "ann", "idle")

    assert httpx.post(srv.url + f"/sessions/{sid}/heartbeat").json() == {"kill_requested": False}
    r = httpx.put(srv.url + f"/sessions/{sid}/status", json={"status": "running", "current_task": "Report"})
    assert r.status_code == 200
    ev = client.next()
    assert ev.event == "session-updated" and ev.data["sessions"][0]["current_task"] == "Report"

    assert httpx.post(srv.url + f"/sessions/{sid}/kill", json={"by": "boss"}).json() == {"kill_requested": True}
    ev = client.next()
    assert ev.data["sessions"][0]["kill_requested"] is True
    assert httpx.post(srv.url + "/heartbeats", json={"session_ids": [sid, "ghost"]}).json() == {
        "kill": [sid], "unknown": ["ghost"]}
    detail = httpx.get(srv.url + f"/sessions/{sid}").json()
    assert detail["kills"][0]["requested_by"] == "boss" and detail["pid"] == 42

    # no heartbeat for --stale-after-s: stale, visible as an update
    ev = client.next(timeout=10)
    assert ev.data["sessions"][0]["status"] == "stale" and ev.data["sessions"][0]["is_stale"]
    assert httpx.delete(srv.url + "/sessions/stale").json() == {"deleted": 1}  # --stale-after-s
    assert client.next().event == "session-deleted"


def test_heartbeats_alone_emit_no_event(srv: Server) -> None:
    sid = httpx.post(srv.url + "/sessions", json={"app_name": "quiet"}).json()["session_id"]
    client = SSEClient(srv.url + "/stream?source=panel").start()
    client.next()
    for _ in range(5):
        httpx.post(srv.url + "/heartbeats", json={"session_ids": [sid]})
    httpx.delete(srv.url + f"/sessions/{sid}")
    assert client.next().event == "session-deleted"  # the first event after the heartbeats


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/sessions", b"{", 400),
        ("POST", "/sessions", b"[1, 2]", 400),
        ("POST", "/sessions", b'{"app_name": 5}', 400),
        ("POST", "/sessions", b"{}", 400),
        ("POST", "/sessions", b'{"app_name": "a", "pid": "x"}', 400),
        ("POST", "/sessions", b"\xff\xfe", 400),
        ("POST", "/heartbeats", b'{"session_ids": "a"}', 400),
        ("POST", "/heartbeats", b'{"session_ids": [1]}', 400),
        ("PUT", f"/sessions/{SID}/status", b'{"status": "sleeping"}', 400),
        ("PUT", f"/sessions/{SID}/status", b'{"status": "idle"}', 400),
        ("PUT", "/sessions/ghost/status", b'{"status": "idle"}', 404),
        ("POST", "/sessions/ghost/heartbeat", b"", 404),
        ("POST", "/sessions/ghost/kill", b"", 404),
        ("POST", f"/sessions/{SID}/kill", b"", 400),
        ("DELETE", f"/sessions/{SID}", b"", 400),
        ("DELETE", "/sessions/ghost", b"", 404),
        ("DELETE", "/sessions/stale?older_than_minutes=abc", b"", 400),
        ("DELETE", "/sessions/stale?older_than_minutes=-1", b"", 400),
        ("DELETE", "/sessions/stale?older_than_minutes=0", b"", 400),
        ("DELETE", "/sessions/stale?older_than_minutes=-0", b"", 400),
        ("DELETE", "/sessions/stale?older_than_minutes=0.5", b"", 400),
        ("DELETE", "/sessions/stale?older_than_minutes=nan", b"", 400),
        ("DELETE", "/sessions/stale?older_than_minutes=inf", b"", 400),
        ("POST", "/sessions", b'{"app_name": "a", "pid": 9223372036854775808}', 400),
        ("POST", "/sessions", b'{"app_name": "a", "pid": 2147483648}', 400),
        ("POST", "/sessions", b'{"app_name": "a", "pid": 0}', 400),
        ("POST", "/sessions", b'{"app_name": "a", "pid": -1}', 400),
        ("POST", "/sessions", b'{"app_name": "a", "pid": 1.5}', 400),
        ("POST", "/sessions", b'{"app_name": "a", "pid": true}', 400),
        ("POST", "/sessions", b'{"app_name": "a", "session_id": "a/b"}', 400),
        ("POST", "/sessions", b'{"app_name": "a", "session_id": ".."}', 400),
        ("POST", "/sessions", b'{"app_name": "a", "session_id": "q?x#y"}', 400),
        ("POST", "/sessions", b'{"app_name": "a", "session_id": "stale"}', 400),
        ("POST", "/sessions", b'{"app_name": "a", "session_id": ""}', 400),
        ("POST", "/sessions", b'{"app_name": "a", "session_id": "a b"}', 400),
        ("POST", "/sessions", b'{"app_name": "a", "session_id": "\\ud800"}', 400),
        ("POST", "/sessions", f'{{"app_name": "a", "session_id": "{SID}"}}'.encode(), 409),
        ("GET", "/all?source=x", b"", 400),
        ("GET", "/nowhere", b"", 404),
        ("PATCH", "/all", b"", 405),
        ("POST", "/sessions", b"HUGE", 413),
        ("POST", "/hooks", b"{", 400),
        ("POST", "/hooks", b"[1]", 400),
        ("POST", "/hooks", b"\xff\xfe", 400),
        ("POST", "/hooks", b'{"hook_event_name": "Stop"}', 400),
        ("POST", "/hooks", b'{"hook_event_name": "Stop", "session_id": ""}', 400),
        ("POST", "/hooks", b'{"hook_event_name": "Stop", "session_id": 5}', 400),
        ("POST", "/hooks", b'{"hook_event_name": "PreToolUse", "session_id": "s", "tool_input": "x"}', 400),
        ("POST", "/hooks", b"HUGE", 413),
    ],
    ids=lambda v: v.decode(errors="replace")[:30] if isinstance(v, bytes) else str(v),
)
def test_bad_input_is_a_4xx_with_one_json_error(shared: Server, method: str, path: str, body: bytes, status: int) -> None:
    if body == b"HUGE":
        body = b'{"app_name": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    headers = {"Content-Type": "application/json"} if body else {}
    r = httpx.request(method, shared.url + path, content=body, headers=headers)
    assert r.status_code == status
    data = r.json()
    assert list(data) == ["error"] and isinstance(data["error"], str) and data["error"]


def test_hook_event_shows_at_once_and_unknown_events_are_no_error(srv: Server) -> None:
    sid = "hook-only-" + SID[:8]
    r = httpx.post(srv.url + "/hooks", json={"hook_event_name": "SomethingNew", "session_id": sid})
    assert (r.status_code, r.json()) == (200, {})
    assert httpx.get(srv.url + f"/sessions/{sid}").status_code == 404
    start = {"hook_event_name": "SessionStart", "session_id": sid, "cwd": "/work/app", "source": "startup"}
    r = httpx.post(srv.url + "/hooks", json=start)
    assert (r.status_code, r.json()) == (200, {})  # no decision: Claude Code carries on
    # applied before the answer: the session is there when the hook returns
    shown = httpx.get(srv.url + f"/sessions/{sid}").json()
    assert (shown["source"], shown["project"], shown["status"], shown["status_reason"]) == ("claude", "/work/app", "waiting", "session started")


def test_healthz_and_metrics(srv: Server) -> None:
    assert httpx.get(srv.url + "/healthz").json() == {"status": "ok"}
    text = httpx.get(srv.url + "/metrics").text
    for name in (
        'sessionwatch_sessions{source="claude"',
        "sessionwatch_subscribers ",
        "sessionwatch_events_sent_total",
        "sessionwatch_transcript_lines_total",
        "sessionwatch_transcript_bad_lines_total 4.0",
        "sessionwatch_parse_seconds_bucket",
    ):
        assert name in text, name


def test_token_is_enforced_everywhere_but_healthz(projects: Path, sw_server: Callable[..., Server]) -> None:
    srv = sw_server(extra_args=["--token", "s3cret"])
    assert httpx.get(srv.url + "/healthz").status_code == 200
    for path in ("/all", "/sessions", f"/sessions/{SID}", "/metrics", "/stream"):
        r = httpx.get(srv.url + path)
        assert r.status_code == 401 and "error" in r.json(), path
    assert httpx.post(srv.url + "/refresh").status_code == 401
    assert httpx.post(srv.url + "/sessions", json={"app_name": "x"}).status_code == 401
    assert httpx.get(srv.url + "/all", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert httpx.get(srv.url + "/all?token=s3cret").status_code == 200
    assert httpx.get(srv.url + "/all", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(srv.url + "/auth").json() == {"token_required": True, "authenticated": False, "role": None, "name": None}
    assert httpx.post(srv.url + "/login", json={"token": "nope"}).status_code == 401
    with httpx.Client(base_url=srv.url) as c:
        r = c.post("/login", json={"token": "s3cret"})
        assert r.status_code == 200 and "httponly" in r.headers["set-cookie"].lower()
        assert c.get("/all").status_code == 200
        assert c.get("/auth").json() == {"token_required": True, "authenticated": True, "role": "admin", "name": "admin"}
    stream = SSEClient(srv.url + "/stream?token=s3cret").start()
    assert stream.next().event == "init"


def test_stale_purge_with_zero_minutes_keeps_fresh_sessions(srv: Server) -> None:
    sid = httpx.post(srv.url + "/sessions", json={"app_name": "fresh"}).json()["session_id"]
    for n in ("0", "-0"):
        r = httpx.delete(srv.url + f"/sessions/stale?older_than_minutes={n}")
        assert r.status_code == 400 and "at least 1" in r.json()["error"]
    assert httpx.delete(srv.url + "/sessions/stale?older_than_minutes=1").json() == {"deleted": 0}
    assert httpx.get(srv.url + f"/sessions/{sid}").status_code == 200


def test_route_word_ids_are_refused_so_stale_purge_stays_a_purge(srv: Server) -> None:
    r = httpx.post(srv.url + "/sessions", json={"app_name": "x", "session_id": "stale"})
    assert r.status_code == 400 and "reserved" in r.json()["error"]
    for sid in ("a/b", "..", "q?x#y"):
        r = httpx.post(srv.url + "/sessions", json={"app_name": "x", "session_id": sid})
        assert r.status_code == 400 and "letters, digits" in r.json()["error"], sid
    ok = "Zr3xQm0xVq1pJvKqN8wWbq3eQFv0rXJ7d2c6L4kYs9Tt.sig-_x"  # a signed Bokeh id
    assert httpx.post(srv.url + "/sessions", json={"app_name": "x", "session_id": ok}).status_code == 201
    assert httpx.delete(srv.url + f"/sessions/{ok}").json() == {"deleted": True}


def _raw_exchange(sock: socket.socket, request: bytes) -> tuple[int, bytes]:
    """One request on an open keep-alive connection: (status, body)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the keep-alive connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the keep-alive connection"
        body += chunk
    return int(head.split()[1]), body


def test_oversized_pid_is_a_400_and_the_connection_stays_usable(shared: Server) -> None:
    srv = shared
    port = int(srv.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        body = b'{"app_name": "a", "pid": 9223372036854775808}'
        status, answer = _raw_exchange(
            sock,
            b"POST /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
        )
        assert status == 400 and b"pid must be between 1 and" in answer
        status, _ = _raw_exchange(sock, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert status == 200
    assert "Traceback" not in srv.log.read_text()


def test_tracker_cannot_take_the_id_of_a_claude_file_not_yet_timestamped(
    projects: Path, sw_server: Callable[..., Server]
) -> None:
    sid = "0b3c6a8e-1f0d-4c55-9a53-2f6b8f1d2e7a"
    (projects / "-tmp" / f"{sid}.jsonl").write_bytes(b'{"type":"summary","summary":"new"}\n')
    srv = sw_server()
    assert httpx.get(srv.url + f"/sessions/{sid}").status_code == 404  # not a session yet
    r = httpx.post(srv.url + "/sessions", json={"app_name": "x", "session_id": sid})
    assert r.status_code == 409 and r.json() == {"error": "that id belongs to a Claude session"}


def test_secrets_typed_into_panel_fields_are_not_returned(shared: Server) -> None:
    url = shared.url
    key = "sk-proj-abcdefghijklmnopqrstuvwx"
    sid = httpx.post(url + "/sessions", json={"app_name": f"app {key}"}).json()["session_id"]
    try:
        r = httpx.put(url + f"/sessions/{sid}/status", json={"status": "running", "current_task": f"use {key}"})
        assert r.status_code == 200 and key not in r.text
        assert key not in httpx.get(url + f"/sessions/{sid}").text
        assert key not in httpx.get(url + "/all?source=panel").text
    finally:
        httpx.delete(url + f"/sessions/{sid}")


def test_all_filters_by_status_and_refuses_an_unknown_one(projects: Path, sw_server: Callable[..., Server]) -> None:
    srv = sw_server()
    # the fixtures are all idle; a run reporting makes one running and one waiting
    for sid, state in (("run-1", "running"), ("run-2", "waiting")):
        r = httpx.post(srv.url + "/runs", json={"session_id": sid, "state": state, "cwd": "/w"})
        assert r.status_code == 200, r.text
    every = httpx.get(srv.url + "/all").json()["sessions"]
    assert {s["status"] for s in every} == {"idle", "running", "waiting"}
    one = httpx.get(srv.url + "/all", params={"status": "running"}).json()["sessions"]
    assert [s["id"] for s in one] == ["run-1"]
    both = httpx.get(srv.url + "/all?status=running,waiting").json()["sessions"]
    assert sorted(s["id"] for s in both) == ["run-1", "run-2"]
    assert len(httpx.get(srv.url + "/all?status=idle&status=running").json()["sessions"]) == len(every) - 1
    r = httpx.get(srv.url + "/all", params={"status": "asleep"})
    assert r.status_code == 400 and "status must be one or more of" in r.json()["error"]
    r = httpx.get(srv.url + "/stream", params={"status": "asleep"})
    assert r.status_code == 400
