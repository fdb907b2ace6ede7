"""The PostgreSQL store: the store interfaces (``store/base.py``) on one
database that several ``serve`` processes (replicas) share, through asyncpg.

- node-local: transcript offsets and aggregates, keyed by host and path
  (``transcripts``): each machine reads and writes only its own rows;
- shared: Panel sessions and kills, the away switch, approvals, budgets,
  managed sessions' records, logs and actions; writes name their columns and
  come back as statements (:class:`Write`, ``$n`` parameters);
- the event log (:class:`PgEventLog`, table ``events``).

Event ids are taken in the transaction that makes the change, by updating
the one row of ``event_counter`` (a row lock: appends from every replica are
serialised from that update to their commit), so ids are given in commit
order and a follower reading ``id > last`` never skips one that commits
late. The same transaction calls ``pg_notify``: PostgreSQL delivers it at
commit, in commit order, to every replica that ``LISTEN``s
(:meth:`PgStore.listen`).

One replica at a time runs the clock-driven changes: whoever holds the
session-level advisory lock :data:`LEADER_LOCK` (:meth:`PgStore.lead`) on
its own connection; when that replica dies its connection closes, the lock is
released and the next replica to try takes it over.

The named migrations are ``store/schema.py``'s :data:`PG_MIGRATIONS` (the
same names as SQLite's), run under an advisory transaction lock so replicas
starting together run each once.

asyncpg is an optional dependency (``pip install 'sessionwatch[postgres]'``):
:func:`import_asyncpg` says so in one sentence when it is missing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

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
    LoggedEvent,
    LogQuery,
    NewEvent,
    PanelRow,
    RowGone,
    TokenExists,
    TokenRow,
    TranscriptRow,
    Write,
)
from sessionwatch.store.schema import PG_MIGRATIONS

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "AGENT_CHANNEL", "CHANNEL", "LEADER_LOCK", "LOGS_CHANNEL", "RELAY_CHANNEL", "RELAY_DONE_CHANNEL",
    "PgEventLog", "PgStore", "import_asyncpg", "is_postgres_url",
]  # fmt: skip

log = logging.getLogger(__name__)

#: The channel every replica LISTENs on; the payload is the highest id of the
#: committed batch.
CHANNEL = "sessionwatch_events"
#: Relayed actions (relay.py): a row for the replica named in the payload; its
#: answer, for the asking replica ("<asker>:<id>").
RELAY_CHANNEL = "sessionwatch_relay"
RELAY_DONE_CHANNEL = "sessionwatch_relay_done"
#: A command for an agent (its long poll may wait on another replica); new log
#: lines of a managed session (followed on another replica). Payload: the name.
AGENT_CHANNEL = "sessionwatch_agents"
LOGS_CHANNEL = "sessionwatch_logs"
#: Advisory lock keys: the clock-driven changes' leader, the migrations.
LEADER_LOCK = 0x5E55_1011
MIGRATE_LOCK = 0x5E55_1012

_PANEL_COLUMNS = (
    "id, app_name, user_id, host, pid, url, status, current_task, "
    "started_at, last_activity, last_heartbeat, kill_requested"
)
_MANAGED = ", ".join(f'"{c}"' for c in MANAGED_COLUMNS)
_LOG_COLUMNS = ("id", "ts", "level", "source", "kind", "content", "tool_name", "cost_usd")


def is_postgres_url(value: str) -> bool:
    """Whether ``--db`` names a PostgreSQL database rather than a SQLite file."""
    return value.startswith(("postgresql://", "postgres://"))


def import_asyncpg() -> Any:
    """The asyncpg module, or a :class:`ConfigError` in one sentence."""
    try:
        import asyncpg
    except ImportError:
        raise ConfigError(
            "--db postgresql://... needs asyncpg: pip install 'sessionwatch[postgres]'"
        ) from None
    return asyncpg


def _count(status: str) -> int:
    """Rows a command changed, from its status tag (``UPDATE 3``)."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _actor(r: Sequence[Any], at: int) -> dict[str, Any]:
    return Actor(r[at], r[at + 1], r[at + 2], r[at + 3]).to_json()


async def _run_writes(conn: asyncpg.Connection, writes: Sequence[Write]) -> None:
    for w in writes:
        status = await conn.execute(w.sql, *w.params)
        if w.must_change and _count(status) == 0:
            raise RowGone("the row this write changes is gone")


