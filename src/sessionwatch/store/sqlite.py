"""The SQLite store: transcript offsets and aggregates, Panel sessions, and the
table of the event log (``hub/log.py`` reads and writes it).

One connection writes (aiosqlite runs it on its own thread, so calls are
serialised); each write is one ``BEGIN IMMEDIATE`` transaction. WAL mode lets
trackers in direct mode write the same file from other processes, and
``busy_timeout`` makes them wait for each other instead of failing.

Migrations are named and recorded in ``migrations`` in the same transaction
as their change; ``PRAGMA user_version`` holds how many have run.
"""

from __future__ import annotations

import asyncio

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from sessionwatch.errors import ConfigError, StoreClosedError
# Re-exported: the server's modules and tests import them from here.
from sessionwatch.store.schema import PANEL_DDL as PANEL_DDL
from sessionwatch.store.schema import RESERVED_IDS as RESERVED_IDS
from sessionwatch.store.schema import SESSION_ID_RE as SESSION_ID_RE
from sessionwatch.store.schema import session_id_problem as session_id_problem

BUSY_TIMEOUT_MS = 5000


MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_transcripts",
        """
        CREATE TABLE transcripts (
            path TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            session_id TEXT,
            dev INTEGER NOT NULL,
            ino INTEGER NOT NULL,
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            offset INTEGER NOT NULL,
            agg BLOB NOT NULL
        );
        """,
    ),
    ("0002_panel_sessions", PANEL_DDL),
    (
        "0003_panel_kills_index",
        "CREATE INDEX IF NOT EXISTS panel_kills_session ON panel_kills(session_id);",
    ),
    (
        # The event log (eventlog.py): AUTOINCREMENT, so an id is never given
        # twice, by any process on this file, even after a trim.
        "0004_events",
        """
        CREATE TABLE IF NOT EXISTS events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            origin INTEGER NOT NULL,
            type TEXT NOT NULL,
            data BLOB NOT NULL,
            at REAL NOT NULL
        );
        """,
    ),
]


@dataclass
class TranscriptRow:
    path: str
    kind: str
    session_id: str | None
    dev: int
    ino: int
    size: int
    mtime: float
    offset: int
    agg: bytes


@dataclass
class PanelRow:
    id: str
    app_name: str
    user_id: str | None
    host: str | None
    pid: int | None
    url: str | None
    status: str
    current_task: str | None
    started_at: float
    last_activity: float
    last_heartbeat: float
    kill_requested: bool


_PANEL_COLUMNS = (
    "id, app_name, user_id, host, pid, url, status, current_task, "
    "started_at, last_activity, last_heartbeat, kill_requested"
)


def _panel_row(r: Sequence[Any]) -> PanelRow:
    return PanelRow(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], bool(r[11])
    )


