"""PostgreSQL and replicas (issue 13): ``serve --db postgresql://...``, several
servers on one database, each event id taken in the transaction of its
change, the other replicas following by LISTEN/NOTIFY."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from .conftest import Server


def test_serve_on_postgres_stores_and_survives_a_restart(sw_server: Callable[..., Server], tmp_path: Path, pg_url: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    srv = sw_server(projects_dir=empty, db=pg_url)
    r = httpx.post(srv.url + "/sessions", json={"app_name": "reports", "session_id": "p1"}, timeout=10)
    assert r.status_code == 201, r.text
    r = httpx.put(srv.url + "/sessions/p1/status", json={"status": "running", "current_task": "t"}, timeout=10)
    assert r.status_code == 200, r.text
    before = httpx.get(srv.url + "/all", timeout=10).json()
    assert srv.stop() == 0
    srv.start()
    after = httpx.get(srv.url + "/all", timeout=10).json()
    (p1,) = [s for s in after["sessions"] if s["id"] == "p1"]
    assert (p1["status"], p1["current_task"]) == ("running", "t")
    assert after["last_event_id"] > before["last_event_id"]  # ids go on from the database


def test_db_that_is_another_kind_of_url_is_one_clear_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sessionwatch", "serve", "--db", "mysql://x/y", "--projects-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        "sessionwatch: error: --db must be a SQLite file or a postgresql:// URL, not mysql://..."
    ], out.stderr
