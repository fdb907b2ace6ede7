"""Incremental reading and bad files: the index never re-reads what it has."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from sessionwatch.index import ClaudeIndex
from sessionwatch.prices import PriceTable
from sessionwatch.store import TranscriptRow

from .test_claude import assistant, user

SPOTTER = "-home-USER-projects-spotter-worktrees-spotter-gqc"
BIG = "258c7280-ae70-4798-800f-63464d01a85d"


def make_index(root: Path, **kw: Any) -> ClaudeIndex:
    return ClaudeIndex(root, PriceTable.embedded(), **kw)


def bytes_read(index: ClaudeIndex) -> float:
    return index.metrics.bytes_read._value.get()  # type: ignore[attr-defined, no-any-return]


def test_fixture_sessions_use_the_real_cwd_and_roll_up_subagents(projects: Path) -> None:
    index = make_index(projects)
    index.scan()
    now = time.time()
    s = index.session(BIG, now)
    assert s is not None
    assert s["project"] == "/home/USER/projects/spotter-worktrees/spotter-gqc"
    assert s["git_branch"] and s["model"] == "claude-opus-4-6" and s["version"]
    # subagent files are part of their parent, never sessions of their own
    ids = set(index.session_ids())
    assert not any(i.startswith("agent-") for i in ids)
    main_only = make_index(projects)
    main_only.update(projects / SPOTTER / f"{BIG}.jsonl")
    alone = main_only.session(BIG, now)
    assert alone is not None
    assert s["tool_calls"] > alone["tool_calls"]
    assert s["tokens"]["output"] > alone["tokens"]["output"]


def test_flat_subagents_join_the_session_named_in_their_lines(projects: Path) -> None:
    index = make_index(projects)
    index.scan()
    parent = "5c0375b4-57a5-4f26-b12d-d022ee4e51b7"
    members = {Path(p).name for p in index.members[parent]}
    assert {"agent-test-hash-123.jsonl", f"{parent}.jsonl"} <= members


def test_a_file_with_only_a_summary_is_not_a_session(projects: Path) -> None:
    index = make_index(projects)
    index.scan()
    assert "ff71dbed-a4f2-4284-a4fc-fe2fb90de929" not in index.session_ids()


def test_append_reads_only_the_new_bytes(projects: Path) -> None:
    index = make_index(projects)
    index.scan()
    path = projects / SPOTTER / f"{BIG}.jsonl"
    before = index.session(BIG, time.time())
    assert before is not None
    read_before = bytes_read(index)
    new = assistant("m-new", "r-new", 1234)
    with open(path, "ab") as f:
        f.write(new)
    assert index.update(path) == {BIG}
    assert bytes_read(index) - read_before == len(new)
    after = index.session(BIG, time.time())
    assert after is not None
    assert after["tokens"]["output"] == before["tokens"]["output"] + 1234


def test_a_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "proj").mkdir(parents=True)
    path = root / "proj" / "s1.jsonl"
    path.write_bytes(user("hello"))
    index = make_index(root)
    index.scan()
    whole = assistant("m1", "r1", 77)
    with open(path, "ab") as f:
        f.write(whole[:40])
    index.update(path)
    assert index.files[str(path)].offset == len(user("hello"))
    with open(path, "ab") as f:
        f.write(whole[40:])
    index.update(path)
    s = index.session("s1", time.time())
    assert s is not None and s["tokens"]["output"] == 77


def test_an_unterminated_last_line_counts_once_the_file_settles(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "proj").mkdir(parents=True)
    path = root / "proj" / "s1.jsonl"
    path.write_bytes(user("hello") + assistant("m1", "r1", 5).rstrip(b"\n"))
    index = make_index(root)
    index.scan()
    assert index.session("s1", time.time())["tokens"]["output"] == 0  # type: ignore[index]
    old = time.time() - 60
    os.utime(path, (old, old))
    index.settle(time.time())
    assert index.session("s1", time.time())["tokens"]["output"] == 5  # type: ignore[index]
    with open(path, "ab") as f:
        f.write(b"\n" + assistant("m2", "r2", 6))
    index.update(path)
    assert index.session("s1", time.time())["tokens"]["output"] == 11  # type: ignore[index]


def test_a_file_that_shrank_or_was_replaced_is_read_again(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "proj").mkdir(parents=True)
    path = root / "proj" / "s1.jsonl"
    path.write_bytes(user("a") + assistant("m1", "r1", 10) + assistant("m2", "r2", 10))
    index = make_index(root)
    index.scan()
    path.write_bytes(user("a") + assistant("m1", "r1", 10))  # shrank
    index.update(path)
    assert index.session("s1", time.time())["tokens"]["output"] == 10  # type: ignore[index]
    replacement = root / "proj" / "tmp"
    replacement.write_bytes(user("b") + assistant("m9", "r9", 3) + assistant("m8", "r8", 3) + assistant("m7", "r7", 3))
    os.replace(replacement, path)  # same path, new inode, larger
    index.update(path)
    assert index.session("s1", time.time())["tokens"]["output"] == 9  # type: ignore[index]


def test_bad_files_are_counted_and_never_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "p"
    proj = root / "proj"
    proj.mkdir(parents=True)
    (proj / "empty.jsonl").write_bytes(b"")
    (proj / "dir.jsonl").mkdir()
    (proj / "garbage.jsonl").write_bytes(os.urandom(4096) + b"\n" + user("after garbage"))
    (proj / "huge.jsonl").write_bytes(b'{"type":"user","x":"' + b"a" * (10 * 1024 * 1024) + b'"}\n' + user("after huge"))
    (proj / "good.jsonl").write_bytes(user("fine"))
    (proj / "locked.jsonl").write_bytes(user("secret"))
    real_open = open

    def fake_open(file: Any, *args: Any, **kw: Any) -> Any:
        if str(file).endswith("locked.jsonl"):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kw)

    monkeypatch.setattr("builtins.open", fake_open)
    index = make_index(root)
    index.scan()
    ids = set(index.session_ids())
    assert {"good", "garbage", "huge"} <= ids
    assert "empty" not in ids and "dir" not in ids and "locked" not in ids
    assert index.session("garbage", time.time())["message_count"] == 1  # type: ignore[index]
    assert index.session("huge", time.time())["message_count"] == 1  # type: ignore[index]
    bad_files = {s.labels["reason"]: s.value for m in index.metrics.bad_files.collect() for s in m.samples if s.name.endswith("_total")}
    assert bad_files.get("unreadable") == 1 and bad_files.get("not-a-file") == 1


def test_a_line_over_the_limit_is_skipped_without_holding_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sessionwatch.index.MAX_LINE_BYTES", 1000)
    monkeypatch.setattr("sessionwatch.index.CHUNK", 512)
    root = tmp_path / "p"
    (root / "proj").mkdir(parents=True)
    path = root / "proj" / "s1.jsonl"
    path.write_bytes(user("one") + b"x" * 5000)
    index = make_index(root)
    index.scan()
    with open(path, "ab") as f:
        f.write(b"x" * 100 + b"\n" + user("two"))
    index.update(path)
    s = index.session("s1", time.time())
    assert s is not None and s["message_count"] == 2
    assert index.files[str(path)].agg.bad_lines == 1


def test_a_file_deleted_mid_read_is_forgotten(projects: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = make_index(projects)
    index.scan()
    path = projects / "-tmp" / "session_b.jsonl"
    path.unlink()
    assert index.update(path) == {"session_b"}
    assert "session_b" not in index.session_ids()


def test_state_round_trips_through_store_rows(projects: Path) -> None:
    index = make_index(projects)
    index.scan()
    rows, _ = index.take_changes()
    resumed = make_index(projects)
    resumed.load(TranscriptRow(r.path, r.kind, r.session_id, r.dev, r.ino, r.size, r.mtime, r.offset, r.agg) for r in rows)
    read = bytes_read(resumed)
    resumed.scan()
    assert bytes_read(resumed) == read  # nothing re-read
    now = time.time()
    assert {sid: resumed.session(sid, now) for sid in resumed.session_ids()} == {
        sid: index.session(sid, now) for sid in index.session_ids()
    }


def test_sessions_index_is_only_a_hint(tmp_path: Path) -> None:
    root = tmp_path / "p"
    proj = root / "proj"
    proj.mkdir(parents=True)
    (proj / "s1.jsonl").write_bytes(b'{"type":"queue-operation","sessionId":"s1","timestamp":"2026-01-01T00:00:00Z"}\n')
    (proj / "s2.jsonl").write_bytes(user("typed prompt", sessionId="s2"))
    (proj / "sessions-index.json").write_text(json.dumps({"version": 1, "originalPath": "/orig", "entries": [
        {"sessionId": "s1", "summary": "From the index"}, {"sessionId": "s2", "summary": "Stale title"}]}))
    index = make_index(root)
    index.scan()
    now = time.time()
    assert index.session("s1", now)["title"] == "From the index"  # type: ignore[index]
    assert index.session("s1", now)["project"] == "/orig"  # type: ignore[index]
    assert index.session("s2", now)["title"] == "typed prompt"  # type: ignore[index]
    assert index.session("s2", now)["project"] == "/work/app"  # type: ignore[index]


def test_status_running_waiting_idle(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "proj").mkdir(parents=True)
    path = root / "proj" / "s1.jsonl"
    path.write_bytes(user("go"))
    index = make_index(root, idle_after_s=300)
    index.scan()
    now = time.time()
    assert index.status("s1", now) == "running"
    with open(path, "ab") as f:
        f.write(assistant("m1", "r1", 1))
    index.update(path)
    assert index.status("s1", now) == "waiting"
    assert index.status("s1", now + 301) == "idle"


def test_parallel_scan_gives_the_same_sessions_as_one_process(projects: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sessionwatch.index.PARALLEL_MIN_BYTES", 0)
    one = make_index(projects, workers=1)
    one.scan()
    many = make_index(projects, workers=2)
    touched = many.scan()
    now = time.time()
    assert set(one.session_ids()) <= touched
    assert {sid: many.session(sid, now) for sid in many.session_ids()} == {
        sid: one.session(sid, now) for sid in one.session_ids()
    }
    assert bytes_read(many) == bytes_read(one)
    rows, _ = many.take_changes()
    assert len(rows) == len(one.files)
    # and it resumes: appending one line reads only that line
    path = projects / SPOTTER / f"{BIG}.jsonl"
    with open(path, "ab") as f:
        f.write(assistant("m-par", "r-par", 5))
    before = bytes_read(many)
    many.scan()
    assert bytes_read(many) - before == len(assistant("m-par", "r-par", 5))
