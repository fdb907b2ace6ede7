"""``POST /runs``: how a ``sessionwatch run`` in a terminal shows on the
dashboards, on a real server: the row, its figures and logs, Stop from the
dashboard reaching the run through the answer to its next report, the end,
DELETE, and bad reports refused with one sentence."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server

CWD = "/home/me/src/app"


@pytest.fixture
def srv(tmp_path: Path, sw_server: Callable[..., Server]) -> Server:
    (tmp_path / "projects").mkdir()
    return sw_server()


def report(srv: Server, sid: str, state: str = "running", **body: Any) -> httpx.Response:
    data = {"session_id": sid, "name": "nightly", "cwd": CWD, "pid": 4242, "state": state, **body}
    return httpx.post(srv.url + "/runs", json=data, timeout=10)


def row(srv: Server, sid: str) -> dict[str, Any] | None:
    return next((s for s in httpx.get(srv.url + "/all").json()["sessions"] if s["id"] == sid), None)


def line(kind: str, content: str, **more: Any) -> dict[str, Any]:
    return {"ts": time.time(), "level": "info", "source": "stdout", "kind": kind, "content": content, **more}


def test_a_run_is_one_row_with_its_figures_logs_and_end(srv: Server) -> None:
    sid = str(uuid.uuid4())
    r = report(srv, sid, "starting", logs=[line("prompt", "fix the build")], current_task="fix the build", max_cost_usd=2.5)
    assert r.status_code == 200, r.text
    assert r.json() == {"stop": False, "max_cost_usd": 2.5}
    s = row(srv, sid)
    assert s is not None
    assert s["source"] == "claude" and s["project"] == CWD and s["status"] == "running"
    assert s["managed"] == {
        "name": "nightly", "state": "starting", "pid": 4242, "max_cost_usd": 2.5, "exit_code": None,
        "kind": "run", "total_cost_usd": None, "num_turns": 0, "duration_ms": None,
    }  # fmt: skip
    assert s["controls"] == ["stop"] and s["current_task"] == "fix the build"
    figures = {"total_cost_usd": 0.0123, "num_turns": 3, "duration_ms": 4100}
    r = report(srv, sid, "waiting", figures=figures, logs=[line("reply", "done"), line("result", "turn ended", cost_usd=0.0123)])
    assert r.status_code == 200
    s = row(srv, sid)
    assert s is not None and s["status"] == "waiting" and s["cost_usd"] == 0.0123
    assert s["managed"]["num_turns"] == 3 and s["managed"]["duration_ms"] == 4100
    logs = httpx.get(srv.url + f"/sessions/{sid}/logs").json()["logs"]
    assert [x["kind"] for x in logs] == ["prompt", "reply", "result"]
    assert [x["id"] for x in logs] == sorted(x["id"] for x in logs)
    assert httpx.get(srv.url + f"/sessions/{sid}/logs", params={"kind": "reply"}).json()["logs"][0]["content"] == "done"
    r = report(srv, sid, "ended", figures={**figures, "num_turns": 4}, exit_code=0, status_reason="process exited 0")
    s = row(srv, sid)
    assert s is not None and s["status"] == "ended" and s["status_reason"] == "process exited 0"
    assert s["managed"]["state"] == "stopped" and s["managed"]["exit_code"] == 0 and s["managed"]["pid"] is None
    assert s["controls"] == ["delete"]
    # forgotten on DELETE: no transcript holds the id, so the row goes
    assert httpx.delete(srv.url + f"/sessions/{sid}").json() == {"deleted": True}
    assert row(srv, sid) is None
    assert httpx.get(srv.url + f"/sessions/{sid}/logs").status_code == 404


def test_stop_from_the_dashboard_reaches_the_run_on_its_next_report_and_is_recorded(srv: Server) -> None:
    sid = str(uuid.uuid4())
    report(srv, sid).raise_for_status()
    r = httpx.post(srv.url + f"/sessions/{sid}/stop", json={}, headers={"User-Agent": "dash/1"})
    assert r.status_code == 200, r.text
    assert report(srv, sid).json()["stop"] is True
    s = row(srv, sid)
    assert s is not None and s["controls"] == []  # asked once; the run is stopping
    actions = httpx.get(srv.url + f"/sessions/{sid}").json()["actions"]
    assert [(a["action"], a["by"]["who"], a["by"]["user_agent"]) for a in actions] == [("stop", "local", "dash/1")]
    report(srv, sid, "failed", exit_code=130, status_reason="stopped from the dashboard").raise_for_status()
    s = row(srv, sid)
    assert s is not None and s["status"] == "failed" and s["status_reason"] == "stopped from the dashboard"
    r = httpx.post(srv.url + f"/sessions/{sid}/stop", json={})
    assert (r.status_code, r.json()) == (409, {"error": "the run has ended"})
    # the server's own actions do not reach a run
    r = httpx.post(srv.url + f"/sessions/{sid}/messages", json={"text": "hi"})
    assert r.status_code == 409 and "sessionwatch run" in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"state": "running"}, "session_id is required"),
        ({"session_id": "a b", "state": "running"}, None),
        ({"session_id": "x1", "state": "flying"}, "state must be one of starting, running, waiting, ended, failed"),
        ({"session_id": "x1", "state": "running", "figures": []}, "figures must be an object"),
        ({"session_id": "x1", "state": "running", "figures": {"total_cost_usd": -1}}, "total_cost_usd must be a number of dollars, 0 or more"),
        ({"session_id": "x1", "state": "running", "pid": "12"}, "pid must be an integer"),
        ({"session_id": "x1", "state": "running", "logs": {}}, "logs must be a list of at most 1000 lines"),
        ({"session_id": "x1", "state": "running", "logs": [{"ts": 1, "level": "loud", "source": "stdout", "kind": "reply", "content": ""}]}, None),
        ({"session_id": "x1", "state": "running", "logs": [{"ts": "now", "level": "info", "source": "stdout", "kind": "reply", "content": ""}]}, "a line of logs: its ts must be a Unix time"),
    ],
)
def test_bad_reports_get_one_sentence_and_change_nothing(srv: Server, body: dict[str, Any], error: str | None) -> None:
    r = httpx.post(srv.url + "/runs", json=body)
    assert r.status_code == 400, r.text
    if error is not None:
        assert r.json() == {"error": error}
    else:
        assert isinstance(r.json()["error"], str) and "\n" not in r.json()["error"]
    assert httpx.get(srv.url + "/all").json()["sessions"] == []


def test_logs_query_is_checked(srv: Server) -> None:
    sid = str(uuid.uuid4())
    report(srv, sid, logs=[line("reply", f"r{i}") for i in range(5)]).raise_for_status()
    base = srv.url + f"/sessions/{sid}/logs"
    first = httpx.get(base, params={"limit": 2}).json()
    assert [x["content"] for x in first["logs"]] == ["r0", "r1"]
    rest = httpx.get(base, params={"after": first["last_id"]}).json()
    assert [x["content"] for x in rest["logs"]] == ["r2", "r3", "r4"]
    for params, error in (
        ({"limit": 0}, "limit must be a whole number from 1 to 1000"),
        ({"after": -1}, "after must be a whole number from 0 to 4611686018427387904"),
        ({"level": "loud"}, "level must be one of debug, info, warn, error (that level and above)"),
        ({"kind": "reply,poem"}, "kind must be one of prompt, reply, tool, result, permission, system, raw, got 'poem'"),
        ({"follow": "yes"}, "follow must be 1 or 0"),
    ):
        r = httpx.get(base, params=params)
        assert (r.status_code, r.json()) == (400, {"error": error})
    assert httpx.get(srv.url + "/sessions/nope/logs").status_code == 404
