"""The command line: help, one-line errors, scan, refusing unsafe binds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import FIXTURES


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "sessionwatch", *args], capture_output=True, text=True, timeout=60, env=base)


@pytest.mark.parametrize("cmd", [[], ["serve"], ["scan"], ["dashboard"]])
def test_help(cmd: list[str]) -> None:
    r = run(*cmd, "--help")
    assert r.returncode == 0 and "usage: sessionwatch" in r.stdout


def test_serve_help_lists_every_contract_flag() -> None:
    out = run("serve", "--help").stdout
    for flag in ("--host", "--port", "--projects-dir", "--db", "--token", "--debounce-ms", "--keepalive-s",
                 "--stale-after-s", "--cleanup-after-s", "--idle-after-s", "--prices"):
        assert flag in out


def test_readme_flags_table_matches_help() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    out = run("serve", "--help").stdout
    for flag in ("--host", "--port", "--projects-dir", "--db", "--token", "--debounce-ms", "--keepalive-s",
                 "--stale-after-s", "--cleanup-after-s", "--idle-after-s", "--prices"):
        assert f"`{flag}`" in readme and flag in out


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["serve", "--port", "abc"], {}, "not a port number"),
        (["serve", "--keepalive-s", "-1"], {}, "must not be negative"),
        (["serve", "--host", "0.0.0.0"], {}, "without --token"),
        (["serve"], {"SESSIONWATCH_HOST": "192.168.1.5"}, "without --token"),
        (["serve"], {"SESSIONWATCH_PORT": "nope"}, "SESSIONWATCH_PORT"),
        (["serve", "--prices", "/nonexistent.json"], {}, "cannot read --prices"),
        (["scan", "--projects-dir", "/nonexistent/dir"], {}, "does not exist"),
        (["bogus"], {}, "invalid choice"),
    ],
)
def test_user_mistakes_are_one_line_and_nonzero(args: list[str], env: dict[str, str], needle: str) -> None:
    r = run(*args, env=env)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0] and "Traceback" not in r.stderr


def test_flag_wins_over_environment(tmp_path: Path) -> None:
    r = run("scan", "--json", "--projects-dir", str(FIXTURES), env={"SESSIONWATCH_PROJECTS_DIR": "/nonexistent"})
    assert r.returncode == 0


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run("serve", "--port", str(port), "--projects-dir", str(tmp_path), "--db", str(tmp_path / "x.db"))
    assert r.returncode == 2 and "cannot listen" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_scan_json_reports_every_fixture_session() -> None:
    r = run("scan", "--json", "--projects-dir", str(FIXTURES))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    sessions = {s["id"]: s for s in data["sessions"]}
    assert len(sessions) == 15
    s = sessions["fe5e1c67-53e7-4862-81ae-d0e013e3270b"]
    assert s["project"] == "/path/to/Demo" and s["title"] == "Empty Repo Setup: CLAUDE.md Foundation Created"
    assert all(x["cost_usd"] is not None for x in data["sessions"])
    assert data["totals"]["sessions"] == 15
    # the last line without a newline counts in a one-shot scan
    assert sessions["session_b"]["message_count"] == 3


def test_scan_with_a_prices_file(tmp_path: Path) -> None:
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"models": {"claude-opus-4-6": {"input": 1, "output": 1}}}))
    data = json.loads(run("scan", "--json", "--projects-dir", str(FIXTURES), "--prices", str(f)).stdout)
    costs = {s["model"]: s["cost_usd"] for s in data["sessions"]}
    assert costs["claude-sonnet-4-20250514"] is None  # unknown to this table: null, not 0
    assert costs["claude-opus-4-6"] is not None


def test_scan_table_output() -> None:
    r = run("scan", "--projects-dir", str(FIXTURES))
    assert r.returncode == 0 and "/path/to/Demo" in r.stdout
