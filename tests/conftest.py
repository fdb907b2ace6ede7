"""Shared test fixtures: fixture transcripts in tmp_path and a real server.

``sw_server`` starts ``python -m sessionwatch serve`` as a subprocess on a
free port (streams need a real server: httpx's in-process transport buffers
whole responses).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
#: Real Claude Code transcripts (read-only; tests copy them into tmp_path):
#: $SESSIONWATCH_FIXTURES, or ../shared/fixtures/claude-projects beside the repository.
FIXTURES = Path(os.environ.get("SESSIONWATCH_FIXTURES") or REPO.parent / "shared" / "fixtures" / "claude-projects")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def pytest_configure(config: pytest.Config) -> None:
    if not FIXTURES.is_dir():
        raise pytest.UsageError(f"fixture transcripts not found at {FIXTURES} (set SESSIONWATCH_FIXTURES)")


def require_tool(name: str, *elsewhere: str) -> str:
    """The path of a tool the tests drive; a missing one fails the test, never skips it."""
    found = shutil.which(name) or next((p for p in elsewhere if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.fail(f"{name} is not installed: `bash .ci/run` installs Debian's chromium, nginx and nodejs", pytrace=False)
    return found


@pytest.fixture(scope="session")
def chromium_bin() -> str:
    """Debian's Chromium (Playwright drives it; never a downloaded browser)."""
    return require_tool("chromium", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return require_tool("nginx", "/usr/sbin/nginx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def projects(tmp_path: Path) -> Path:
    """A copy of the fixture transcripts, safe to append to and delete from."""
    dest = tmp_path / "projects"
    shutil.copytree(FIXTURES, dest)
    return dest


class Server:
    def __init__(
        self, projects_dir: Path, db: Path, port: int, extra_args: list[str], log: Path, env_passthrough: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.env_passthrough = env_passthrough
        #: the server's whole environment when given (a managed session's CLI inherits it)
        self.env = env
        self.stream_backend: str | None = None
        self.projects_dir = projects_dir
        self.db = db
        self.port = port
        self.extra_args = extra_args
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Server:
        args = [
            sys.executable, "-m", "sessionwatch", "serve",
            "--projects-dir", str(self.projects_dir),
            "--db", str(self.db),
            "--port", str(self.port),
            "--debounce-ms", "50",
            "--keepalive-s", "1",
            *self.extra_args,
        ]
        env = {k: v for k, v in os.environ.items() if self.env_passthrough or not k.startswith("SESSIONWATCH_")}
        if self.env is not None:
            env = {**self.env, "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "PATH": os.path.dirname(sys.executable) + ":" + self.env.get("PATH", "/usr/bin:/bin")}
        if self.stream_backend:
            env["SESSIONWATCH_STREAM_BACKEND"] = self.stream_backend
        self.proc = subprocess.Popen(
            args, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env
        )

        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout, "the server to answer /healthz")
        return self

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("server did not stop within the deadline after SIGINT")
        finally:
            self.proc = None
        return code


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per module over its own copy of the fixtures, for tests that
    only read (they must not append, register, kill or delete anything)."""
    root = tmp_path_factory.mktemp("shared-server")
    shutil.copytree(FIXTURES, root / "projects")
    srv = Server(root / "projects", root / "sessionwatch.db", free_port(), [], root / "server.log").start()
    yield srv
    if srv.proc is not None:
        srv.stop()


@pytest.fixture
def sw_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: ``sw_server(projects_dir=..., extra_args=[...])`` → a started Server."""
    started: list[Server] = []

    def make(
        projects_dir: Path | None = None,
        extra_args: list[str] | None = None,
        db: Path | None = None,
        port: int | None = None,
        env_passthrough: bool = False,
        stream_backend: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Server:
        srv = Server(
            projects_dir or tmp_path / "projects",
            db or tmp_path / "sessionwatch.db",
            port or free_port(),
            extra_args or [],
            tmp_path / f"server-{len(started)}.log",
            env_passthrough,
            env,
        )
        srv.stream_backend = stream_backend
        started.append(srv)
        return srv.start()

    yield make
    for srv in started:
        if srv.proc is not None:
            srv.stop()
