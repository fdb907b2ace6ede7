"""The command line: help, one-line errors, scan, refusing unsafe binds."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwatch.store.sqlite import Store

from .conftest import FIXTURES


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "sessionwatch", *args], capture_output=True, text=True, timeout=60, env=base)


@pytest.mark.parametrize("cmd", [[], ["serve"], ["scan"], ["dashboard"]])
def test_help(cmd: list[str]) -> None:
    r = run(*cmd, "--help")
    assert r.returncode == 0 and "usage: sessionwatch" in r.stdout


SERVE_FLAGS = ("--host", "--port", "--projects-dir", "--db", "--token", "--allowed-hosts", "--trusted-proxies",
               "--debounce-ms", "--keepalive-s", "--stale-after-s", "--cleanup-after-s", "--idle-after-s", "--prices",
               "--log-level")


def test_serve_help_lists_every_contract_flag() -> None:
    out = run("serve", "--help").stdout
    for flag in SERVE_FLAGS:
        assert flag in out


# README.md's flag tables against --help: tests/test_docs.py (every subcommand, both ways, defaults).


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
        (["serve", "--token", ""], {}, "--token must not be empty"),
        (["serve", "--token", "   "], {}, "--token must not be empty"),
        (["serve"], {"SESSIONWATCH_TOKEN": " "}, "--token must not be empty"),
        (["serve", "--allowed-hosts", "http://x/"], {}, "--allowed-hosts"),
        (["serve", "--trusted-proxies", "nginx"], {}, "--trusted-proxies"),
        (["serve", "--log-level", "loud"], {}, "--log-level"),
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


SERVER_MODULES = ("starlette", "uvicorn", "aiosqlite", "panel", "bokeh", "sse_starlette", "prometheus_client", "httpx")


def test_scan_imports_no_server_module() -> None:
    """`scan` is timed with start-up included: the parser of every subcommand is
    built on each run, so no subcommand module may import the server at its top."""
    code = (
        "import sys, io\n"
        "from sessionwatch.cli import main\n"
        "sys.stdout = io.TextIOWrapper(io.BytesIO())\n"
        f"rc = main(['scan', '--json', '--projects-dir', {str(FIXTURES)!r}])\n"
        f"loaded = sorted({{m.split('.')[0] for m in sys.modules}} & set({SERVER_MODULES!r}))\n"
        "sys.stderr.write(f'RESULT {rc} {loaded}\\n')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert "RESULT 0 []" in r.stderr, r.stderr


#: What `scan` leaves out of its start-up besides the server: inspect (with ast
#: and dis) comes with dataclasses and with typing_extensions, which msgspec
#: takes when installed; orjson, since msgspec writes the JSON; shutil (with
#: zlib, bz2, lzma), which argparse's help formatter takes for the width.
LEAN_MODULES = ("inspect", "dataclasses", "typing_extensions", "orjson", "shutil")


def test_scan_loads_neither_inspect_nor_typing_extensions_and_leaves_them_importable() -> None:
    code = (
        "import sys, io\n"
        "from sessionwatch.cli import main\n"
        "sys.stdout = io.TextIOWrapper(io.BytesIO())\n"
        f"rc = main(['scan', '--json', '--projects-dir', {str(FIXTURES)!r}])\n"
        f"loaded = sorted(m for m in {LEAN_MODULES!r} if sys.modules.get(m) is not None)\n"
        "import typing_extensions\n"  # hidden only while msgspec loaded
        "sys.stderr.write(f'RESULT {rc} {loaded} {typing_extensions.__name__}\\n')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert "RESULT 0 [] typing_extensions" in r.stderr, r.stderr


def test_scan_table_output() -> None:
    r = run("scan", "--projects-dir", str(FIXTURES))
    assert r.returncode == 0 and "/path/to/Demo" in r.stdout


# --- a failed start (issue 8, item 1) ------------------------------------------------


def _damaged_db(path: Path) -> Path:
    """A real sessionwatch database whose transcripts table lost its columns."""
    async def create() -> None:
        store = await Store.open(path)
        await store.close()

    asyncio.run(create())
    with sqlite3.connect(path) as conn:
        conn.executescript("DROP TABLE transcripts; CREATE TABLE transcripts (x);")
    return path


@pytest.mark.parametrize("kind", ["not-sqlite", "damaged"])
def test_failed_start_exits_nonzero_at_once_with_one_line(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "sw.db"
    if kind == "not-sqlite":
        db.write_bytes(b"this is not a database" * 100)
    else:
        _damaged_db(db)
    (tmp_path / "projects").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessionwatch", "serve", "--projects-dir", str(tmp_path / "projects"),
         "--db", str(db), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        _, err = proc.communicate(timeout=30)  # a hung process fails here
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the server neither served nor exited after a failed start") from None
    assert proc.returncode not in (0, None)
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, err
    assert errors[0].startswith("sessionwatch: error: cannot start:") and str(db) in errors[0]


# --- a closed pipe (issue 8, item 21) ---------------------------------------------------


@pytest.mark.parametrize("args", [["--json"], []])
def test_scan_into_a_closed_pipe_exits_quietly(args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessionwatch", "scan", *args, "--projects-dir", str(FIXTURES)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head -0`: the reader is gone before the first write
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 141)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err


# --- log levels (issue 8, item 15) ------------------------------------------------------


def test_debug_log_level_keeps_sql_parameters_out_of_the_log(sw_server: Callable[..., Any], projects: Path) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--log-level", "debug"])
    r = httpx.post(srv.url + "/sessions", json={"app_name": "secret-app-name-4711"}, timeout=5)
    assert r.status_code == 201
    httpx.post(srv.url + "/refresh", timeout=30)
    srv.stop()
    log = srv.log.read_text()
    assert "secret-app-name-4711" not in log
    assert "DEBUG aiosqlite" not in log


def test_a_library_logs_at_debug_when_named(sw_server: Callable[..., Any], projects: Path) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--log-level", "info,aiosqlite=debug"])
    httpx.post(srv.url + "/sessions", json={"app_name": "named-4712"}, timeout=5)
    srv.stop()
    assert "DEBUG aiosqlite" in srv.log.read_text()


def test_scan_orders_sessions_with_the_same_last_activity_by_id(tmp_path: Path) -> None:
    """Newest first, the id breaking ties: the output does not depend on which
    parallel reader read which file."""
    projects = tmp_path / "projects" / "p"
    projects.mkdir(parents=True)
    line = '{{"type":"user","sessionId":"{sid}","timestamp":"2026-01-01T00:00:00Z","cwd":"/w","message":{{"role":"user","content":"hi"}}}}\n'
    for sid in ("b-session", "c-session", "a-session"):
        (projects / f"{sid}.jsonl").write_text(line.format(sid=sid))
    r = run("scan", "--json", "--projects-dir", str(tmp_path / "projects"))
    assert r.returncode == 0, r.stderr
    assert [s["id"] for s in json.loads(r.stdout)["sessions"]] == ["c-session", "b-session", "a-session"]


@pytest.mark.parametrize(
    ("line", "dest"),
    [
        (["dashboard", "--server", "http://h:1"], "server_url"),
        (["dashboard", "--server-url", "http://h:1"], "server_url"),
        (["hooks", "install", "--server", "http://h:1"], "url"),
        (["hooks", "install", "--url", "http://h:1"], "url"),
        (["hook", "--server", "http://h:1"], "url"),
    ],
)
def test_client_commands_take_the_server_as_design_spells_it(line: list[str], dest: str) -> None:
    """DESIGN.md: every client command finds the server with --server URL (older spellings stay)."""
    from sessionwatch.cli import build_parser

    assert getattr(build_parser().parse_args(line), dest) == "http://h:1"


def test_hook_relay_takes_the_server_as_design_spells_it() -> None:
    from sessionwatch.integrations.hook_command import _args

    assert _args(["hook", "--server", "http://h:1"])[0] == "http://h:1"
    assert _args(["hook", "--url=http://h:2"])[0] == "http://h:2"


def test_the_collector_is_off_only_while_a_command_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() keeps the cyclic garbage collector off while the command's
    modules load, and for the one-shot `scan` until it is done; any other
    command runs with it on, and main() leaves it as it found it."""
    import gc

    import sessionwatch.cli.scan
    import sessionwatch.cli.serve
    from sessionwatch.cli import main

    seen: dict[str, bool] = {}
    monkeypatch.setattr(sessionwatch.cli.scan, "run", lambda args: seen.setdefault("scan", gc.isenabled()) and 0)
    monkeypatch.setattr(sessionwatch.cli.serve, "run", lambda args: seen.setdefault("serve", gc.isenabled()) and 0)
    assert gc.isenabled()
    main(["scan"])
    assert gc.isenabled()
    main(["serve"])
    assert gc.isenabled()
    assert seen == {"scan": False, "serve": True}
    gc.disable()
    try:
        main(["serve"])  # not turned on for a caller who had it off
        assert not gc.isenabled()
    finally:
        gc.enable()
