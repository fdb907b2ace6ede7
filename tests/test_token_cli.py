"""``sessionwatch token create|list|revoke`` (cli/token.py) as a user runs it:
the token printed once and alone on stdout, only its hash in the database,
``list`` never showing a token, and one stderr line for every mistake."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sessionwatch.access import hash_token


def sw(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "sessionwatch", "token", *args], capture_output=True, text=True, timeout=60, env={**base, **(env or {})}
    )


def one_line_error(r: subprocess.CompletedProcess[str], code: int) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    return r.stderr


def test_create_prints_the_token_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    db = tmp_path / "sw.db"
    r = sw("create", "alice", "--role", "operator", "--db", str(db))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sw_") and len(lines[0]) >= 40
    token = lines[0]
    assert token not in r.stderr
    raw = db.read_bytes() + (db.with_name("sw.db-wal").read_bytes() if db.with_name("sw.db-wal").exists() else b"")
    assert token.encode() not in raw
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name, role, hash, revoked_at FROM tokens").fetchall()
    assert rows == [("alice", "operator", hash_token(token), None)]
    # a second token is another random one
    other = sw("create", "bob", "--role", "viewer", "--db", str(db)).stdout.strip()
    assert other != token and other.startswith("sw_")


def test_list_shows_names_roles_and_dates_never_tokens(tmp_path: Path) -> None:
    db = tmp_path / "sw.db"
    tokens = [sw("create", n, "--role", role, "--db", str(db)).stdout.strip() for n, role in (("ci", "agent"), ("ann", "viewer"))]
    assert sw("revoke", "ci", "--db", str(db)).returncode == 0
    text = sw("list", "--db", str(db))
    assert text.returncode == 0
    assert text.stdout.splitlines()[0].split() == ["NAME", "ROLE", "CREATED", "LAST", "USED", "REVOKED"]
    assert [line.split()[:2] for line in text.stdout.splitlines()[1:]] == [["ci", "agent"], ["ann", "viewer"]]
    listed = json.loads(sw("list", "--json", "--db", str(db)).stdout)["tokens"]
    assert [(t["name"], t["role"], t["revoked_at"] is not None, t["last_used_at"]) for t in listed] == [
        ("ci", "agent", True, None), ("ann", "viewer", False, None)]  # fmt: skip
    assert set(listed[0]) == {"name", "role", "created_at", "last_used_at", "revoked_at"}
    assert listed[0]["created_at"].endswith("Z")
    for token in tokens:
        assert token not in text.stdout + text.stderr
        assert token not in json.dumps(listed) and hash_token(token) not in json.dumps(listed)


def test_list_of_no_database_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    assert json.loads(sw("list", "--json", "--db", str(db)).stdout) == {"tokens": []}
    assert not db.exists()


def test_db_defaults_to_serves(tmp_path: Path) -> None:
    db = tmp_path / "env.db"
    assert sw("create", "envy", "--role", "viewer", env={"SESSIONWATCH_DB": str(db)}).returncode == 0
    assert "envy" in sw("list", "--db", str(db)).stdout


def test_revoke(tmp_path: Path) -> None:
    db = tmp_path / "sw.db"
    sw("create", "gone", "--role", "viewer", "--db", str(db))
    r = sw("revoke", "gone", "--db", str(db))
    assert r.returncode == 0 and "revoked" in r.stderr and r.stdout == ""
    again = sw("revoke", "gone", "--db", str(db))
    assert again.returncode == 0 and "already revoked" in again.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT revoked_at IS NOT NULL FROM tokens WHERE name = 'gone'").fetchone() == (1,)
    assert "no token named 'nobody'" in one_line_error(sw("revoke", "nobody", "--db", str(db)), 1)


def test_a_duplicate_name_is_refused_with_exit_1(tmp_path: Path) -> None:
    db = tmp_path / "sw.db"
    sw("create", "dup", "--role", "viewer", "--db", str(db))
    assert "exists already" in one_line_error(sw("create", "dup", "--role", "operator", "--db", str(db)), 1)
    sw("revoke", "dup", "--db", str(db))  # a revoked name stays taken: the audit refers to it
    one_line_error(sw("create", "dup", "--role", "viewer", "--db", str(db)), 1)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["create", "x", "--role", "admin"], "invalid choice: 'admin'"),
        (["create", "x", "--role", "boss"], "invalid choice: 'boss'"),
        (["create", "x"], "needs --role"),
        (["create", "--role", "viewer"], "needs the token's NAME"),
        (["create", "has space", "--role", "viewer"], "must be 1 to 64"),
        (["create", "admin", "--role", "viewer"], "reserved"),
        (["create", "local", "--role", "viewer"], "reserved"),
        (["revoke"], "needs the token's NAME"),
        (["list", "extra"], "takes no NAME"),
        (["list", "--role", "viewer"], "--role is for token create"),
        (["create", "y", "--role", "viewer", "--json"], "--json is for token list"),
        (["rotate"], "invalid choice: 'rotate'"),
        ([], "required: action"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    assert says in one_line_error(sw(*args, "--db", str(tmp_path / "sw.db")), 2)


def test_db_that_is_a_directory(tmp_path: Path) -> None:
    assert "is a directory" in one_line_error(sw("list", "--db", str(tmp_path)), 2)