class PgStore:
    """:class:`~sessionwatch.store.base.Database` on PostgreSQL. Open with :meth:`open`."""

    def __init__(self, url: str, pool: asyncpg.Pool, host: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = pool
        #: This machine's name: the key of its transcript rows.
        self.host = host
        self._listener: asyncpg.Connection | None = None
        #: channels besides the event log's, and who hears them (:meth:`subscribe`)
        self._channels: dict[str, list[Callable[[str], None]]] = {}
        self._listening = asyncio.Lock()
        #: The connection that holds (or keeps trying for) the leader's lock.
        self._leader: asyncpg.Connection | None = None
        self._leading = False

    @classmethod
    async def open(cls, url: str, *, host: str | None = None, max_size: int = 10) -> PgStore:
        """Connect (a pool) and run the migrations not yet run."""
        asyncpg = import_asyncpg()
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=max_size, command_timeout=60)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise ConfigError(f"cannot connect to the database {_safe(url)}: {exc}") from None
        store = cls(url, pool, host or socket.gethostname())
        try:
            await store._migrate()
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreClosedError("the store is closed")
        return self._pool

    async def close(self) -> None:
        """Close the pool and the listening and leading connections; safe twice."""
        pool, self._pool = self._pool, None
        for conn in (self._listener, self._leader):
            if conn is not None and not conn.is_closed():
                try:
                    await asyncio.wait_for(conn.close(), 5)
                except Exception:  # noqa: BLE001 - closing: nothing left to do with it
                    conn.terminate()
        self._listener = self._leader = None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except Exception:  # noqa: BLE001
                pool.terminate()

    def event_log(self, origin: int | None = None) -> PgEventLog:
        return PgEventLog(self, origin)

    async def _migrate(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATE_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            done = {r[0] for r in await conn.fetch("SELECT name FROM migrations")}
            for name, sql in PG_MIGRATIONS:
                if name in done:
                    continue
                async with conn.transaction():  # a savepoint: each migration whole or not at all
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO migrations (name, applied_at) VALUES ($1, $2)", name, time.time()
                    )

    async def migrations(self) -> list[str]:
        return [r[0] for r in await self.pool.fetch("SELECT name FROM migrations ORDER BY name")]

    async def data_version(self) -> int:
        """Always 0: other replicas' changes arrive as events (:meth:`listen`),
        and no tracker writes this database directly."""
        return 0

    # --- replicas: notifications and the clock's leader -------------------------------------

    async def listen(self, callback: Callable[[int], None], *, origin: int | None = None) -> None:
        """Call ``callback(last_id)`` on the loop for every batch committed by
        an event log of another ``origin`` (the payload: its origin and the
        batch's highest id)."""
        asyncpg = import_asyncpg()
        conn = await asyncpg.connect(self.url)
        mine = f"{origin}:"

        def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            if payload.startswith(mine):
                return  # this run's own append: already applied
            last = payload.rpartition(":")[2]
            if last.isdigit():
                callback(int(last))

        async with self._listening:
            await conn.add_listener(CHANNEL, notified)
            for channel in self._channels:
                await conn.add_listener(channel, self._heard)
            self._listener = conn

    async def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(payload)`` on the loop for every NOTIFY on
        ``channel`` (on the listening connection, and on the next one if
        :meth:`listen` is called again after it was lost)."""
        first = channel not in self._channels
        self._channels.setdefault(channel, []).append(callback)
        async with self._listening:  # one statement at a time on the connection
            if first and self._listener is not None and not self._listener.is_closed():
                try:
                    await self._listener.add_listener(channel, self._heard)
                except Exception:  # noqa: BLE001 - the connection is lost: listen() adds it again
                    log.warning("could not listen on %s yet", channel, exc_info=True)

    def _heard(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        for callback in self._channels.get(channel, ()):
            try:
                callback(payload)
            except Exception:  # noqa: BLE001 - one listener's failure is not the others'
                log.exception("handling a notification on %s failed", channel)

    def listening(self) -> bool:
        return self._listener is not None and not self._listener.is_closed()

    async def lead(self) -> bool:
        """Whether this process runs the clock-driven changes: it holds the
        advisory lock :data:`LEADER_LOCK`, or takes it now (its last holder
        has gone). The lock lives as long as this store's leading connection."""
        asyncpg = import_asyncpg()
        conn = self._leader
        if conn is not None and not conn.is_closed():
            if self._leading:
                return True
        else:
            self._leading = False  # a lost connection took the lock with it
            try:
                conn = self._leader = await asyncpg.connect(self.url)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("could not reach the database to take the clock's lock", exc_info=True)
                return False
        try:
            self._leading = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.warning("could not take the clock's lock", exc_info=True)
            return False
        if self._leading:
            log.info("this replica runs the clock-driven changes (stale, cleanup, retention)")
        return self._leading

    # --- transcripts (node-local, keyed by host) -------------------------------------------

    async def load_transcripts(self) -> list[TranscriptRow]:
        rows = await self.pool.fetch(
            'SELECT path, kind, session_id, dev, ino, size, mtime, "offset", agg FROM transcripts WHERE host = $1',
            self.host,
        )
        return [TranscriptRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bytes(r[8])) for r in rows]

    async def save_transcripts(self, rows: Iterable[TranscriptRow], deleted: Iterable[str] = ()) -> None:
        rows = list(rows)
        deleted = list(deleted)
        if not rows and not deleted:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            if rows:
                await conn.executemany(
                    'INSERT INTO transcripts (host, path, kind, session_id, dev, ino, size, mtime, "offset", agg)'
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (host, path) DO UPDATE SET"
                    " kind = excluded.kind, session_id = excluded.session_id, dev = excluded.dev,"
                    " ino = excluded.ino, size = excluded.size, mtime = excluded.mtime,"
                    ' "offset" = excluded."offset", agg = excluded.agg',
                    [
                        (self.host, r.path, r.kind, r.session_id, r.dev, r.ino, r.size, r.mtime, r.offset, r.agg)
                        for r in rows
                    ],
                )
            if deleted:
                await conn.execute(
                    "DELETE FROM transcripts WHERE host = $1 AND path = ANY($2::text[])", self.host, deleted
                )

    # --- panel sessions (shared) ------------------------------------------------------------

    async def load_panel(self) -> list[PanelRow]:
        return [PanelRow(*r) for r in await self.pool.fetch(f"SELECT {_PANEL_COLUMNS} FROM panel_sessions")]

    async def load_panel_rows(self, ids: Sequence[str]) -> list[PanelRow]:
        """The rows of ``ids`` that exist (another replica's change to them)."""
        rows = await self.pool.fetch(
            f"SELECT {_PANEL_COLUMNS} FROM panel_sessions WHERE id = ANY($1::text[])", list(ids)
        )
        return [PanelRow(*r) for r in rows]

    async def heartbeats(self) -> dict[str, float]:
        """Every Panel row's ``last_heartbeat`` (every replica's heartbeats)."""
        return {r[0]: float(r[1]) for r in await self.pool.fetch("SELECT id, last_heartbeat FROM panel_sessions")}

    def panel_register(self, row: PanelRow) -> list[Write]:
        return [
            Write(
                "INSERT INTO panel_sessions (id, app_name, user_id, host, pid, url, status,"
                " current_task, started_at, last_activity, last_heartbeat, kill_requested)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                " ON CONFLICT (id) DO UPDATE SET app_name = excluded.app_name,"
                " user_id = excluded.user_id, host = excluded.host, pid = excluded.pid,"
                " url = excluded.url, last_heartbeat = excluded.last_heartbeat",
                (
                    row.id, row.app_name, row.user_id, row.host, row.pid, row.url,
                    row.status, row.current_task, float(row.started_at), float(row.last_activity),
                    float(row.last_heartbeat), bool(row.kill_requested),
                ),
            )
        ]  # fmt: skip

    def panel_status(self, session_id: str, status: str, current_task: str | None, now: float) -> list[Write]:
        return [
            Write(
                "UPDATE panel_sessions SET status = $1, current_task = $2, last_activity = $3,"
                " last_heartbeat = $4 WHERE id = $5",
                (status, current_task, float(now), float(now), session_id),
                must_change=True,
            )
        ]

    def panel_kill(self, session_id: str, when: float, by: str | None) -> list[Write]:
        return [
            Write("UPDATE panel_sessions SET kill_requested = TRUE WHERE id = $1", (session_id,)),
            Write(
                "INSERT INTO panel_kills (session_id, requested_at, requested_by) VALUES ($1, $2, $3)",
                (session_id, float(when), by),
            ),
        ]

    def panel_delete(self, ids: Sequence[str]) -> list[Write]:
        return [
            Write("DELETE FROM panel_sessions WHERE id = ANY($1::text[])", (list(ids),)),
            Write("DELETE FROM panel_kills WHERE session_id = ANY($1::text[])", (list(ids),)),
        ]

    async def touch_heartbeats(self, beats: dict[str, float]) -> None:
        if beats:
            # GREATEST: another replica may have written a newer one.
            await self.pool.execute(
                "UPDATE panel_sessions p SET last_heartbeat = GREATEST(p.last_heartbeat, b.t)"
                " FROM unnest($1::text[], $2::float8[]) AS b(id, t) WHERE p.id = b.id",
                list(beats), [float(t) for t in beats.values()],
            )  # fmt: skip

    async def kills(self, session_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT requested_at, requested_by FROM panel_kills WHERE session_id = $1 ORDER BY id", session_id
        )
        return [{"requested_at": r[0], "requested_by": r[1]} for r in rows]

    async def write(self, writes: Sequence[Write]) -> None:
        if writes:
            async with self.pool.acquire() as conn, conn.transaction():
                await _run_writes(conn, writes)

    # --- control (shared): the away switch, approvals, budgets ------------------------------

    def set_flag(self, name: str, value: str, when: float, by: Actor) -> list[Write]:
        return [
            Write(
                "INSERT INTO control_flags (name, value, changed_at, who, address, origin, user_agent)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " changed_at = excluded.changed_at, who = excluded.who, address = excluded.address,"
                " origin = excluded.origin, user_agent = excluded.user_agent",
                (name, value, float(when), by.who, by.address, by.origin, by.user_agent),
            )
        ]

    async def flags(self) -> dict[str, dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT name, value, changed_at, who, address, origin, user_agent FROM control_flags"
        )
        return {r[0]: {"value": r[1], "changed_at": r[2], "by": _actor(r, 3)} for r in rows}

    def record_approval(self, approval: Approval) -> list[Write]:
        a, by = approval, approval.by
        return [
            Write(
                "INSERT INTO approvals (session_id, pending_id, decision, message, tool, summary,"
                " decided_at, who, address, origin, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                (a.session_id, a.pending_id, a.decision, a.message, a.tool, a.summary, float(a.decided_at),
                 by.who, by.address, by.origin, by.user_agent),
            )
        ]  # fmt: skip

    async def record_approval_once(self, approval: Approval) -> bool:
        """One transaction: a lock on this prompt, then the insert if it has no
        answer. The lock is its own statement: the insert's snapshot is taken
        after it, so it sees an answer another replica committed while it waited."""
        a, by = approval, approval.by
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", a.session_id, a.pending_id)
            got = await conn.fetchval(
                "INSERT INTO approvals (session_id, pending_id, decision, message, tool, summary,"
                " decided_at, who, address, origin, user_agent) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11"
                " WHERE NOT EXISTS (SELECT 1 FROM approvals WHERE session_id = $1 AND pending_id = $2) RETURNING id",
                a.session_id, a.pending_id, a.decision, a.message, a.tool, a.summary, float(a.decided_at),
                by.who, by.address, by.origin, by.user_agent,
            )  # fmt: skip
        return got is not None

    async def approvals(self, session_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT pending_id, decision, message, tool, summary, decided_at, who, address, origin, user_agent"
            " FROM approvals WHERE session_id = $1 ORDER BY id",
            session_id,
        )
        return [
            {
                "pending_id": r[0], "decision": r[1], "message": r[2], "tool": r[3], "summary": r[4],
                "decided_at": r[5], "by": _actor(r, 6),
            }
            for r in rows
        ]  # fmt: skip

    def set_budget(self, session_id: str, max_cost_usd: float | None, when: float, by: Actor) -> list[Write]:
        cap = None if max_cost_usd is None else float(max_cost_usd)
        return [
            Write(
                "INSERT INTO budget_changes (session_id, max_cost_usd, changed_at, who, address, origin,"
                " user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                (session_id, cap, float(when), by.who, by.address, by.origin, by.user_agent),
            )
        ]

    async def budgets(self) -> dict[str, float]:
        rows = await self.pool.fetch(
            "SELECT DISTINCT ON (session_id) session_id, max_cost_usd FROM budget_changes"
            " ORDER BY session_id, id DESC"
        )
        return {r[0]: float(r[1]) for r in rows if r[1] is not None}

    async def budget_changes(self, session_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT max_cost_usd, changed_at, who, address, origin, user_agent FROM budget_changes"
            " WHERE session_id = $1 ORDER BY id",
            session_id,
        )
        return [{"max_cost_usd": r[0], "changed_at": r[1], "by": _actor(r, 2)} for r in rows]

    # --- managed sessions (shared): records, logs, actions -----------------------------------

    def managed_save(self, row: dict[str, Any]) -> list[Write]:
        marks = ", ".join(f"${i}" for i in range(1, len(MANAGED_COLUMNS) + 1))
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in MANAGED_COLUMNS if c != "id")
        return [
            Write(
                f"INSERT INTO managed_sessions ({_MANAGED}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {updates}",
                tuple(_managed_value(c, row[c]) for c in MANAGED_COLUMNS),
            )
        ]

    async def managed_load(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(f"SELECT {_MANAGED} FROM managed_sessions ORDER BY created_at")
        return [dict(zip(MANAGED_COLUMNS, r, strict=True)) for r in rows]

    def managed_delete(self, session_id: str) -> list[Write]:
        return [
            Write("DELETE FROM managed_sessions WHERE id = $1", (session_id,), must_change=True),
            Write("DELETE FROM managed_logs WHERE session_id = $1", (session_id,)),
        ]

    async def add_logs(self, session_id: str, lines: Sequence[dict[str, Any]]) -> None:
        if not lines:
            return
        params = [
            (session_id, float(x["ts"]), x["level"], x["source"], x["kind"], x["content"], x.get("tool_name"),
             None if x.get("cost_usd") is None else float(x["cost_usd"]))
            for x in lines
        ]  # fmt: skip
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO managed_logs (session_id, ts, level, source, kind, content, tool_name, cost_usd)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                params,
            )
            await conn.execute("SELECT pg_notify($1, $2)", LOGS_CHANNEL, session_id)  # followers on other replicas

    async def logs(self, query: LogQuery) -> list[dict[str, Any]]:
        sql = [f"SELECT {', '.join(_LOG_COLUMNS)} FROM managed_logs WHERE session_id = $1 AND id > $2"]
        params: list[Any] = [query.session_id, query.after]
        if query.min_level is not None:
            params.append(list(LOG_LEVELS[LOG_LEVELS.index(query.min_level) :]))
            sql.append(f"AND level = ANY(${len(params)}::text[])")
        for column, values in (("source", query.sources), ("kind", query.kinds)):
            if values:
                params.append(list(values))
                sql.append(f"AND {column} = ANY(${len(params)}::text[])")
        params.append(query.limit)
        sql.append(f"ORDER BY id LIMIT ${len(params)}")
        return [dict(zip(_LOG_COLUMNS, r, strict=True)) for r in await self.pool.fetch(" ".join(sql), *params)]

    async def trim_logs(self, before: float) -> int:
        return _count(await self.pool.execute("DELETE FROM managed_logs WHERE ts < $1", float(before)))

    def record_action(self, session_id: str, action: str, detail: str | None, when: float, by: Actor) -> list[Write]:
        return [
            Write(
                "INSERT INTO managed_actions (session_id, action, detail, at, who, address, origin, user_agent)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                (session_id, action, detail, float(when), by.who, by.address, by.origin, by.user_agent),
            )
        ]

    async def actions(self, session_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT action, detail, at, who, address, origin, user_agent FROM managed_actions"
            " WHERE session_id = $1 ORDER BY id",
            session_id,
        )
        return [{"action": r[0], "detail": r[1], "at": r[2], "by": _actor(r, 3)} for r in rows]


    # --- named tokens (shared) ---------------------------------------------------------------

    _TOKEN_COLUMNS = "name, role, hash, created_at, last_used_at, revoked_at"

    async def token_create(self, row: TokenRow) -> None:
        asyncpg = import_asyncpg()
        try:
            await self.pool.execute(
                f"INSERT INTO tokens ({self._TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
                row.name, row.role, row.hash, float(row.created_at),
                None if row.last_used_at is None else float(row.last_used_at),
                None if row.revoked_at is None else float(row.revoked_at),
            )  # fmt: skip
        except asyncpg.UniqueViolationError:
            raise TokenExists(f"a token named {row.name!r} exists already (revoked tokens keep their names)") from None

    async def tokens(self) -> list[TokenRow]:
        rows = await self.pool.fetch(f"SELECT {self._TOKEN_COLUMNS} FROM tokens ORDER BY created_at, name")
        return [TokenRow(*r) for r in rows]

    async def token_by_hash(self, token_hash: str) -> TokenRow | None:
        r = await self.pool.fetchrow(f"SELECT {self._TOKEN_COLUMNS} FROM tokens WHERE hash = $1", token_hash)
        return TokenRow(*r) if r else None

    async def token_revoke(self, name: str, when: float) -> TokenRow | None:
        await self.pool.execute(
            "UPDATE tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL", float(when), name
        )
        r = await self.pool.fetchrow(f"SELECT {self._TOKEN_COLUMNS} FROM tokens WHERE name = $1", name)
        return TokenRow(*r) if r else None

    async def token_touch(self, uses: dict[str, float]) -> None:
        if uses:
            await self.pool.execute(
                "UPDATE tokens t SET last_used_at = GREATEST(COALESCE(t.last_used_at, 0), u.at)"
                " FROM unnest($1::text[], $2::float8[]) AS u(hash, at) WHERE t.hash = u.hash",
                list(uses), [float(t) for t in uses.values()],
            )  # fmt: skip

    # --- agents (shared): their batches, their sessions, commands for them ------------------------

    async def load_agents(self) -> list[tuple[str, str, int, float]]:
        rows = await self.pool.fetch("SELECT agent, host, seq, last_seen FROM agents")
        return [(r[0], r[1], int(r[2]), float(r[3])) for r in rows]

    async def load_agent_sessions(self) -> list[tuple[str, str, str, bytes, int, float]]:
        rows = await self.pool.fetch("SELECT id, agent, host, session, seq, updated_at FROM agent_sessions")
        return [(r[0], r[1], r[2], bytes(r[3]), int(r[4]), float(r[5])) for r in rows]

    def agent_seen(self, agent: str, host: str, seq: int, when: float) -> list[Write]:
        return [
            Write(
                "INSERT INTO agents (agent, host, seq, last_seen) VALUES ($1, $2, $3, $4) ON CONFLICT (agent)"
                " DO UPDATE SET host = excluded.host, seq = GREATEST(agents.seq, excluded.seq),"
                " last_seen = excluded.last_seen, stale = FALSE",
                (agent, host, int(seq), float(when)),
            )
        ]

    def agent_applied(self, agent: str, host: str, seq: int, when: float) -> list[Write]:
        return [
            Write(
                "INSERT INTO agents (agent, host, seq, last_seen, stale) VALUES ($1, $2, $3, $4, FALSE) ON CONFLICT (agent)"
                " DO UPDATE SET host = excluded.host, seq = excluded.seq, last_seen = excluded.last_seen, stale = FALSE"
                " WHERE agents.seq < excluded.seq",
                (agent, host, int(seq), float(when)),
                must_change=True,
            )
        ]

    def agent_stale(self, agent: str, stale: bool, cutoff: float) -> list[Write]:
        if stale:
            return [
                Write("UPDATE agents SET stale = TRUE WHERE agent = $1 AND last_seen < $2", (agent, float(cutoff)), must_change=True)
            ]
        return [Write("UPDATE agents SET stale = FALSE WHERE agent = $1", (agent,))]

    async def agent_states(self, agents: Sequence[str] | None = None) -> list[tuple[str, str, int, float, bool]]:
        if agents is None:
            rows = await self.pool.fetch("SELECT agent, host, seq, last_seen, stale FROM agents")
        else:
            rows = await self.pool.fetch(
                "SELECT agent, host, seq, last_seen, stale FROM agents WHERE agent = ANY($1::text[])", list(agents)
            )
        return [(r[0], r[1], int(r[2]), float(r[3]), bool(r[4])) for r in rows]

    async def agent_rows(self, ids: Sequence[str]) -> list[tuple[str, str, str, bytes, int, float]]:
        rows = await self.pool.fetch(
            "SELECT id, agent, host, session, seq, updated_at FROM agent_sessions WHERE id = ANY($1::text[])", list(ids)
        )
        return [(r[0], r[1], r[2], bytes(r[3]), int(r[4]), float(r[5])) for r in rows]

    async def agent_row_seqs(self, agent: str) -> dict[str, int]:
        rows = await self.pool.fetch("SELECT id, seq FROM agent_sessions WHERE agent = $1", agent)
        return {r[0]: int(r[1]) for r in rows}

    def agent_sessions_put(
        self, agent: str, host: str, seq: int, when: float, rows: Sequence[tuple[str, bytes]], deleted: Sequence[str]
    ) -> list[Write]:
        writes = [
            Write(
                "INSERT INTO agent_sessions (id, agent, host, session, seq, updated_at) VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (id) DO UPDATE SET agent = excluded.agent, host = excluded.host,"
                " session = excluded.session, seq = excluded.seq, updated_at = excluded.updated_at",
                (sid, agent, host, body, int(seq), float(when)),
            )
            for sid, body in rows
        ]
        writes += [Write("DELETE FROM agent_sessions WHERE id = $1 AND agent = $2", (sid, agent)) for sid in deleted]
        return writes

    async def add_agent_command(self, agent: str, kind: str, body: bytes, when: float) -> int:
        """Queue a command for ``agent``; the NOTIFY (at commit) wakes its long
        poll on whichever replica it waits."""
        return int(await self.pool.fetchval(
            "WITH i AS (INSERT INTO agent_commands (agent, kind, body, created_at) VALUES ($1, $2, $3, $4) RETURNING id)"
            " SELECT i.id FROM i, pg_notify($5, $1)",
            agent, kind, body, float(when), AGENT_CHANNEL,
        ))  # fmt: skip

    async def agent_commands(self, agent: str, after: int) -> tuple[list[tuple[int, str, bytes]], int]:
        async with self.pool.acquire() as conn:
            await conn.execute("DELETE FROM agent_commands WHERE agent = $1 AND id <= $2", agent, after)
            rows = await conn.fetch(
                "SELECT id, kind, body FROM agent_commands WHERE agent = $1 AND id > $2 ORDER BY id LIMIT 1000",
                agent, after,
            )  # fmt: skip
            # the identity's sequence: the highest id ever given (NULL before the first)
            latest = await conn.fetchval(
                "SELECT last_value FROM pg_sequences WHERE schemaname = current_schema()"
                " AND sequencename = pg_get_serial_sequence('agent_commands', 'id')::regclass::name"
            )
        return [(int(r[0]), r[1], bytes(r[2])) for r in rows], int(latest or 0)


    # --- replicas: held prompts, owners, relayed actions (relay.py) --------------------------

    async def hold_put(self, session_id: str, pending_id: str, origin: int, tool: str | None, summary: str, since: float) -> None:
        await self.pool.execute(
            "INSERT INTO holds (session_id, pending_id, origin, tool, summary, since) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (session_id, pending_id) DO UPDATE SET origin = excluded.origin, tool = excluded.tool,"
            " summary = excluded.summary, since = excluded.since",
            session_id, pending_id, origin, tool, summary, float(since),
        )  # fmt: skip

    async def hold_drop(self, session_id: str, pending_id: str, origin: int) -> None:
        await self.pool.execute(
            "DELETE FROM holds WHERE session_id = $1 AND pending_id = $2 AND origin = $3", session_id, pending_id, origin
        )

    async def holds(self, since: float, session_id: str | None = None) -> list[dict[str, Any]]:
        """Prompts held since ``since`` or later (every replica's), oldest first."""
        rows = await self.pool.fetch(
            "SELECT session_id, pending_id, origin, tool, summary, since FROM holds"
            " WHERE since >= $1 AND ($2::text IS NULL OR session_id = $2) ORDER BY since",
            float(since), session_id,
        )  # fmt: skip
        return [dict(r) for r in rows]

    async def trim_holds(self, before: float) -> int:
        return _count(await self.pool.execute("DELETE FROM holds WHERE since < $1", float(before)))

    async def owner_of(self, session_id: str) -> int | None:
        value = await self.pool.fetchval("SELECT origin FROM owners WHERE session_id = $1", session_id)
        return None if value is None else int(value)

    async def owner_take(self, session_id: str, origin: int, when: float, *, instead_of: int | None = None) -> int:
        """Make ``origin`` the owner of ``session_id``: always when ``instead_of``
        is None and there is no owner, else only in place of ``instead_of``.
        Returns the owner after the attempt (another replica may have won)."""
        if instead_of is None:
            sql = (
                "INSERT INTO owners (session_id, origin, since) VALUES ($1, $2, $3)"
                " ON CONFLICT (session_id) DO NOTHING"
            )
            await self.pool.execute(sql, session_id, origin, float(when))
        else:
            await self.pool.execute(
                "UPDATE owners SET origin = $2, since = $3 WHERE session_id = $1 AND origin = $4",
                session_id, origin, float(when), instead_of,
            )  # fmt: skip
        owner = await self.owner_of(session_id)
        return origin if owner is None else owner

    async def owner_set(self, session_id: str, origin: int, when: float) -> None:
        await self.pool.execute(
            "INSERT INTO owners (session_id, origin, since) VALUES ($1, $2, $3)"
            " ON CONFLICT (session_id) DO UPDATE SET origin = excluded.origin, since = excluded.since",
            session_id, origin, float(when),
        )  # fmt: skip

    async def owner_drop(self, session_id: str) -> None:
        await self.pool.execute("DELETE FROM owners WHERE session_id = $1", session_id)

    async def relay_put(self, target: int, asker: int, kind: str, body: bytes, when: float) -> int:
        """A relayed action for ``target``; the NOTIFY (at commit) wakes it."""
        return int(await self.pool.fetchval(
            "WITH i AS (INSERT INTO relay (target, asker, kind, body, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id)"
            " SELECT i.id FROM i, pg_notify($6, $1::text)",
            target, asker, kind, body, float(when), RELAY_CHANNEL,
        ))  # fmt: skip

    async def relay_claim(self, target: int, when: float) -> list[tuple[int, int, str, bytes]]:
        """The actions relayed to ``target`` not yet taken, taken now (id, asker, kind, body)."""
        rows = await self.pool.fetch(
            "UPDATE relay SET claimed_at = $2 WHERE target = $1 AND claimed_at IS NULL RETURNING id, asker, kind, body",
            target, float(when),
        )  # fmt: skip
        return sorted((int(r[0]), int(r[1]), r[2], bytes(r[3])) for r in rows)

    async def relay_answer(self, relay_id: int, asker: int, status: int, answer: bytes) -> None:
        await self.pool.execute(
            "WITH u AS (UPDATE relay SET status = $2, answer = $3 WHERE id = $1 RETURNING id)"
            " SELECT pg_notify($4, $5) FROM u",
            relay_id, status, answer, RELAY_DONE_CHANNEL, f"{asker}:{relay_id}",
        )  # fmt: skip

    async def relay_state(self, relay_id: int) -> tuple[bool, int | None, bytes | None]:
        """Whether the action was taken, and its answer once there is one."""
        r = await self.pool.fetchrow("SELECT claimed_at, status, answer FROM relay WHERE id = $1", relay_id)
        if r is None:
            return False, None, None
        return r[0] is not None, r[1], None if r[2] is None else bytes(r[2])

    async def relay_forget(self, relay_id: int, *, unless_claimed: bool = False) -> bool:
        """Delete the row; with ``unless_claimed``, only if nobody took it (then True)."""
        sql = "DELETE FROM relay WHERE id = $1" + (" AND claimed_at IS NULL" if unless_claimed else "")
        return _count(await self.pool.execute(sql, relay_id)) > 0

    async def trim_relay(self, before: float) -> int:
        return _count(await self.pool.execute("DELETE FROM relay WHERE created_at < $1", float(before)))

    async def current_put(self, rows: Sequence[tuple[str, bytes]], gone: Sequence[str], event_id: int) -> None:
        """A replica starting: its own sessions as it shows them without an
        event (its cold index), and those its sources no longer have."""
        async with self.pool.acquire() as conn, conn.transaction():
            if gone:
                await conn.execute("DELETE FROM current WHERE id = ANY($1::text[])", list(gone))
            if rows:
                await conn.execute(
                    "INSERT INTO current (id, session, event_id) SELECT u.id, u.s, $3"
                    " FROM unnest($1::text[], $2::text[]) AS u(id, s)"
                    " ON CONFLICT (id) DO UPDATE SET session = excluded.session, event_id = excluded.event_id",
                    [r[0] for r in rows], [r[1].decode() for r in rows], event_id,
                )  # fmt: skip

    async def current_sessions(self) -> list[bytes]:
        """Every session as the last event that named it shows it (``current``)."""
        return [r[0].encode() for r in await self.pool.fetch("SELECT session FROM current")]

    async def managed_row(self, session_id: str) -> dict[str, Any] | None:
        r = await self.pool.fetchrow(f"SELECT {_MANAGED} FROM managed_sessions WHERE id = $1", session_id)
        return None if r is None else dict(zip(MANAGED_COLUMNS, r, strict=True))