class Store:
    """Async access to the sessionwatch database. Open with :meth:`open`."""

    def __init__(self, path: Path, conn: aiosqlite.Connection) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = conn
        #: Held by every write on the shared connection. A transaction awaits
        #: between its statements; without this, another coroutine's write
        #: (an event's append) would run inside it and share its ROLLBACK.
        self.write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open (creating and migrating as needed) the database at ``path``."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(str(path), isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open database {path}: {exc}") from None
        store = cls(path, conn)
        try:
            await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await store._migrate()
        except sqlite3.DatabaseError as exc:
            await store.close()
            raise ConfigError(f"{path} is not a usable sessionwatch database: {exc}") from None
        return store

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreClosedError("the store is closed")
        return self._conn

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _migrate(self) -> None:
        conn = self.conn
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        async with conn.execute("SELECT name FROM migrations") as cur:
            done = {row[0] for row in await cur.fetchall()}
        for number, (name, sql) in enumerate(MIGRATIONS, start=1):
            if name in done:
                continue
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in sql.split(";"):
                    if statement.strip():
                        await conn.execute(statement)
                await conn.execute(
                    "INSERT OR IGNORE INTO migrations (name, applied_at) VALUES (?, ?)",
                    (name, time.time()),
                )
                await conn.execute(f"PRAGMA user_version={number}")
                await conn.execute("COMMIT")
            except BaseException:
                await conn.execute("ROLLBACK")
                raise

    async def migrations(self) -> list[str]:
        async with self.conn.execute("SELECT name FROM migrations ORDER BY name") as cur:
            return [row[0] for row in await cur.fetchall()]

    async def user_version(self) -> int:
        async with self.conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def data_version(self) -> int:
        """Changes when another connection commits (direct-mode trackers)."""
        async with self.conn.execute("PRAGMA data_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # --- transcripts ------------------------------------------------------------

    async def load_transcripts(self) -> list[TranscriptRow]:
        async with self.conn.execute(
            "SELECT path, kind, session_id, dev, ino, size, mtime, offset, agg FROM transcripts"
        ) as cur:
            return [TranscriptRow(*row) for row in await cur.fetchall()]

    async def save_transcripts(
        self, rows: Iterable[TranscriptRow], deleted: Iterable[str] = ()
    ) -> None:
        """Upsert and delete transcript rows in one transaction."""
        rows = list(rows)
        deleted = list(deleted)
        if not rows and not deleted:
            return
        conn = self.conn
        async with self.write_lock:
            await self._save_transcripts(conn, rows, deleted)

    @staticmethod
    async def _save_transcripts(
        conn: aiosqlite.Connection, rows: list[TranscriptRow], deleted: list[str]
    ) -> None:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                await conn.executemany(
                    "INSERT OR REPLACE INTO transcripts "
                    "(path, kind, session_id, dev, ino, size, mtime, offset, agg) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (r.path, r.kind, r.session_id, r.dev, r.ino, r.size, r.mtime, r.offset, r.agg)
                        for r in rows
                    ],
                )
            if deleted:
                await conn.executemany(
                    "DELETE FROM transcripts WHERE path = ?", [(p,) for p in deleted]
                )
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise

    # --- panel sessions -----------------------------------------------------------

    async def load_panel(self) -> list[PanelRow]:
        async with self.conn.execute(f"SELECT {_PANEL_COLUMNS} FROM panel_sessions") as cur:
            return [_panel_row(r) for r in await cur.fetchall()]

    # Every write names the columns it changes: trackers in direct mode and other
    # servers write the same rows, and a whole-row rewrite would undo their
    # changes (a status update putting back kill_requested = 0 over a kill).

    async def register_panel(self, row: PanelRow) -> None:
        """Insert a session, or refresh what registration says of an existing one
        (app, user, host, pid, url, heartbeat); its status, task, start and
        kill flag are left as they are."""
        await self._execute(
            "INSERT INTO panel_sessions (id, app_name, user_id, host, pid, url, status,"
            " current_task, started_at, last_activity, last_heartbeat, kill_requested)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET app_name = excluded.app_name,"
            " user_id = excluded.user_id, host = excluded.host, pid = excluded.pid,"
            " url = excluded.url, last_heartbeat = excluded.last_heartbeat",
            (
                row.id, row.app_name, row.user_id, row.host, row.pid, row.url,
                row.status, row.current_task, row.started_at, row.last_activity,
                row.last_heartbeat, int(row.kill_requested),
            ),
        )  # fmt: skip

    async def set_panel_status(
        self, session_id: str, status: str, current_task: str | None, now: float
    ) -> bool:
        """Record a status change; False if the row is gone."""
        changed = await self._execute(
            "UPDATE panel_sessions SET status = ?, current_task = ?, last_activity = ?,"
            " last_heartbeat = ? WHERE id = ?",
            (status, current_task, now, now, session_id),
        )
        return changed > 0

    async def delete_panel(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        if ids:
            await self._write(
                [("DELETE FROM panel_sessions WHERE id = ?", (i,)) for i in ids]
                + [("DELETE FROM panel_kills WHERE session_id = ?", (i,)) for i in ids]
            )

    async def touch_heartbeats(self, beats: dict[str, float]) -> None:
        """Record many heartbeats in one transaction."""
        if beats:
            await self._write(
                [
                    ("UPDATE panel_sessions SET last_heartbeat = ? WHERE id = ?", (t, i))
                    for i, t in beats.items()
                ]
            )

    async def record_kill(self, session_id: str, when: float, by: str | None) -> None:
        await self._write(
            [
                ("UPDATE panel_sessions SET kill_requested = 1 WHERE id = ?", (session_id,)),
                (
                    "INSERT INTO panel_kills (session_id, requested_at, requested_by) "
                    "VALUES (?, ?, ?)",
                    (session_id, when, by),
                ),
            ]
        )

    async def kills(self, session_id: str) -> list[dict[str, Any]]:
        async with self.conn.execute(
            "SELECT requested_at, requested_by FROM panel_kills WHERE session_id = ? ORDER BY id",
            (session_id,),
        ) as cur:
            return [{"requested_at": r[0], "requested_by": r[1]} for r in await cur.fetchall()]

    async def _execute(self, sql: str, params: tuple[Any, ...]) -> int:
        """One write statement on its own, atomic as SQLite's autocommit makes it;
        returns the rows changed. One trip to the connection's thread instead
        of three (BEGIN, the statement, COMMIT), which is what bounds tracker
        writes per second. Outside an explicit transaction SQLite retries a
        busy database (``busy_timeout``) even when another process committed
        in between, so this is as safe as ``BEGIN IMMEDIATE`` here."""
        async with self.write_lock, self.conn.execute(sql, params) as cur:
            return cur.rowcount

    async def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        conn = self.conn
        async with self.write_lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    await conn.execute(sql, params)
                await conn.execute("COMMIT")
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
