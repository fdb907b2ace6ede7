"""End to end: a real server on a free port, a real SSE client, real files."""

from __future__ import annotations

import shutil
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from .conftest import FIXTURES, Server, wait_for
from .sse import SSEClient
from .test_claude import assistant, user

MUSIC = "-Users-chip-dev-ai-music"


@pytest.fixture(params=["lean", "sse-starlette"])
def backend(request: pytest.FixtureRequest) -> str:
    """Both ways of serving /stream must keep the same contract (see stream.py)."""
    return str(request.param)
SID = "ba79134d-b6e9-4867-af0c-6941038c9e4b"


def test_init_lists_every_session_with_the_contract_headers(projects: Path, sw_server: Callable[..., Server], backend: str) -> None:
    srv = sw_server(stream_backend=backend)
    client = SSEClient(srv.url + "/stream").start()
    init = client.next()
    assert init.event == "init" and init.id is not None
    assert client.response_headers["cache-control"] == "no-cache"
    assert client.response_headers["x-accel-buffering"] == "no"
    assert client.response_headers["content-type"].startswith("text/event-stream")
    ids = {s["id"] for s in init.data["sessions"]}
    assert SID in ids and len(ids) == 15
    all_ = httpx.get(srv.url + "/all").json()
    assert {s["id"] for s in all_["sessions"]} == ids
    assert all_["last_event_id"] == int(init.id)
    client.stop()


def test_append_gives_exactly_one_update_for_that_session(projects: Path, sw_server: Callable[..., Server], backend: str) -> None:
    srv = sw_server(stream_backend=backend)
    client = SSEClient(srv.url + "/stream").start()
    before = {s["id"]: s for s in client.next().data["sessions"]}[SID]
    with open(projects / MUSIC / f"{SID}.jsonl", "ab") as f:
        f.write(assistant("m-new", "r-new", 1000, model="claude-sonnet-4-20250514"))
    ev = client.next()
    assert ev.event == "session-updated"
    assert [s["id"] for s in ev.data["sessions"]] == [SID]
    after = ev.data["sessions"][0]
    assert after["tokens"]["output"] == before["tokens"]["output"] + 1000
    assert after["cost_usd"] > before["cost_usd"]
    # nothing else follows for that append
    time.sleep(0.5)  # a quiet window to prove no second event: the assertion is on absence
    assert [e for e in client.drain() if e.event != "keepalive"] == []
    client.stop()


def test_new_file_created_and_deleted_file_deleted(projects: Path, sw_server: Callable[..., Server]) -> None:
    srv = sw_server()
    client = SSEClient(srv.url + "/stream").start()
    client.next()
    new_dir = projects / "-home-me-newproj"
    new_dir.mkdir()
    # Status comes from the entry's time: a prompt written now is running.
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    (new_dir / "new-session.jsonl").write_bytes(
        user("brand new", sessionId="new-session", cwd="/home/me/newproj", timestamp=now)
    )
    ev = client.next()
    assert ev.event == "session-created"
    assert ev.data["sessions"][0]["id"] == "new-session"
    assert ev.data["sessions"][0]["project"] == "/home/me/newproj"
    assert ev.data["sessions"][0]["status"] == "running"
    (projects / MUSIC / f"{SID}.jsonl").unlink()
    ev = client.next()
    assert ev.event == "session-deleted"
    assert ev.data["sessions"] == [{"id": SID}]
    client.stop()


def test_keepalive_arrives_in_silence(projects: Path, sw_server: Callable[..., Server], backend: str) -> None:
    srv = sw_server(stream_backend=backend)
    client = SSEClient(srv.url + "/stream").start()
    init = client.next()
    ka = client.next(timeout=5, skip=())
    # no id of its own: a client's last event id stays the init's
    assert ka.event == "keepalive" and ka.id == init.id and ka.data["sessions"] == []


def test_resume_by_last_event_id_gets_exactly_the_missed_events(projects: Path, sw_server: Callable[..., Server], backend: str) -> None:
    srv = sw_server(stream_backend=backend)
    client = SSEClient(srv.url + "/stream").start()
    last = int(client.next().id or 0)
    client.stop()
    path = projects / MUSIC / f"{SID}.jsonl"
    seen: list[int] = []
    watcher = SSEClient(srv.url + "/stream").start()
    watcher.next()
    for i in range(3):
        with open(path, "ab") as f:
            f.write(assistant(f"m{i}", f"r{i}", 10, model="claude-sonnet-4-20250514"))
        seen.append(int(watcher.next().id or 0))
    resumed = SSEClient(srv.url + "/stream", headers={"Last-Event-ID": str(last)}).start()
    got = [int(resumed.next().id or 0) for _ in range(3)]
    assert got == seen == [last + 1, last + 2, last + 3]
    by_query = SSEClient(srv.url + f"/stream?last_event_id={seen[0]}").start()
    assert [int(by_query.next().id or 0) for _ in range(2)] == seen[1:]
    stale = SSEClient(srv.url + "/stream?last_event_id=0").start()  # an id this server never gave
    assert stale.next().event == "init"
    for c in (watcher, resumed, by_query, stale):
        c.stop()


def test_filters_on_the_stream(projects: Path, sw_server: Callable[..., Server]) -> None:
    srv = sw_server()
    client = SSEClient(srv.url + "/stream?project=ai-music").start()
    init = client.next()
    assert {s["project"] for s in init.data["sessions"]} == {"/Users/chip/dev/ai-music"}
    panel = SSEClient(srv.url + "/stream?source=panel").start()
    assert panel.next().data["sessions"] == []
    r = httpx.post(srv.url + "/sessions", json={"app_name": "reports"})
    ev = panel.next()
    assert ev.event == "session-created" and ev.data["sessions"][0]["source"] == "panel"
    assert httpx.get(srv.url + "/stream?source=bogus").status_code == 400
    assert r.status_code == 201


