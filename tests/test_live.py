"""Claude Code's live registry ~/.claude/sessions/<pid>.json (sources/claude/live.py).

Unit tests build registry folders and fake /proc trees in tmp_path; the
real-CLI tests run Claude Code 2.1.330 against tests/fakeapi.py and read the
registry it writes.
"""

from __future__ import annotations

import json
import os
import signal
import time
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from sessionwatch.sources.claude.live import LiveProcess, process_start, read_entry, read_live, registry_status

from .claude_cli import ClaudeHome, ClaudeProcess
from .claude_fixtures import claude_home, fake_api  # noqa: F401 - fixtures
from .conftest import require_tool, wait_for
from .fakeapi import FakeAPI, Turn
from .hookcapture import Tmux, seed_interactive

DOMAIN = "linux:3d1219c7c4c5404aaa1f6d2a48adfda4:pid:[4026531836]"
SID = "1266b4a9-e0d2-437c-b8bf-86fab0f06c80"


def entry(pid: int, session_id: str = SID, proc_start: str | None = "956552", **extra: Any) -> dict[str, Any]:
    """A registry entry shaped as 2.1.330 writes it."""
    e: dict[str, Any] = {
        "pid": pid,
        "sessionId": session_id,
        "cwd": "/home/me/work",
        "startedAt": 1795333222306,
        "procStart": proc_start,
        "version": "2.1.330",
        "peerProtocol": 1,
        "kind": "interactive",
        "entrypoint": "cli",
        "pidDomain": DOMAIN,
        "messagingSocketPath": f"/tmp/cc-socks/{pid}.sock",
        "name": "work-cf",
        "status": "busy",
        "updatedAt": 1795333222341,
        "statusUpdatedAt": 1795333222341,
    }
    if proc_start is None:
        del e["procStart"]
    e.update(extra)
    return e


