"""The harness of the managed-session tests: a real ``serve`` whose environment
is the CLI's clean one (tests/claude_cli.py), so the Claude Code processes it
starts talk only to the scripted fake API (tests/fakeapi.py), and its
``--projects-dir`` is that HOME's: the transcript, the process and the hooks
are one row.

A test module uses the ``managed`` fixture by importing it
(``from tests.managed_kit import managed  # noqa: F401``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.claude_cli import ClaudeHome, claude_bin, clean_env
from tests.conftest import Server, wait_for
from tests.fakeapi import FakeAPI, Turn

#: A model with a known price ($3 / $15 per million input / output tokens).
MODEL = "claude-sonnet-4-5-20250929"


class Managed:
    """A server that runs managed sessions, the fake API, and the HOME both use."""

    def __init__(self, srv: Server, api: FakeAPI, where: ClaudeHome, restart: Callable[..., Server]) -> None:
        self.srv, self.api, self.where = srv, api, where
        self._restart = restart
        self.http = httpx.Client(base_url=srv.url, timeout=30)

    def restart(self, flags: list[str] | None = None) -> Managed:
        """A new server on the same --db, HOME and fake API (the old one must have ended)."""
        self.srv = self._restart(flags)
        self.http = httpx.Client(base_url=self.srv.url, timeout=30)
        return self

    def start(self, prompt: str = "hello", **body: Any) -> httpx.Response:
        return self.http.post("/managed", json={"prompt": prompt, "cwd": str(self.where.cwd), "model": MODEL, **body})

    def started(self, prompt: str = "hello", **body: Any) -> str:
        r = self.start(prompt, **body)
        assert r.status_code == 201, r.text
        return str(r.json()["session_id"])

    def session(self, sid: str) -> dict[str, Any] | None:
        for s in self.http.get("/all").json()["sessions"]:
            if s["id"] == sid:
                return dict(s)
        return None

    def detail(self, sid: str) -> dict[str, Any]:
        r = self.http.get(f"/sessions/{sid}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait_session(self, sid: str, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30) -> dict[str, Any]:
        return wait_row(lambda: self.session(sid), predicate, what, timeout, lambda: f"logs: {self.logs(sid)[-8:]}")

    def wait_status(self, sid: str, status: str, timeout: float = 30) -> dict[str, Any]:
        return self.wait_session(sid, lambda s: s["status"] == status, f"status {status}", timeout)

    def logs(self, sid: str, **params: Any) -> list[dict[str, Any]]:
        r = self.http.get(f"/sessions/{sid}/logs", params={"limit": 1000, **params})
        return list(r.json().get("logs", [])) if r.status_code == 200 else []


def wait_row(
    find: Callable[[], dict[str, Any] | None], predicate: Callable[[dict[str, Any]], bool], what: str,
    timeout: float = 30, more: Callable[[], str] = lambda: "",
) -> dict[str, Any]:
    """The row ``find()`` gives once ``predicate`` holds for it (a deadline; the
    last row seen, and ``more()``, in the error)."""
    found: list[dict[str, Any]] = []

    def check() -> bool:
        s = find()
        if s is not None and predicate(s):
            found.append(s)
            return True
        return False

    try:
        wait_for(check, timeout, what)
    except AssertionError:
        raise AssertionError(f"{what}; last seen: {find()}; {more()}") from None
    return found[-1]


@pytest.fixture
def managed(tmp_path: Path, sw_server: Callable[..., Server]) -> Iterator[Callable[..., Managed]]:
    """Factory: ``managed(turns, flags=[...], env={...})`` → a :class:`Managed` with a started server."""
    apis: list[FakeAPI] = []
    made: list[Managed] = []

    def make(turns: list[Turn], flags: list[str] | None = None, env: dict[str, str] | None = None, name: str = "") -> Managed:
        root = tmp_path / name if name else tmp_path
        where = ClaudeHome.create(root)
        api = FakeAPI(turns).start()
        apis.append(api)
        full_env = clean_env(where.home, api.url, env)
        db = root / "managed.db"

        def serve(more: list[str] | None = None) -> Server:
            return sw_server(
                projects_dir=where.projects_dir,
                db=db,
                extra_args=["--claude-bin", str(claude_bin()), "--idle-after-s", "600", *(more if more is not None else flags or [])],
                env=full_env,
            )

        m = Managed(serve(), api, where, serve)
        made.append(m)
        return m

    yield make
    for m in made:
        m.http.close()
    for api in apis:
        api.stop()


def claude_pids(home: Path | None = None) -> set[int]:
    """Every running process whose executable is the bundled CLI (with ``home``:
    only those whose environment has ``HOME=home``, so other tests' do not count)."""
    target = os.path.realpath(claude_bin())
    pids = set()
    want = f"HOME={home}".encode() if home is not None else None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.path.realpath(entry / "exe") != target:
                    continue
                if want is not None and want not in (entry / "environ").read_bytes().split(b"\0"):
                    continue
                pids.add(int(entry.name))
            except OSError:
                continue
    return pids


def alive(pid: int) -> bool:
    """``pid`` runs and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