def test_a_slow_subscriber_is_dropped_without_hurting_others(
    projects: Path, sw_server: Callable[..., Server], monkeypatch: Any
) -> None:
    """End to end, once: the drop itself is the hub's (tests/test_hub.py), the
    same for both stream backends."""
    # 2,000 small sessions make each refresh event about 1 MB, so a few of them
    # fill the kernel's socket buffers of a client that never reads.
    many = projects / "-home-me-many"
    many.mkdir()
    for n in range(2000):
        sid = f"many-{n:04d}"
        (many / f"{sid}.jsonl").write_bytes(user("x" * 100, sessionId=sid, cwd="/home/me/many"))
    monkeypatch.setenv("SESSIONWATCH_SUBSCRIBER_QUEUE", "4")
    srv = sw_server(env_passthrough=True)
    # A client that connects and never reads: its socket buffers fill, then its queue.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    try:
        sock.sendall(f"GET /stream HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
        good = SSEClient(srv.url + "/stream").start()
        good.next()
        wait_for(lambda: _metric(srv, "sessionwatch_subscribers") == 2, what="two subscribers")

        def pump() -> bool:
            httpx.post(srv.url + "/refresh", json={}, timeout=30)  # a refresh carries every session
            assert good.next(timeout=30).event == "refresh"
            return _metric(srv, "sessionwatch_subscribers_dropped_total") >= 1

        wait_for(pump, timeout=60, what="the slow subscriber to be dropped")
        assert _metric(srv, "sessionwatch_subscribers") == 1
        # the good client still receives
        with open(projects / MUSIC / f"{SID}.jsonl", "ab") as f:
            f.write(assistant("after", "after", 1, model="claude-sonnet-4-20250514"))
        assert good.next(timeout=30).event == "session-updated"
        good.stop()
    finally:
        sock.close()


def _metric(srv: Server, name: str) -> float:
    for line in httpx.get(srv.url + "/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_restart_resumes_offsets_and_counts_a_line_once(projects: Path, sw_server: Callable[..., Server]) -> None:
    srv = sw_server()
    before = _session(srv, SID)
    lines_before = _metric(srv, "sessionwatch_transcript_lines_total")
    assert lines_before > 1000
    assert srv.stop() == 0
    with open(projects / MUSIC / f"{SID}.jsonl", "ab") as f:
        f.write(assistant("while-down", "r-down", 500, model="claude-sonnet-4-20250514"))
    srv.start()
    after = _session(srv, SID)
    assert after["tokens"]["output"] == before["tokens"]["output"] + 500
    assert _metric(srv, "sessionwatch_transcript_lines_total") == 1  # only the new line was read
    srv.stop()
    srv.start()
    assert _session(srv, SID)["tokens"] == after["tokens"]


def _session(srv: Server, sid: str) -> dict[str, Any]:
    return {s["id"]: s for s in httpx.get(srv.url + "/all").json()["sessions"]}[sid]


def test_ctrl_c_with_open_streams_stops_promptly(projects: Path, sw_server: Callable[..., Server], backend: str) -> None:
    srv = sw_server(stream_backend=backend)
    clients = [SSEClient(srv.url + "/stream").start() for _ in range(3)]
    for c in clients:
        c.next()
    assert srv.stop(timeout=10) == 0
    for c in clients:
        assert c.closed.wait(5)
    # The streams ended by themselves at once: uvicorn never had to cancel
    # them when its 3 s graceful-shutdown timeout ran out.
    assert "graceful shutdown exceeded" not in srv.log.read_text()


def test_refresh_broadcasts_refresh(projects: Path, sw_server: Callable[..., Server]) -> None:
    srv = sw_server()
    client = SSEClient(srv.url + "/stream").start()
    client.next()
    assert httpx.post(srv.url + "/refresh").status_code == 200
    ev = client.next()
    assert ev.event == "refresh" and len(ev.data["sessions"]) == 15


def test_projects_dir_that_appears_later_is_picked_up(tmp_path: Path, sw_server: Callable[..., Server]) -> None:
    later = tmp_path / "not-yet"
    srv = sw_server(projects_dir=later)
    client = SSEClient(srv.url + "/stream").start()
    assert client.next().data["sessions"] == []
    shutil.copytree(FIXTURES / "-tmp", later / "-tmp")
    ev = client.next(timeout=15)
    assert ev.event == "session-created" and len(ev.data["sessions"]) == 5


def test_a_transcript_written_at_once_into_a_new_folder_is_seen(projects: Path, sw_server: Callable[..., Server]) -> None:
    """Regression: inotify watches a new directory only after it is created, so a
    file written into it at once was missed (Claude Code in a new project)."""
    srv = sw_server()
    client = SSEClient(srv.url + "/stream").start()
    client.next()
    for n in range(5):
        folder = projects / f"-home-me-fresh{n}"
        folder.mkdir()
        (folder / f"fresh-{n}.jsonl").write_bytes(user("new project", sessionId=f"fresh-{n}", cwd=f"/home/me/fresh{n}"))
    seen: set[str] = set()
    while len(seen) < 5:
        ev = client.next()
        assert ev.event == "session-created"
        seen |= {s["id"] for s in ev.data["sessions"]}
    assert seen == {f"fresh-{n}" for n in range(5)}


def test_static_files_are_revalidated(shared_server: Server) -> None:
    srv = shared_server
    r = httpx.get(srv.url + "/static/main.js")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-cache"