def write(folder: Path, name: str, value: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


def fake_proc(root: Path, pid: int, start: str, comm: str = "claude") -> None:
    """A /proc/<pid>/stat whose field 22 (start time) is ``start``."""
    fields = ["S", "1", "1", "1", "0", "-1", "4194560"] + ["0"] * 12 + [start] + ["0"] * 30
    write(root / str(pid), "stat", f"{pid} ({comm}) " + " ".join(fields) + "\n")


def test_live_process_is_listed_with_its_fields(tmp_path: Path) -> None:
    reg, proc = tmp_path / "sessions", tmp_path / "proc"
    write(reg, "4242.json", entry(4242))
    fake_proc(proc, 4242, "956552")
    scan = read_live(reg, proc=proc, domain=DOMAIN)
    assert scan.skipped == 0 and scan.gone == []
    assert scan.live == {
        SID: LiveProcess(
            pid=4242,
            session_id=SID,
            cwd="/home/me/work",
            started_at=1795333222.306,
            version="2.1.330",
            kind="interactive",
            entrypoint="cli",
            name="work-cf",
            status="busy",
            status_updated_at=1795333222.341,
            updated_at=1795333222.341,
            proc_start="956552",
        )
    }


def test_dead_pid_is_gone(tmp_path: Path) -> None:
    reg = tmp_path / "sessions"
    write(reg, "4242.json", entry(4242))
    scan = read_live(reg, proc=tmp_path / "proc", domain=DOMAIN)
    assert scan.live == {} and [g.pid for g in scan.gone] == [4242]


def test_reused_pid_is_gone(tmp_path: Path) -> None:
    # The pid exists, but it is another process: it started at another time.
    reg, proc = tmp_path / "sessions", tmp_path / "proc"
    write(reg, "4242.json", entry(4242, proc_start="956552"))
    fake_proc(proc, 4242, "999999")
    scan = read_live(reg, proc=proc, domain=DOMAIN)
    assert scan.live == {} and [g.session_id for g in scan.gone] == [SID]


def test_reused_pid_against_the_real_proc(tmp_path: Path) -> None:
    # This test's own pid stands for a pid the kernel gave to a new process.
    me = os.getpid()
    own_start = process_start(me)
    assert own_start is not None
    reg = tmp_path / "sessions"
    write(reg, f"{me}.json", entry(me, proc_start=str(int(own_start) - 1)))
    assert read_live(reg, domain=DOMAIN).gone[0].pid == me
    write(reg, f"{me}.json", entry(me, proc_start=own_start))
    assert list(read_live(reg, domain=DOMAIN).live) == [SID]


def test_stat_with_spaces_and_parentheses_in_the_command_name(tmp_path: Path) -> None:
    fake_proc(tmp_path, 7, "12345", comm="a ) b (c")
    assert process_start(7, tmp_path) == "12345"
    assert process_start(8, tmp_path) is None


def test_entry_without_proc_start_is_alive_while_the_pid_exists(tmp_path: Path) -> None:
    reg, proc = tmp_path / "sessions", tmp_path / "proc"
    write(reg, "4242.json", entry(4242, proc_start=None))
    fake_proc(proc, 4242, "1")
    assert list(read_live(reg, proc=proc, domain=DOMAIN).live) == [SID]


def test_entry_from_another_pid_namespace_is_alive_unverified(tmp_path: Path) -> None:
    reg = tmp_path / "sessions"
    write(reg, "4242.json", entry(4242, pidDomain="linux:othermachine:pid:[1]"))
    scan = read_live(reg, proc=tmp_path / "proc", domain=DOMAIN)
    assert scan.live[SID].verified is False and scan.gone == []


def test_bad_files_are_counted_and_skipped(tmp_path: Path) -> None:
    reg, proc = tmp_path / "sessions", tmp_path / "proc"
    write(reg, "1.json", "{not json")
    write(reg, "2.json", "[]")
    write(reg, "3.json", {"pid": 3})  # no sessionId
    write(reg, "4.json", entry(5))  # pid does not match the file name
    write(reg, "6.json", entry(6, session_id=""))
    write(reg, "7.json", b"\xff".decode("latin-1") * 10)
    write(reg, "8.json", {**entry(8), "pid": "8"})  # wrong type
    write(reg, "9.json", " " * (70 * 1024))  # far too large
    (reg / "10.json").mkdir()
    write(reg, "11.json", entry(11, session_id="live-one"))
    fake_proc(proc, 11, "956552")
    scan = read_live(reg, proc=proc, domain=DOMAIN)
    assert scan.skipped == 9, scan.problems
    assert len(scan.problems) == 9
    assert sorted(scan.unreadable) == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert list(scan.live) == ["live-one"]


def test_key_files_and_other_names_are_never_opened(tmp_path: Path) -> None:
    reg, proc = tmp_path / "sessions", tmp_path / "proc"
    key = write(reg, "4242.7710fea0461021c7e812fc9cca70c2eb02eb136c1a594ce89828a2fadf738a00.key", '{"peerToken": "secret"}')
    (reg / "4243.0123abcd.key").mkdir()  # opening this one would fail and be counted
    write(reg, "notes.json", entry(1))
    write(reg, "4242.json.tmp", entry(4242))
    scan = read_live(reg, proc=proc, domain=DOMAIN)
    assert (scan.live, scan.gone, scan.skipped) == ({}, [], 0)
    try:
        read_entry(key)
    except ValueError as exc:
        assert "not a <pid>.json" in str(exc)


def test_entry_caught_mid_rewrite_is_read_again(tmp_path: Path, monkeypatch: Any) -> None:
    # The CLI writes in place and truncates after: a read can see the new JSON plus the old tail.
    reg, proc = tmp_path / "sessions", tmp_path / "proc"
    path = write(reg, "4242.json", json.dumps(entry(4242)) + 'old tail"}')
    fake_proc(proc, 4242, "956552")
    real_open = Path.open
    reads = []

    def open_then_finish_the_rewrite(self: Path, *args: Any, **kw: Any) -> Any:
        if self == path:
            reads.append(1)
            if len(reads) == 2:
                with real_open(path, "w") as f:  # the ftruncate lands
                    f.write(json.dumps(entry(4242)))
        return real_open(self, *args, **kw)

    monkeypatch.setattr(Path, "open", open_then_finish_the_rewrite)
    scan = read_live(reg, proc=proc, domain=DOMAIN)
    assert list(scan.live) == [SID] and scan.skipped == 0 and len(reads) == 2


@pytest.mark.parametrize(
    ("status", "waiting_for", "expected"),
    [
        ("busy", None, ("running", "busy")),
        ("waiting", "permission prompt", ("needs_approval", "waiting for permission prompt")),
        ("waiting", None, ("needs_approval", "waiting")),
        ("idle", None, ("waiting", "idle")),
        ("sleeping", None, None),
        (None, None, None),
    ],
)
def test_registry_status(tmp_path: Path, status: str | None, waiting_for: str | None, expected: tuple[str, str] | None) -> None:
    extra = {"status": status} if status else {}
    if waiting_for:
        extra["waitingFor"] = waiting_for
    e = entry(4242, **extra)
    if status is None:
        del e["status"]
    got = read_entry(write(tmp_path, "4242.json", e))
    assert got.waiting_for == waiting_for
    assert registry_status(got) == expected


def test_missing_folder_is_an_empty_scan(tmp_path: Path) -> None:
    scan = read_live(tmp_path / "nope")
    assert (scan.live, scan.gone, scan.skipped) == ({}, [], 0)


def test_two_processes_on_one_session_the_newest_wins(tmp_path: Path) -> None:
    reg, proc = tmp_path / "sessions", tmp_path / "proc"
    write(reg, "10.json", entry(10, startedAt=1000))
    write(reg, "20.json", entry(20, startedAt=2000))
    fake_proc(proc, 10, "956552")
    fake_proc(proc, 20, "956552")
    assert read_live(reg, proc=proc, domain=DOMAIN).live[SID].pid == 20


# --- the real CLI ----------------------------------------------------------------------------


def test_running_cli_is_live_before_its_first_prompt_and_gone_after_exit(fake_api: FakeAPI, claude_home: ClaudeHome) -> None:
    gate = threading.Event()
    fake_api.reset([Turn.text("slow answer", gate=gate)])
    session_id = str(uuid.uuid4())
    registry = claude_home.claude_dir / "sessions"
    with ClaudeProcess(claude_home, fake_api.url, "--session-id", session_id) as cli:
        # The CLI's first write of the file has no "status" yet (539 then 613 bytes under strace).
        live = wait_for(lambda: getattr(read_live(registry).live.get(session_id), "status", None) and read_live(registry).live[session_id], 30, "the registry entry with its status")
        assert isinstance(live, LiveProcess)
        assert (live.pid, live.cwd, live.version, live.status) == (cli.pid, str(claude_home.cwd), "2.1.330", "idle")
        assert live.verified and live.proc_start == process_start(cli.pid)
        assert not claude_home.transcripts()  # listed before any transcript exists

        cli.send("take your time")
        fake_api.wait_requests(1)
        wait_for(lambda: getattr(read_live(registry).live.get(session_id), "status", None) == "busy", 30, "status busy during the turn")
        gate.set()
        cli.wait_result()
        assert cli.close() == 0
    scan = read_live(registry)
    assert session_id not in scan.live and scan.gone == [] and scan.skipped == 0


def test_killed_cli_leaves_its_entry_and_counts_as_gone(fake_api: FakeAPI, claude_home: ClaudeHome) -> None:
    session_id = str(uuid.uuid4())
    registry = claude_home.claude_dir / "sessions"
    with ClaudeProcess(claude_home, fake_api.url, "--session-id", session_id) as cli:
        wait_for(lambda: session_id in read_live(registry).live, 30, "the registry entry")
        os.kill(cli.pid, signal.SIGKILL)
        cli.proc.wait(10)
    assert (registry / f"{cli.pid}.json").exists()  # nobody removed it
    scan = read_live(registry)
    assert session_id not in scan.live
    assert [g.session_id for g in scan.gone] == [session_id]


def test_interactive_permission_dialog_shows_in_the_registry_until_escape(fake_api: FakeAPI, claude_home: ClaudeHome) -> None:
    """While the dialog waits: "waiting" for "permission prompt"; after Escape (no hook event at all): "idle"."""
    require_tool("tmux")
    seed_interactive(claude_home)
    fake_api.reset([Turn.tool_use("Write", {"file_path": str(claude_home.cwd / "no.txt"), "content": "no"})])
    registry = claude_home.claude_dir / "sessions"
    term = Tmux(claude_home, fake_api.url, "--permission-mode", "default")
    try:
        wait_for(lambda: read_live(registry).live, 30, "the registry entry")
        term.wait_screen("? for shortcuts", 30)

        def status() -> tuple[str, str] | None:
            live = list(read_live(registry).live.values())
            return registry_status(live[0]) if live else None

        # the first write has no status yet; on a loaded machine the prompt box can be drawn before the second
        wait_for(lambda: status() == ("waiting", "idle"), 30, "idle before the first prompt")
        term.type_line("write a file")

        wait_for(lambda: status() == ("needs_approval", "waiting for permission prompt"), 30, "the dialog in the registry")
        deadline = time.monotonic() + 30
        while True:  # Escape again while the dialog stays on screen (a key can land before it takes input)
            if "Do you want" in term.screen():
                term.keys("Escape")
            try:
                wait_for(lambda: status() == ("waiting", "idle"), 2, "idle after Escape")
                break
            except AssertionError:
                assert time.monotonic() < deadline, f"not idle after Escape:\n{term.screen()}"
        assert not (claude_home.cwd / "no.txt").exists()
    finally:
        term.close()
