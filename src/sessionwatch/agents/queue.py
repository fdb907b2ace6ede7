"""The agent's local queue: SQLite (plain ``sqlite3``, one connection, used
from one worker thread at a time), so nothing is lost while the server is
unreachable or the agent restarts.

- ``pending``: one row per session id, its latest state (or NULL: deleted)
  and a ``rev`` that grows with every change: the queue is bounded by the
  number of sessions on the machine, and the latest state of each wins.
- ``inflight``: the batch being sent (at most one), kept until the server
  answers it, so a batch re-sent after a lost answer is the same bytes with
  the same ``seq`` (the server applies a seq once).
- ``meta``: the agent's id (made once), the last ``seq`` given, the last
  command received.

Batches go out in ``rev`` order: the server sees changes in the order they
happened here, each session at its latest state.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Final

import orjson

#: A batch's sessions stop at this many bytes (the server takes 1 MiB bodies;
#: a ``sync`` list of 10,000 ids is ~400 KiB more).
BATCH_BYTES: Final = 384 * 1024
BATCH_SESSIONS: Final = 2000

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (sid TEXT PRIMARY KEY, rev INTEGER NOT NULL, body BLOB);
CREATE INDEX IF NOT EXISTS pending_rev ON pending(rev);
CREATE TABLE IF NOT EXISTS inflight (seq INTEGER PRIMARY KEY, body BLOB NOT NULL, max_rev INTEGER NOT NULL);
"""


class Queue:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        #: the pusher and the follower call from worker threads: one call at a time
        self.lock = threading.RLock()
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        self.agent_id = self._meta("agent") or self._set_meta("agent", uuid.uuid4().hex)
        row = self.conn.execute("SELECT MAX(rev) FROM pending").fetchone()
        self._rev = int(row[0] or 0)

    def close(self) -> None:
        self.conn.close()

    def _meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def _set_meta(self, key: str, value: str) -> str:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        return value

    @property
    def seq(self) -> int:
        """The last seq given to a batch."""
        with self.lock:
            return int(self._meta("seq") or 0)

    @property
    def command_after(self) -> int:
        with self.lock:
            return int(self._meta("commands") or 0)

    def set_command_after(self, value: int) -> None:
        with self.lock:
            self._set_meta("commands", str(value))

    def put(self, changes: list[tuple[str, bytes | None]]) -> None:
        """Each session's latest state (None: deleted), in the order given."""
        with self.lock:
            if not changes:
                return
            rows = []
            for sid, body in changes:
                self._rev += 1
                rows.append((sid, self._rev, body))
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany("INSERT OR REPLACE INTO pending (sid, rev, body) VALUES (?, ?, ?)", rows)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def depth(self) -> int:
        """Session changes not yet answered by the server."""
        with self.lock:
            (n,) = self.conn.execute("SELECT COUNT(*) FROM pending").fetchone()
            return int(n)

    def next_batch(self, agent: str, host: str, sync: list[str] | None) -> tuple[int, bytes, bool] | None:
        """The batch to send (seq, body, whether it is new): the one in flight,
        else a new one of the oldest pending changes (with ``sync`` when
        given); None if there is nothing."""
        with self.lock:
            row = self.conn.execute("SELECT seq, body FROM inflight ORDER BY seq LIMIT 1").fetchone()
            if row is not None:
                return int(row[0]), bytes(row[1]), False
            picked = self.conn.execute(
                "SELECT sid, rev, body FROM pending ORDER BY rev LIMIT ?", (BATCH_SESSIONS,)
            ).fetchall()
            if not picked and sync is None:
                return None
            upserts: list[orjson.Fragment] = []
            deletes: list[str] = []
            size = 0
            max_rev = 0
            for sid, rev, body in picked:
                if body is None:
                    deletes.append(sid)
                    size += len(sid) + 3
                else:
                    if upserts and size + len(body) > BATCH_BYTES:
                        break
                    upserts.append(orjson.Fragment(bytes(body)))
                    size += len(body) + 1
                max_rev = rev
            seq = self.seq + 1
            batch: dict[str, object] = {"agent": agent, "host": host, "seq": seq, "upserts": upserts, "deletes": deletes}
            if sync is not None:
                batch["sync"] = sync
            data = orjson.dumps(batch)
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.execute("INSERT INTO inflight (seq, body, max_rev) VALUES (?, ?, ?)", (seq, data, max_rev))
                self._set_meta("seq", str(seq))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            return seq, data, True

    def acked(self, seq: int) -> None:
        """The server has batch ``seq``: drop it and the changes it carried
        (a session changed since keeps its newer row)."""
        with self.lock:
            row = self.conn.execute("SELECT max_rev FROM inflight WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.execute("DELETE FROM pending WHERE rev <= ?", (int(row[0]),))
                self.conn.execute("DELETE FROM inflight WHERE seq = ?", (seq,))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
