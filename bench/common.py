"""Shared pieces: the server subprocess, resident memory, corpora, statistics."""

from __future__ import annotations

import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
#: The real transcripts the corpora are made from: $SESSIONWATCH_FIXTURES, or
#: ../shared/fixtures/claude-projects beside the repository.
FIXTURES = Path(os.environ.get("SESSIONWATCH_FIXTURES") or REPO.parent / "shared" / "fixtures" / "claude-projects")
SKIP_DIRS = {"-tmp"}  # hand-made edge-case files, not shaped like real sessions


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return v[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Server:
    """``python -m sessionwatch serve`` as a subprocess on 127.0.0.1."""

    def __init__(self, projects: Path, db: Path, *, debounce_ms: int = 500, keepalive_s: int = 30,
                 log: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "sessionwatch", "serve", "--host", "127.0.0.1",
                    "--projects-dir", str(projects), "--db", str(db), "--port", str(self.port),
                    "--debounce-ms", str(debounce_ms), "--keepalive-s", str(keepalive_s),
                    "--log-level", "warning"]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self, wait: bool = True, timeout: float = 120.0) -> "Server":
        raise_nofile()
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        env = dict(os.environ)
        env.pop("SESSIONWATCH_TOKEN", None)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=out, env=env)
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.cmd}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become healthy")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> int:
        return rss_kib(self.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- corpora ---------------------------------------------------------------------------


def fixture_sessions() -> list[tuple[Path, str, list[Path]]]:
    """(project dir, session id, [main file, subagent files...]) of the real fixtures."""
    out = []
    for project in sorted(FIXTURES.iterdir()):
        if not project.is_dir() or project.name in SKIP_DIRS:
            continue
        for f in sorted(project.glob("*.jsonl")):
            if f.name.startswith("agent-"):
                continue
            sid = f.stem
            files = [f] + sorted((project / sid / "subagents").glob("*.jsonl"))
            out.append((project, sid, files))
    return out


def fixture_lines() -> list[bytes]:
    """Every line of the real fixtures (for line-size-faithful synthetic files)."""
    lines: list[bytes] = []
    for _, _, files in fixture_sessions():
        for f in files:
            lines.extend(ln + b"\n" for ln in f.read_bytes().splitlines() if ln.strip())
    return lines


def assistant_lines() -> list[bytes]:
    return [ln for ln in fixture_lines() if b'"type":"assistant"' in ln and b'"usage"' in ln]


def relabel(data: bytes, old_sid: str, new_sid: str, tag: str) -> bytes:
    """A copy with a fresh session id and fresh message/request ids."""
    data = data.replace(old_sid.encode(), new_sid.encode())
    t = tag.encode()
    data = data.replace(b'"id":"msg_', b'"id":"msg_' + t)
    data = data.replace(b'"requestId":"req_', b'"requestId":"req_' + t)
    return data


def make_corpus(root: Path, target_bytes: int, *, max_sessions: int | None = None,
                lines_per_file: int | None = None, projects: int = 20) -> tuple[int, int, int]:
    """Replicate fixture sessions (with subagents) under ``root/projects`` until
    ``target_bytes``; returns (sessions, files, bytes)."""
    if root.exists():
        shutil.rmtree(root)
    base = root / "projects"
    base.mkdir(parents=True)
    sessions = fixture_sessions()
    sources = [(p, sid, [(f, f.read_bytes()) for f in files]) for p, sid, files in sessions]
    if lines_per_file:
        sources = [(p, sid, [(f, b"".join(d.splitlines(keepends=True)[:lines_per_file]))
                             for f, d in files]) for p, sid, files in sources]
    total = nfiles = nsess = 0
    copy = 0
    while total < target_bytes and (max_sessions is None or nsess < max_sessions):
        for project, sid, files in sources:
            if total >= target_bytes or (max_sessions is not None and nsess >= max_sessions):
                break
            new_sid = str(uuid.UUID(int=random.getrandbits(128), version=4))
            tag = f"b{copy}x{nsess}"
            pdir = base / f"{project.name}-{nsess % projects}"
            pdir.mkdir(exist_ok=True)
            for f, data in files:
                if f.parent.name == "subagents":
                    dest = pdir / new_sid / "subagents" / f.name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                else:
                    dest = pdir / f"{new_sid}.jsonl"
                out = relabel(data, sid, new_sid, tag)
                dest.write_bytes(out)
                total += len(out)
                nfiles += 1
            nsess += 1
        copy += 1
    return nsess, nfiles, total
