"""Incremental reading and bad files: the index never re-reads what it has."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from sessionwatch.metrics import Tally
from sessionwatch.sources.claude.files import AGG_FORMAT, TAIL_HASH_BYTES
from sessionwatch.sources.claude.index import ClaudeIndex
from sessionwatch.prices import PriceTable
from sessionwatch.store.sqlite import Store, TranscriptRow

from .test_claude import assistant, line, user

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
    # the new line, and the last 4 KiB before it to tell an append from a rewrite
    assert bytes_read(index) - read_before == len(new) + TAIL_HASH_BYTES
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
    monkeypatch.setattr("sessionwatch.sources.claude.index.MAX_LINE_BYTES", 1000)
    monkeypatch.setattr("sessionwatch.sources.claude.index.CHUNK", 512)
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
    now = datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc).timestamp()  # a minute after the entries
    assert index.status("s1", now) == "running"
    with open(path, "ab") as f:
        f.write(assistant("m1", "r1", 1))
    index.update(path)
    assert index.status("s1", now) == "waiting"
    assert index.status("s1", now + 301) == "idle"


def test_parallel_scan_gives_the_same_sessions_as_one_process(projects: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sessionwatch.sources.claude.index.PARALLEL_MIN_BYTES", 0)
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
    assert bytes_read(many) - before == len(assistant("m-par", "r-par", 5)) + TAIL_HASH_BYTES


# --- issue 8 ----------------------------------------------------------------------------


def bad_utf8_lines() -> bytes:
    """A prompt and a reply each holding a raw 0xE9 byte, as in the attack run."""
    prompt = user("caf\u00e9", sessionId=BIG).replace("caf\\u00e9".encode(), b"caf\xe9")
    reply = assistant("m-bad", "r-bad", 7, block={"type": "text", "text": "caf\u00e9 ok"}, sessionId=BIG)
    reply = reply.replace("caf\\u00e9".encode(), b"caf\xe9")
    assert prompt.count(b"\xe9") == reply.count(b"\xe9") == 1
    return prompt + reply


def test_invalid_utf8_byte_does_not_break_update_scan_or_recent(projects: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = make_index(projects)
    index.scan()
    before = index.session(BIG, time.time())
    assert before is not None
    path = projects / SPOTTER / f"{BIG}.jsonl"
    with open(path, "ab") as f:
        f.write(bad_utf8_lines())
    assert index.update(path) == {BIG}
    after = index.session(BIG, time.time())
    assert after is not None
    assert after["message_count"] == before["message_count"] + 2
    assert after["tokens"]["output"] == before["tokens"]["output"] + 7
    assert [(i["kind"], i["summary"]) for i in index.recent(BIG)[-2:]] == [("prompt", "caf\ufffd"), ("reply", "caf\ufffd ok")]
    # the parallel first read too
    monkeypatch.setattr("sessionwatch.sources.claude.index.PARALLEL_MIN_BYTES", 0)
    many = make_index(projects, workers=2)
    many.scan()
    assert many.session(BIG, time.time())["tokens"] == after["tokens"]  # type: ignore[index]


def test_random_bytes_appended_to_transcripts_never_raise(projects: Path) -> None:
    rng = random.Random(8)
    index = make_index(projects)
    index.scan()
    path = projects / "-tmp" / "representative_messages.jsonl"
    sid = "representative_messages"
    for _ in range(60):
        with open(path, "ab") as f:
            f.write(rng.randbytes(rng.randint(1, 200)) + rng.choice([b"\n", b""]))
        index.update(path)
        index.recent(sid)
        index.session(sid, time.time())
    (projects / "-tmp" / "sessions-index.json").write_bytes(b"[" * 100_000)
    (projects / SPOTTER / "sessions-index.json").write_bytes(b'{"entries": 5}')
    index.scan()
    assert sid in index.session_ids()


def test_scan_json_survives_an_invalid_utf8_byte(projects: Path) -> None:
    with open(projects / SPOTTER / f"{BIG}.jsonl", "ab") as f:
        f.write(bad_utf8_lines())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    r = subprocess.run(
        [sys.executable, "-m", "sessionwatch", "scan", "--json", "--projects-dir", str(projects)],
        capture_output=True, timeout=120, env=env,
    )
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in r.stderr
    assert BIG in {s["id"] for s in json.loads(r.stdout)["sessions"]}


def rewrite_in_place(path: Path, data: bytes) -> None:
    """Truncate and rewrite a file through the same inode, as an editor saving in place does."""
    ino = path.stat().st_ino
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(data)
    assert path.stat().st_ino == ino


def test_a_transcript_rewritten_in_place_is_read_again(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "proj").mkdir(parents=True)
    path = root / "proj" / "s1.jsonl"
    path.write_bytes(user("a") + assistant("m1", "r1", 100) + assistant("m2", "r2", 220))
    index = make_index(root)
    index.scan()
    assert index.session("s1", time.time())["tokens"]["output"] == 320  # type: ignore[index]
    rows, _ = index.take_changes()
    # rewritten, at least as long as what was read: not an append
    rewrite_in_place(path, user("b") + assistant("m3", "r3", 250) + assistant("m4", "r4", 250) + user("c"))
    index.update(path)
    assert index.session("s1", time.time())["tokens"]["output"] == 500  # type: ignore[index]
    # and the figure stored before the rewrite does not survive a restart either
    resumed = make_index(root)
    resumed.load(rows)
    resumed.scan()
    assert resumed.session("s1", time.time())["tokens"]["output"] == 500  # type: ignore[index]
    # the corrected state is what gets stored, not deleted behind it
    rows, removed = index.take_changes()
    assert [r.path for r in rows] == [str(path)] and removed == []
    # an ordinary append after it still reads only the new bytes
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(assistant("m5", "r5", 5))
    read = bytes_read(index)
    index.update(path)
    assert bytes_read(index) - read == len(assistant("m5", "r5", 5)) + min(size, TAIL_HASH_BYTES)
    assert index.session("s1", time.time())["tokens"]["output"] == 505  # type: ignore[index]


def test_rows_stored_before_rewrites_were_noticed_are_read_again(tmp_path: Path) -> None:
    """A row without a tail hash may hold an append-counted rewrite: its figure must not survive."""
    root = tmp_path / "p"
    (root / "proj").mkdir(parents=True)
    path = root / "proj" / "s1.jsonl"
    path.write_bytes(user("a") + assistant("m1", "r1", 100))
    index = make_index(root)
    index.scan()
    (row,) = index.take_changes()[0]
    # what versions before issue 8's rewrite check stored: the bare totals, no
    # tail hash, and an "S" in front while skipping an over-long line
    agg = json.loads(row.agg)["agg"]
    agg["buckets"] = {"claude-sonnet-4-5|0|0": [10, 999, 0, 0, 0]}  # the wrong figure
    for blob in (json.dumps(agg).encode(), b"S" + json.dumps(agg).encode()):
        legacy = TranscriptRow(row.path, row.kind, row.session_id, row.dev, row.ino, row.size, row.mtime, row.offset, blob)
        resumed = make_index(root)
        resumed.load([legacy])
        resumed.scan()
        assert resumed.session("s1", time.time())["tokens"]["output"] == 100  # type: ignore[index]
    garbage = TranscriptRow(row.path, row.kind, row.session_id, row.dev, row.ino, row.size, row.mtime, row.offset, b"not json")
    again = make_index(root)
    again.load([garbage])
    again.scan()
    assert again.session("s1", time.time())["tokens"]["output"] == 100  # type: ignore[index]


def test_same_transcript_in_two_project_folders_counts_once(projects: Path) -> None:
    single = make_index(projects)
    single.scan()
    expected = single.session(BIG, time.time())
    assert expected is not None
    # a copy of the whole project folder under another name (a moved or backed-up project)
    shutil.copytree(projects / SPOTTER, projects / "-home-USER-backup-spotter-gqc")
    # and a stray copy of the main transcript alone
    shutil.copy(projects / SPOTTER / f"{BIG}.jsonl", projects / "-tmp" / f"{BIG}.jsonl")
    for workers in (1, 2):
        index = make_index(projects, workers=workers)
        index.scan()
        s = index.session(BIG, time.time())
        assert s is not None
        assert s["tokens"] == expected["tokens"]
        assert s["cost_usd"] == expected["cost_usd"]
        assert s["tool_calls"] == expected["tool_calls"]
        assert s["message_count"] == expected["message_count"]
    # the original grows: it is the more complete copy and its new response counts
    with open(projects / SPOTTER / f"{BIG}.jsonl", "ab") as f:
        f.write(assistant("m-more", "r-more", 11, sessionId=BIG))
    index.scan()
    assert index.session(BIG, time.time())["tokens"]["output"] == expected["tokens"]["output"] + 11  # type: ignore[index]


def test_status_comes_from_the_last_entry_not_the_file_mtime(projects: Path) -> None:
    """Transcripts copied or restored today whose entries are months old are idle."""
    now = time.time()
    for path in projects.rglob("*.jsonl"):
        os.utime(path, (now, now))
    index = make_index(projects, idle_after_s=300)
    index.scan()
    statuses = {sid: index.status(sid, now) for sid in index.session_ids()}
    assert statuses and set(statuses.values()) == {"idle"}, statuses
    for sid in index.session_ids():
        assert index.session(sid, now)["status"] == "idle"  # type: ignore[index]
    # a fresh entry wakes it, whatever the mtime says
    path = projects / "-tmp" / "session_b.jsonl"
    stamp = datetime.fromtimestamp(now - 5, timezone.utc).isoformat().replace("+00:00", "Z")
    with open(path, "ab") as f:
        f.write(b"\n" + line(type="user", message={"role": "user", "content": "again"}, sessionId="session_b", timestamp=stamp))
    old = now - 10 * 86400
    os.utime(path, (old, old))
    index.update(path)
    assert index.status("session_b", now) == "running"


def test_a_secret_in_a_sessions_index_title_is_masked(tmp_path: Path) -> None:
    proj = tmp_path / "p" / "proj"
    proj.mkdir(parents=True)
    (proj / "s1.jsonl").write_bytes(b'{"type":"queue-operation","sessionId":"s1","timestamp":"2026-01-01T00:00:00Z"}\n')
    (proj / "sessions-index.json").write_text(json.dumps({"entries": [{"sessionId": "s1", "firstPrompt": "deploy with AKIAIOSFODNN7EXAMPLE"}]}))
    index = make_index(tmp_path / "p")
    index.scan()
    assert index.session("s1", time.time())["title"] == "deploy with ••••"  # type: ignore[index]


# --- issue 9: the stored record, forced reads, readers' counts, the read buffer ------


async def test_a_database_written_before_the_record_format_still_works(tmp_path: Path) -> None:
    """Rows stored by the version before (the totals with the reading state
    among them, no format) load: each file is read again from 0, and what is
    stored then resumes without reading again."""
    root = tmp_path / "p"
    (root / "proj").mkdir(parents=True)
    path = root / "proj" / "s1.jsonl"
    path.write_bytes(user("a") + assistant("m1", "r1", 100) + assistant("m2", "r2", 7))
    index = make_index(root)
    index.scan()
    (row,) = index.take_changes()[0]
    record = json.loads(row.agg)
    assert record["format"] == AGG_FORMAT
    previous = {**record["agg"], "tail_hash": record["tail_hash"], "skipping": record["skipping"]}
    previous["buckets"] = {"claude-sonnet-4-5|0|0": [10, 999, 0, 0, 0]}  # a figure only a re-read replaces
    db = tmp_path / "sessionwatch.db"
    store = await Store.open(db)
    await store.save_transcripts([TranscriptRow(
        row.path, row.kind, row.session_id, row.dev, row.ino, row.size, row.mtime, row.offset,
        json.dumps(previous).encode(),
    )])
    await store.close()

    store = await Store.open(db)
    resumed = make_index(root)
    resumed.load(await store.load_transcripts())
    resumed.scan()
    assert resumed.session("s1", time.time())["tokens"]["output"] == 107  # type: ignore[index]
    assert bytes_read(resumed) == path.stat().st_size  # read again, from 0
    rows, removed = resumed.take_changes()
    await store.save_transcripts(rows, removed)
    await store.close()

    store = await Store.open(db)
    again = make_index(root)
    again.load(await store.load_transcripts())
    await store.close()
    again.scan()
    assert bytes_read(again) == 0  # the record stored now is trusted: nothing read
    assert again.session("s1", time.time())["tokens"]["output"] == 107  # type: ignore[index]


def test_settling_a_file_that_cannot_be_read_leaves_its_state_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The re-read of a settled partial line is asked for, not forced by
    writing a false mtime into the file's state (which a failed read left there)."""
    root = tmp_path / "p"
    (root / "proj").mkdir(parents=True)
    path = root / "proj" / "s1.jsonl"
    path.write_bytes(user("hello") + assistant("m1", "r1", 5).rstrip(b"\n"))
    index = make_index(root)
    index.scan()
    assert str(path) in index.partial
    state = index.files[str(path)]
    before = (state.size, state.mtime, state.offset)
    old = time.time() - 60
    os.utime(path, (old, old))
    real_open = open

    def fake_open(file: Any, *args: Any, **kw: Any) -> Any:
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kw)

    monkeypatch.setattr("builtins.open", fake_open)
    index.settle(time.time())
    assert (state.size, state.mtime, state.offset) == before
    monkeypatch.setattr("builtins.open", real_open)
    index.settle(time.time())  # readable again: the partial line counts now
    assert index.session("s1", time.time())["tokens"]["output"] == 5  # type: ignore[index]
    assert str(path) not in index.partial