_FLOAT_COLUMNS = frozenset({"max_cost_usd", "cost_before", "total_cost_usd", "created_at", "updated_at"})


def _managed_value(column: str, value: Any) -> Any:
    """asyncpg wants a float for a ``double precision`` column (SQLite took an int too)."""
    if column in _FLOAT_COLUMNS and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _safe(url: str) -> str:
    """``url`` without its password, for messages."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, auth = head.partition("//")
    return f"{scheme}//{auth.split(':', 1)[0]}:***@{tail}"


class PgEventLog:
    """:class:`~sessionwatch.store.base.EventLog` on PostgreSQL, shared by every
    replica: each event's id is taken from ``event_counter`` in the
    transaction of the change, so ids follow commit order (module docstring)."""

    #: Every replica follows this log and serves its one sequence of ids.
    shared = True

    def __init__(self, store: PgStore, origin: int | None = None) -> None:
        self.store = store
        self.origin = secrets.randbits(62) if origin is None else origin

    async def start(self) -> int:
        (first,) = await self.append([NewEvent(START, b"", time.time())])
        return first

    async def append(self, events: Sequence[NewEvent], *, writes: Sequence[Write] = ()) -> list[int]:
        if not events and not writes:
            return []
        async with self.store.pool.acquire() as conn, conn.transaction():
            await _run_writes(conn, writes)
            if not events:
                return []
            # The counter's row lock is held from here to the commit: the
            # writes above ran before it, so other replicas wait only for
            # this statement and the COMMIT. The notification ("<origin>:<last
            # id>") goes out at commit, in commit order. ``current`` follows
            # the batch in the same statement: the last event naming a session
            # decides (deleted: the row goes; else the session as it shows it).
            rows = await conn.fetch(
                "WITH c AS (UPDATE event_counter SET last = last + $1 RETURNING last),"
                " u AS (SELECT c.last - $1 + u.n AS id, u.t, u.d, u.a FROM c,"
                " unnest($3::text[], $4::bytea[], $5::float8[]) WITH ORDINALITY AS u(t, d, a, n)),"
                " i AS (INSERT INTO events (id, origin, type, data, at) SELECT id, $2, t, d, a FROM u RETURNING id),"
                " e AS (SELECT DISTINCT ON (s->>'id') s->>'id' AS sid, s::text AS session, u.id AS event_id, u.t FROM u,"
                " json_array_elements(CASE WHEN u.t <> $7 THEN convert_from(u.d, 'UTF8')::json -> 'sessions' END) AS s"
                " ORDER BY s->>'id', u.id DESC),"  # a replica's start row: no data, no sessions
                " gone AS (DELETE FROM current WHERE id IN (SELECT sid FROM e WHERE t = 'session-deleted')),"
                " shown AS (INSERT INTO current (id, session, event_id)"
                " SELECT sid, session, event_id FROM e WHERE t <> 'session-deleted'"
                " ON CONFLICT (id) DO UPDATE SET session = excluded.session, event_id = excluded.event_id),"
                " n AS (SELECT pg_notify($6, $2::text || ':' || c.last::text) FROM c)"
                " SELECT i.id FROM i CROSS JOIN n",
                len(events), self.origin, [e.type for e in events], [e.data for e in events],
                [float(e.at) for e in events], CHANNEL, START,
            )  # fmt: skip
        return sorted(int(r[0]) for r in rows)

    async def since(self, last_id: int, limit: int) -> list[LoggedEvent]:
        rows = await self.store.pool.fetch(
            "SELECT id, origin, type, data, at FROM events WHERE id > $1 ORDER BY id LIMIT $2", last_id, limit
        )
        return [LoggedEvent(int(r[0]), int(r[1]), r[2], bytes(r[3]), float(r[4])) for r in rows]

    async def latest_id(self) -> int:
        return int(await self.store.pool.fetchval("SELECT last FROM event_counter"))

    async def trim(
        self, now: float, *, keep_events: int = KEEP_EVENTS, keep_s: float = KEEP_S, max_bytes: int = STORE_BYTES
    ) -> int:
        status = await self.store.pool.execute(
            "DELETE FROM events WHERE"
            " (at < $1 AND id < (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET $2))"
            " OR id <= (SELECT id FROM (SELECT id, SUM(octet_length(data)) OVER (ORDER BY id DESC) AS total"
            " FROM events) t WHERE total > $3 ORDER BY id DESC LIMIT 1)",
            float(now - keep_s), max(keep_events, 1) - 1, max_bytes,
        )  # fmt: skip
        return _count(status)
