"""A real PostgreSQL server for the tests: Debian's ``postgresql`` package,
``initdb`` and ``pg_ctl`` in a temporary directory, on a free port, started
once per test session (``pg_cluster``), a fresh database per test (``pg_url``).

initdb and the postgres server refuse to run as root: as root they run as
the ``postgres`` user (the package creates it) through ``runuser``, in a
directory that user owns. Chosen over pytest-postgresql: it needs the same
root workaround and adds a plugin for what is two commands here.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Where Debian puts the server's programs when they are not on PATH.
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def pg_tool(name: str) -> str:
    found = shutil.which(name) or next(
        (p for d in sorted(glob.glob(PG_BIN_GLOB), reverse=True) if os.access(p := f"{d}/{name}", os.X_OK)), None
    )
    if found is None:
        pytest.fail(f"{name} is not installed: `bash .ci/run` installs Debian's postgresql", pytrace=False)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One PostgreSQL server in a temporary directory."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sessionwatch-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            # initdb: "cannot be run as root"; the package's postgres user can.
            shutil.chown(self.root, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count(1)

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> Cluster:
        self._run(pg_tool("initdb"), "-D", str(self.data), "-A", "trust", "-U", "sessionwatch", "--no-sync", "-E", "UTF8")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(pg_tool("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(pg_tool("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://sessionwatch@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self._run(pg_tool("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "sessionwatch", "-d", "postgres",
                  "-q", "-c", f"CREATE DATABASE {name}")  # fmt: skip
        return self.url(name)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = Cluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """A fresh database on the session's PostgreSQL server."""
    return pg_cluster.new_database()
