"""Both stores behind one fixture: ``backend`` runs a test on SQLite and on
PostgreSQL (a real server, tests/pg.py), so the two pass the same suite."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sessionwatch.store.postgres import PgStore
from sessionwatch.store.sqlite import Store

from .pg import Cluster


class Backend:
    """Opens stores on one database (each ``open()`` a separate connection, like
    another process or replica), and spells raw SQL in the store's dialect."""

    def __init__(self, name: str, target: Path | str) -> None:
        self.name = name
        self.target = target
        self.opened: list[Any] = []

    async def open(self) -> Any:
        store: Any
        if isinstance(self.target, str):
            store = await PgStore.open(self.target)
        else:
            store = await Store.open(self.target)
        self.opened.append(store)
        return store

    def sql(self, text: str) -> str:
        """``?`` placeholders as the store's own (``$1``, ``$2``… for PostgreSQL)."""
        if self.name == "sqlite":
            return text
        n = iter(range(1, 1000))
        return re.sub(r"\?", lambda _: f"${next(n)}", text)

    def value(self, v: Any) -> Any:
        """A raw statement's parameter: PostgreSQL's kill flag is a boolean."""
        return v

    async def close(self) -> None:
        for store in self.opened:
            await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "postgres":
        cluster: Cluster = request.getfixturevalue("pg_cluster")
        b = Backend("postgres", cluster.new_database())
    else:
        b = Backend("sqlite", tmp_path / "a.db")
    yield b
    await b.close()
