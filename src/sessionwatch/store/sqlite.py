"""The SQLite store: all three store interfaces (``store/base.py``) on one file.

- node-local: transcript offsets and aggregates (``transcripts``);
- shared: Panel sessions and kills (``panel_sessions``, ``panel_kills``);
  writes name their columns and come back as statements (:class:`Write`);
- the event log (:class:`SqliteEventLog`, table ``events``).

One connection writes (aiosqlite runs it on its own thread, so calls are
serialised); each write is one ``BEGIN IMMEDIATE`` transaction, and a change
with its events is one trip to that thread (:meth:`Store._run`): the Panel
write, the events' ``INSERT … RETURNING id`` and the ``COMMIT`` together.
WAL mode lets trackers in direct mode write the same file from other
processes, and ``busy_timeout`` makes them wait for each other instead of
failing.

The named migrations are in ``store/schema.py``.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from sessionwatch.errors import ConfigError, StoreClosedError
from sessionwatch.store.base import (
    KEEP_EVENTS,
    KEEP_S,
    LOG_LEVELS,
    MANAGED_COLUMNS,
    START,
    STORE_BYTES,
    Actor,
    Approval,
    LogQuery,
    LoggedEvent,
    NewEvent,
    PanelRow,
    RowGone,
    TokenExists,
    TokenRow,
    TranscriptRow,
    Write,
)
# Re-exported: the server's modules and tests import them from here.
from sessionwatch.store.schema import MIGRATIONS as MIGRATIONS
from sessionwatch.store.schema import PANEL_DDL as PANEL_DDL
from sessionwatch.store.schema import RESERVED_IDS as RESERVED_IDS
from sessionwatch.store.schema import SESSION_ID_RE as SESSION_ID_RE
from sessionwatch.store.schema import session_id_problem as session_id_problem

__all__ = ["MIGRATIONS", "PanelRow", "SqliteEventLog", "Store", "TranscriptRow", "session_id_problem"]

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000

_PANEL_COLUMNS = (
    "id, app_name, user_id, host, pid, url, status, current_task, "
    "started_at, last_activity, last_heartbeat, kill_requested"
)


def _panel_row(r: Sequence[Any]) -> PanelRow:
    return PanelRow(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], bool(r[11])
    )


class Store:
    """Async access to the sessionwatch database (:class:`~sessionwatch.store.base.Database`).
    Open with :meth:`open`."""

    def __init__(self, path: Path, conn: aiosqlite.Connection) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = conn
        #: Held by every write on the shared connection. A transaction of
        #: several trips awaits between its statements; without this, another
        #: coroutine's write would run inside it and share its ROLLBACK.
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

    def event_log(self, origin: int | None = None) -> SqliteEventLog:
        return SqliteEventLog(self, origin)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the connection's thread: one trip, whatever
        ``fn`` runs. aiosqlite has no public call for this; ``_execute`` is
        the one each of its own methods goes through (since 0.1; a test
        holds it)."""
        conn = self.conn
        result: T = await conn._execute(lambda: fn(conn._conn))  # type: ignore[no-untyped-call]
        return result

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

    # --- transcripts (node-local) -------------------------------------------------------

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

    # --- panel sessions (shared) ------------------------------------------------------------
    #
    # Every write names the columns it changes: trackers in direct mode and
    # other servers write the same rows, and a whole-row rewrite would undo
    # their changes (a status update putting back kill_requested = 0 over a
    # kill, a re-registration putting back a status from a stale copy). The
    # writes come back as statements: the hub runs them with their events in
    # one transaction (SqliteEventLog.append), or write() alone.

    async def load_panel(self) -> list[PanelRow]:
        async with self.conn.execute(f"SELECT {_PANEL_COLUMNS} FROM panel_sessions") as cur:
            return [_panel_row(r) for r in await cur.fetchall()]

    def panel_register(self, row: PanelRow) -> list[Write]:
        """Insert a session, or refresh what registration says of an existing one
        (app, user, host, pid, url, heartbeat); its status, task, start, activity
        and kill flag are left as the database has them."""
        return [
            Write(
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
            )
        ]  # fmt: skip

    def panel_status(self, session_id: str, status: str, current_task: str | None, now: float) -> list[Write]:
        """A status change; :class:`RowGone` when run if the row is gone."""
        return [
            Write(
                "UPDATE panel_sessions SET status = ?, current_task = ?, last_activity = ?,"
                " last_heartbeat = ? WHERE id = ?",
                (status, current_task, now, now, session_id),
                must_change=True,
            )
        ]

    def panel_kill(self, session_id: str, when: float, by: str | None) -> list[Write]:
        return [
            Write("UPDATE panel_sessions SET kill_requested = 1 WHERE id = ?", (session_id,)),
            Write(
                "INSERT INTO panel_kills (session_id, requested_at, requested_by) VALUES (?, ?, ?)",
                (session_id, when, by),
            ),
        ]

    def panel_delete(self, ids: Sequence[str]) -> list[Write]:
        return [Write("DELETE FROM panel_sessions WHERE id = ?", (i,)) for i in ids] + [
            Write("DELETE FROM panel_kills WHERE session_id = ?", (i,)) for i in ids
        ]

    async def touch_heartbeats(self, beats: dict[str, float]) -> None:
        """Record many heartbeats in one transaction."""
        if beats:
            await self.write(
                [Write("UPDATE panel_sessions SET last_heartbeat = ? WHERE id = ?", (t, i)) for i, t in beats.items()]
            )

    async def kills(self, session_id: str) -> list[dict[str, Any]]:
        async with self.conn.execute(
            "SELECT requested_at, requested_by FROM panel_kills WHERE session_id = ? ORDER BY id",
            (session_id,),
        ) as cur:
            return [{"requested_at": r[0], "requested_by": r[1]} for r in await cur.fetchall()]

    # --- control (shared): the away switch, approvals, budgets ------------------------------

    def set_flag(self, name: str, value: str, when: float, by: Actor) -> list[Write]:
        return [
            Write(
                "INSERT INTO control_flags (name, value, changed_at, who, address, origin, user_agent)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value,"
                " changed_at = excluded.changed_at, who = excluded.who, address = excluded.address,"
                " origin = excluded.origin, user_agent = excluded.user_agent",
                (name, value, when, by.who, by.address, by.origin, by.user_agent),
            )
        ]

    async def flags(self) -> dict[str, dict[str, Any]]:
        async with self.conn.execute(
            "SELECT name, value, changed_at, who, address, origin, user_agent FROM control_flags"
        ) as cur:
            return {
                r[0]: {"value": r[1], "changed_at": r[2], "by": Actor(r[3], r[4], r[5], r[6]).to_json()}
                for r in await cur.fetchall()
            }

    def record_approval(self, approval: Approval) -> list[Write]:
        a, by = approval, approval.by
        return [
            Write(
                "INSERT INTO approvals (session_id, pending_id, decision, message, tool, summary,"
                " decided_at, who, address, origin, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (a.session_id, a.pending_id, a.decision, a.message, a.tool, a.summary, a.decided_at,
                 by.who, by.address, by.origin, by.user_agent),
            )
        ]  # fmt: skip

    async def record_approval_once(self, approval: Approval) -> bool:
        a, by = approval, approval.by
        async with self.write_lock, self.conn.execute(
            "INSERT INTO approvals (session_id, pending_id, decision, message, tool, summary,"
            " decided_at, who, address, origin, user_agent) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
            " WHERE NOT EXISTS (SELECT 1 FROM approvals WHERE session_id = ? AND pending_id = ?) RETURNING id",
            (a.session_id, a.pending_id, a.decision, a.message, a.tool, a.summary, a.decided_at,
             by.who, by.address, by.origin, by.user_agent, a.session_id, a.pending_id),
        ) as cur:
            return await cur.fetchone() is not None

    async def approvals(self, session_id: str) -> list[dict[str, Any]]:
        async with self.conn.execute(
            "SELECT pending_id, decision, message, tool, summary, decided_at, who, address, origin, user_agent"
            " FROM approvals WHERE session_id = ? ORDER BY id",
            (session_id,),
        ) as cur:
            return [
                {
                    "pending_id": r[0], "decision": r[1], "message": r[2], "tool": r[3], "summary": r[4],
                    "decided_at": r[5], "by": Actor(r[6], r[7], r[8], r[9]).to_json(),
                }
                for r in await cur.fetchall()
            ]  # fmt: skip

    def set_budget(self, session_id: str, max_cost_usd: float | None, when: float, by: Actor) -> list[Write]:
        return [
            Write(
                "INSERT INTO budget_changes (session_id, max_cost_usd, changed_at, who, address, origin,"
                " user_agent) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session_id, max_cost_usd, when, by.who, by.address, by.origin, by.user_agent),
            )
        ]

    async def budgets(self) -> dict[str, float]:
        async with self.conn.execute(
            "SELECT session_id, max_cost_usd FROM budget_changes WHERE id IN"
            " (SELECT MAX(id) FROM budget_changes GROUP BY session_id)"
        ) as cur:
            return {r[0]: float(r[1]) for r in await cur.fetchall() if r[1] is not None}

    async def budget_changes(self, session_id: str) -> list[dict[str, Any]]:
        async with self.conn.execute(
            "SELECT max_cost_usd, changed_at, who, address, origin, user_agent FROM budget_changes"
            " WHERE session_id = ? ORDER BY id",
            (session_id,),
        ) as cur:
            return [
                {"max_cost_usd": r[0], "changed_at": r[1], "by": Actor(r[2], r[3], r[4], r[5]).to_json()}
                for r in await cur.fetchall()
            ]

    # --- managed sessions (shared): records, logs, actions -----------------------------------

    def managed_save(self, row: dict[str, Any]) -> list[Write]:
        cols = ", ".join(MANAGED_COLUMNS)
        marks = ", ".join("?" for _ in MANAGED_COLUMNS)
        return [Write(f"INSERT OR REPLACE INTO managed_sessions ({cols}) VALUES ({marks})", tuple(row[c] for c in MANAGED_COLUMNS))]

    async def managed_load(self) -> list[dict[str, Any]]:
        async with self.conn.execute(f"SELECT {', '.join(MANAGED_COLUMNS)} FROM managed_sessions ORDER BY created_at") as cur:
            return [dict(zip(MANAGED_COLUMNS, r, strict=True)) for r in await cur.fetchall()]

    def managed_delete(self, session_id: str) -> list[Write]:
        return [
            Write("DELETE FROM managed_sessions WHERE id = ?", (session_id,), must_change=True),
            Write("DELETE FROM managed_logs WHERE session_id = ?", (session_id,)),
        ]

    async def add_logs(self, session_id: str, lines: Sequence[dict[str, Any]]) -> None:
        if not lines:
            return
        params = [
            (session_id, x["ts"], x["level"], x["source"], x["kind"], x["content"], x.get("tool_name"), x.get("cost_usd"))
            for x in lines
        ]

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO managed_logs (session_id, ts, level, source, kind, content, tool_name, cost_usd)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    params,
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        async with self.write_lock:
            await self._run(insert)

    async def logs(self, query: LogQuery) -> list[dict[str, Any]]:
        sql = ["SELECT id, ts, level, source, kind, content, tool_name, cost_usd FROM managed_logs WHERE session_id = ? AND id > ?"]
        params: list[Any] = [query.session_id, query.after]
        if query.min_level is not None:
            levels = LOG_LEVELS[LOG_LEVELS.index(query.min_level) :]
            sql.append(f"AND level IN ({', '.join('?' for _ in levels)})")
            params += levels
        for column, values in (("source", query.sources), ("kind", query.kinds)):
            if values:
                sql.append(f"AND {column} IN ({', '.join('?' for _ in values)})")
                params += values
        sql.append("ORDER BY id LIMIT ?")
        params.append(query.limit)
        async with self.conn.execute(" ".join(sql), params) as cur:
            names = ("id", "ts", "level", "source", "kind", "content", "tool_name", "cost_usd")
            return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]

    async def trim_logs(self, before: float) -> int:
        async with self.write_lock, self.conn.execute("DELETE FROM managed_logs WHERE ts < ?", (before,)) as cur:
            return max(0, cur.rowcount)

    def record_action(self, session_id: str, action: str, detail: str | None, when: float, by: Actor) -> list[Write]:
        return [
            Write(
                "INSERT INTO managed_actions (session_id, action, detail, at, who, address, origin, user_agent)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, action, detail, when, by.who, by.address, by.origin, by.user_agent),
            )
        ]

    async def actions(self, session_id: str) -> list[dict[str, Any]]:
        async with self.conn.execute(
            "SELECT action, detail, at, who, address, origin, user_agent FROM managed_actions"
            " WHERE session_id = ? ORDER BY id",
            (session_id,),
        ) as cur:
            return [
                {"action": r[0], "detail": r[1], "at": r[2], "by": Actor(r[3], r[4], r[5], r[6]).to_json()}
                for r in await cur.fetchall()
            ]

    # --- named tokens (shared) ---------------------------------------------------------------

    _TOKEN_COLUMNS = "name, role, hash, created_at, last_used_at, revoked_at"

    async def token_create(self, row: TokenRow) -> None:
        try:
            await self.write([
                Write(
                    f"INSERT INTO tokens ({self._TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (row.name, row.role, row.hash, row.created_at, row.last_used_at, row.revoked_at),
                )
            ])  # fmt: skip
        except sqlite3.IntegrityError:
            raise TokenExists(f"a token named {row.name!r} exists already (revoked tokens keep their names)") from None

    async def tokens(self) -> list[TokenRow]:
        async with self.conn.execute(f"SELECT {self._TOKEN_COLUMNS} FROM tokens ORDER BY created_at, name") as cur:
            return [TokenRow(*r) for r in await cur.fetchall()]

    async def token_by_hash(self, token_hash: str) -> TokenRow | None:
        async with self.conn.execute(f"SELECT {self._TOKEN_COLUMNS} FROM tokens WHERE hash = ?", (token_hash,)) as cur:
            r = await cur.fetchone()
        return TokenRow(*r) if r else None

    async def token_revoke(self, name: str, when: float) -> TokenRow | None:
        await self.write([Write("UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (when, name))])
        async with self.conn.execute(f"SELECT {self._TOKEN_COLUMNS} FROM tokens WHERE name = ?", (name,)) as cur:
            r = await cur.fetchone()
        return TokenRow(*r) if r else None

    async def token_touch(self, uses: dict[str, float]) -> None:
        await self.write([
            Write("UPDATE tokens SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE hash = ?", (t, h))
            for h, t in uses.items()
        ])  # fmt: skip

    # --- agents (shared): their batches, their sessions, commands for them ------------------------

    async def load_agents(self) -> list[tuple[str, str, int, float]]:
        """(agent, host, seq, last_seen) of every agent that ever pushed."""
        async with self.conn.execute("SELECT agent, host, seq, last_seen FROM agents") as cur:
            return [(r[0], r[1], int(r[2]), float(r[3])) for r in await cur.fetchall()]

    async def load_agent_sessions(self) -> list[tuple[str, str, str, bytes, int, float]]:
        """(id, agent, host, session JSON, seq, updated_at) of every pushed session."""
        async with self.conn.execute("SELECT id, agent, host, session, seq, updated_at FROM agent_sessions") as cur:
            return [(r[0], r[1], r[2], bytes(r[3]), int(r[4]), float(r[5])) for r in await cur.fetchall()]

    def agent_seen(self, agent: str, host: str, seq: int, when: float) -> list[Write]:
        return [
            Write(
                "INSERT INTO agents (agent, host, seq, last_seen) VALUES (?, ?, ?, ?) ON CONFLICT(agent)"
                " DO UPDATE SET host = excluded.host, seq = MAX(seq, excluded.seq), last_seen = excluded.last_seen,"
                " stale = 0",
                (agent, host, seq, when),
            )
        ]

    def agent_applied(self, agent: str, host: str, seq: int, when: float) -> list[Write]:
        return [
            Write(
                "INSERT INTO agents (agent, host, seq, last_seen, stale) VALUES (?, ?, ?, ?, 0) ON CONFLICT(agent)"
                " DO UPDATE SET host = excluded.host, seq = excluded.seq, last_seen = excluded.last_seen, stale = 0"
                " WHERE agents.seq < excluded.seq",
                (agent, host, seq, when),
                must_change=True,
            )
        ]

    def agent_stale(self, agent: str, stale: bool, cutoff: float) -> list[Write]:
        if stale:
            return [Write("UPDATE agents SET stale = 1 WHERE agent = ? AND last_seen < ?", (agent, cutoff), must_change=True)]
        return [Write("UPDATE agents SET stale = 0 WHERE agent = ?", (agent,))]

    async def agent_states(self, agents: Sequence[str] | None = None) -> list[tuple[str, str, int, float, bool]]:
        sql = "SELECT agent, host, seq, last_seen, stale FROM agents"
        params: tuple[Any, ...] = ()
        if agents is not None:
            if not agents:
                return []
            sql += f" WHERE agent IN ({', '.join('?' * len(agents))})"
            params = tuple(agents)
        async with self.conn.execute(sql, params) as cur:
            return [(r[0], r[1], int(r[2]), float(r[3]), bool(r[4])) for r in await cur.fetchall()]

    async def agent_rows(self, ids: Sequence[str]) -> list[tuple[str, str, str, bytes, int, float]]:
        out: list[tuple[str, str, str, bytes, int, float]] = []
        for at in range(0, len(ids), 500):
            chunk = ids[at : at + 500]
            async with self.conn.execute(
                "SELECT id, agent, host, session, seq, updated_at FROM agent_sessions"
                f" WHERE id IN ({', '.join('?' * len(chunk))})",
                tuple(chunk),
            ) as cur:
                out += [(r[0], r[1], r[2], bytes(r[3]), int(r[4]), float(r[5])) for r in await cur.fetchall()]
        return out

    async def agent_row_seqs(self, agent: str) -> dict[str, int]:
        async with self.conn.execute("SELECT id, seq FROM agent_sessions WHERE agent = ?", (agent,)) as cur:
            return {r[0]: int(r[1]) for r in await cur.fetchall()}

    def agent_sessions_put(
        self, agent: str, host: str, seq: int, when: float, rows: Sequence[tuple[str, bytes]], deleted: Sequence[str]
    ) -> list[Write]:
        writes = [
            Write(
                "INSERT INTO agent_sessions (id, agent, host, session, seq, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET agent = excluded.agent, host = excluded.host,"
                " session = excluded.session, seq = excluded.seq, updated_at = excluded.updated_at",
                (sid, agent, host, body, seq, when),
            )
            for sid, body in rows
        ]
        writes += [Write("DELETE FROM agent_sessions WHERE id = ? AND agent = ?", (sid, agent)) for sid in deleted]
        return writes

    async def add_agent_command(self, agent: str, kind: str, body: bytes, when: float) -> int:
        async with self.write_lock, self.conn.execute(
            "INSERT INTO agent_commands (agent, kind, body, created_at) VALUES (?, ?, ?, ?) RETURNING id",
            (agent, kind, body, when),
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def agent_commands(self, agent: str, after: int) -> tuple[list[tuple[int, str, bytes]], int]:
        """(id, kind, body) of ``agent``'s commands after ``after``, oldest first (those
        up to ``after``, which the agent has, are deleted), and the highest id ever given."""
        async with self.write_lock, self.conn.execute(
            "DELETE FROM agent_commands WHERE agent = ? AND id <= ?", (agent, after)
        ):
            pass
        async with self.conn.execute(
            "SELECT id, kind, body FROM agent_commands WHERE agent = ? AND id > ? ORDER BY id LIMIT 1000", (agent, after)
        ) as cur:
            rows = [(int(r[0]), r[1], bytes(r[2])) for r in await cur.fetchall()]
        async with self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'agent_commands'") as cur:
            latest = await cur.fetchone()
        return rows, int(latest[0]) if latest else 0

    async def write(self, writes: Sequence[Write]) -> None:
        """Run ``writes`` in one transaction, one trip (no events)."""
        if writes:
            async with self.write_lock:
                await self._run(lambda conn: _transaction(conn, writes, None, ()))


def _transaction(
    conn: sqlite3.Connection, writes: Sequence[Write], insert: str | None, params: Sequence[object]
) -> list[int]:
    """On the connection's thread: ``writes``, then ``insert`` (the events'
    ``INSERT … RETURNING id``), in one ``BEGIN IMMEDIATE`` transaction; the
    ids. Anything failing rolls back all of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for w in writes:
            cur = conn.execute(w.sql, w.params)
            if w.must_change and cur.rowcount == 0:
                raise RowGone("the row this write changes is gone")
        ids = [int(r[0]) for r in conn.execute(insert, params).fetchall()] if insert else []
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    # One statement's rows get increasing ids in VALUES order.
    return sorted(ids)


class SqliteEventLog:
    """:class:`~sessionwatch.store.base.EventLog` on the store's connection
    (one writer, WAL): the ``events`` table (migration ``0004_events``).

    ``id INTEGER PRIMARY KEY AUTOINCREMENT``: ids increase across every
    process using the file and across restarts, and never come back after a
    trim. SQLite has one writer at a time, so commit order is id order.
    A row holds the id, the ``origin`` (one random number per server run),
    the event type, the encoded unfiltered ``data:`` of the message (the
    ``id:`` line is made from the id) and the time.
    """

    #: Each server run resumes only its own ids (hub/log.py).
    shared = False

    def __init__(self, store: Store, origin: int | None = None) -> None:
        self.store = store
        self.origin = secrets.randbits(62) if origin is None else origin

    async def start(self) -> int:
        (first,) = await self.append([NewEvent(START, b"", time.time())])
        return first

    async def append(self, events: Sequence[NewEvent], *, writes: Sequence[Write] = ()) -> list[int]:
        if not events and not writes:
            return []
        insert: str | None = None
        params: list[object] = []
        if events:
            # One statement whatever the batch.
            insert = (
                "INSERT INTO events (origin, type, data, at) VALUES "
                + ", ".join(["(?, ?, ?, ?)"] * len(events))
                + " RETURNING id"
            )
            for e in events:
                params += (self.origin, e.type, e.data, e.at)
        # The change and its events: one transaction, one trip to the
        # connection's thread (the hot path of every tracker write).
        async with self.store.write_lock:
            return await self.store._run(lambda conn: _transaction(conn, writes, insert, params))

    async def since(self, last_id: int, limit: int) -> list[LoggedEvent]:
        async with self.store.conn.execute(
            "SELECT id, origin, type, data, at FROM events WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit)
        ) as cur:
            return [LoggedEvent(int(r[0]), int(r[1]), r[2], bytes(r[3]), float(r[4])) for r in await cur.fetchall()]

    async def latest_id(self) -> int:
        # sqlite_sequence keeps the highest id ever given, trimmed rows included.
        async with self.store.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def trim(
        self, now: float, *, keep_events: int = KEEP_EVENTS, keep_s: float = KEEP_S, max_bytes: int = STORE_BYTES
    ) -> int:
        # One statement, one autocommit transaction; the store's write lock
        # keeps it out of another coroutine's open transaction.
        async with self.store.write_lock, self.store.conn.execute(
            "DELETE FROM events WHERE"
            # older than keep_s and not among the last keep_events...
            " (at < ? AND id < (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?))"
            # ...and, whatever the count and age, within max_bytes, newest first.
            " OR id <= (SELECT id FROM (SELECT id, SUM(length(data)) OVER (ORDER BY id DESC) AS total"
            " FROM events) WHERE total > ? ORDER BY id DESC LIMIT 1)",
            (now - keep_s, max(keep_events, 1) - 1, max_bytes),
        ) as cur:
            deleted = max(cur.rowcount, 0)
        return deleted