def test_parallel_readers_send_back_what_they_counted(projects: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sessionwatch.sources.claude.index.PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr("sessionwatch.sources.claude.index.FORK_MIN_BYTES", 0)
    (projects / "-tmp" / "garbage.jsonl").write_bytes(b"not json\n" + user("after garbage"))
    (projects / "-tmp" / "dir.jsonl").mkdir()
    one = make_index(projects, workers=1, metrics=Tally())
    one.scan()
    many = make_index(projects, workers=2, metrics=Tally())
    many.scan()
    counts = one.metrics.counts()  # type: ignore[attr-defined]
    assert counts.lines > 0 and counts.bad_lines >= 1 and counts.bad_files == {"not-a-file": 1}
    assert many.metrics.counts() == counts  # type: ignore[attr-defined]


@pytest.mark.parametrize("runs", [1, 2, 1024])
def test_forked_readers_take_each_file_once_from_one_queue(
    projects: Path, monkeypatch: pytest.MonkeyPatch, runs: int
) -> None:
    """However the files are cut into runs of the queue, each is read once,
    by one reader, and the readers together give what one process gives."""
    monkeypatch.setattr("sessionwatch.sources.claude.index.FORK_MIN_BYTES", 0)
    monkeypatch.setattr("sessionwatch.sources.claude.index.FORK_BYTES_PER_READER", 1)  # FORKED_READERS of them
    monkeypatch.setattr("sessionwatch.sources.claude.parallel.MAX_RUNS", runs)
    one = make_index(projects, workers=1, metrics=Tally())
    one.scan()
    many = make_index(projects, workers=2, metrics=Tally())
    many.scan()
    now = time.time()
    assert {sid: many.session(sid, now) for sid in many.session_ids()} == {
        sid: one.session(sid, now) for sid in one.session_ids()
    }
    assert many.metrics.counts() == one.metrics.counts()  # type: ignore[attr-defined]
    rows, _ = many.take_changes()
    assert sorted(r.path for r in rows) == sorted(one.files)
    before = many.metrics.counts().bytes_read  # type: ignore[attr-defined]
    assert many.scan() == set()  # nothing left to read: no reader starts
    assert many.metrics.counts().bytes_read == before  # type: ignore[attr-defined]


def test_forked_readers_follow_the_bytes_to_read(tmp_path: Path) -> None:
    """One reader per core, and more (up to FORKED_READERS) only as the bytes allow."""
    from sessionwatch.sources.claude import index as ix

    index = make_index(tmp_path, workers=2)
    mib = 1024 * 1024

    def readers(total: int, files: int = 100) -> int:
        return index._forked_readers({f"f{i}": total // files for i in range(files)})

    per = ix.FORK_BYTES_PER_READER
    assert readers(20 * mib) == 2
    assert readers(3 * per + 100) == 3
    assert readers(1000 * mib) == ix.FORKED_READERS
    assert readers(1000 * mib, files=3) == 3  # never more readers than files
    assert make_index(tmp_path, workers=4)._forked_readers({"a": mib, "b": mib, "c": mib, "d": mib, "e": mib}) == 4


def test_a_scan_reads_each_file_as_if_alone(tmp_path: Path) -> None:
    """One read buffer serves every file of a scan: bytes left in it by a
    longer file before are never read as part of a shorter one."""
    root = tmp_path / "p"
    (root / "proj").mkdir(parents=True)

    def compact(**fields: Any) -> bytes:
        base = {"sessionId": "s1", "timestamp": "2026-01-01T00:00:00Z", "cwd": "/work/app"}
        return json.dumps({**base, **fields}, separators=(",", ":")).encode() + b"\n"

    progress = compact(type="progress", timestamp="2026-01-09T00:00:00Z", data={"type": "x"})
    files = {
        "a-long.jsonl": compact(type="user", message={"role": "user", "content": "go"})
        + progress * 50
        + assistant("m1", "r1", 40),
        "b-short.jsonl": compact(type="user", sessionId="s2", timestamp="2026-01-02T00:00:00Z", message={"role": "user", "content": "hi"})
        + compact(type="user", sessionId="s2", timestamp="2026-01-03T00:00:00Z", message={"role": "user", "content": "there"}),
        "c-partial.jsonl": compact(type="user", sessionId="s3", message={"role": "user", "content": "x"}) + b'{"type":"user"',
    }
    for name, data in files.items():
        (root / "proj" / name).write_bytes(data)
    together = make_index(root, workers=1)
    longest_first = sorted((root / "proj").iterdir())
    together.discover = lambda: longest_first  # type: ignore[method-assign]
    together.scan()
    for name in files:
        key = str(root / "proj" / name)
        alone = make_index(root, workers=1)
        alone.update(Path(key))
        assert together.files[key] == alone.files[key]
        assert (key in together.partial) == (key in alone.partial)
    assert together.files[str(root / "proj" / "b-short.jsonl")].agg.last_raw == "2026-01-03T00:00:00Z"

