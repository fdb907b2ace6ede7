"""Report Panel sessions to sessionwatch: register, heartbeat, tasks, kill.

Embed it in any Panel app::

    from sessionwatch.tracker import SessionTracker

    tracker = SessionTracker.get_tracker(app_name="reports")  # one per Panel session
    with tracker.task("Generating report"):
        run_expensive_operation()

Everything that touches the network or the database happens on one daemon
thread per process (the *worker*), never in a Panel callback: the tracker only
records what changed and wakes the worker. The worker

- registers sessions and pushes status changes (the latest state wins, so a
  burst of changes costs one request),
- sends one batched heartbeat per interval for every session of the process
  (`POST /heartbeats`),
- listens to `GET /stream?source=panel` and closes a Panel session as soon as
  the server flags it with `kill_requested` (the heartbeat answer is the
  fallback when the stream is down),
- retries with backoff while the server is away and re-registers the live
  sessions when it comes back,
- stops hammering a server that rejects its token (401/403): it logs "the
  server ... rejected the token" once, sends no heartbeats and retries once
  a minute (`AUTH_RETRY_S`) until the token is accepted again.

The HTTP client, its error vocabulary and the stream follower are the ones
every sessionwatch client uses (:mod:`sessionwatch.clients`).

In direct mode (`db_path=...`) the worker writes the server's SQLite file
instead of talking HTTP and polls the rows' `kill_requested` flag every
half second.

A tracker that cannot reach its server changes nothing for the app: calls
return at once and the app behaves as it would without tracking.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import itertools
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

# httpx imports httpcore lazily, on its first client; httpcore's package tries
# optional imports (socks, http2) that fail and leave sys.modules again. Done
# in the tracker's worker thread while Panel runs an app module, that races
# Panel's module recording (panel/io/reload.py) into a KeyError that kills the
# session. Importing it here, on the importing thread, settles sys.modules first.
import httpcore  # noqa: F401
import httpx

from sessionwatch.clients.follow import AUTH_RETRY_S, Follower, StreamEvent
from sessionwatch.clients.http import (
    ApiError,
    AsyncApi,
    AuthError,
    ClientError,
    ServerUnreachable,
    SyncApi,
)
from sessionwatch.store.schema import PANEL_DDL, session_id_problem

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_SERVER_URL",
    "KILL_CLOSE_CODE",
    "KILL_CLOSE_REASON",
    "PANEL_SCHEMA",
    "AUTH_RETRY_S",
    "SessionTracker",
]

log = logging.getLogger("sessionwatch.tracker")

DEFAULT_SERVER_URL = "http://127.0.0.1:8765"
#: Seconds between batched heartbeats; well inside the server's default
#: `--stale-after-s` of 120.
DEFAULT_HEARTBEAT_INTERVAL = 15.0
#: Direct mode reads `kill_requested` this often (the 2 s kill budget, issue 4).
KILL_POLL_INTERVAL = 0.5
#: 1001 "going away": the browser shows the app's `disconnect_notification`.
KILL_CLOSE_CODE = 1001
KILL_CLOSE_REASON = "Session ended from the sessionwatch dashboard"
RETRY_MIN = 0.5
RETRY_MAX = 5.0
#: Time budget for deregistering at interpreter exit.
EXIT_BUDGET = 2.0

#: The direct-mode tables: the server's own DDL, so the two cannot drift.
PANEL_SCHEMA = PANEL_DDL

T = TypeVar("T")


# --------------------------------------------------------------------------
# What the worker knows about one session
# --------------------------------------------------------------------------


@dataclass
class _Record:
    """One tracked session.

    Panel threads write `status`/`current_task`/`version`/`stopped` under
    `lock`; everything else belongs to the worker thread.
    """

    session_id: str
    app_name: str
    user_id: str | None
    host: str | None
    pid: int
    url: str | None
    heartbeat_interval: float
    on_kill: Callable[[], None]
    lock: threading.Lock = field(default_factory=threading.Lock)
    status: str = "idle"
    current_task: str | None = None
    version: int = 0
    stopped: bool = False
    # worker-owned
    registered: bool = False
    registered_at: float = 0.0  # time.monotonic() of the last registration
    synced_version: int = -1
    killed: bool = False

    def snapshot(self) -> tuple[str, str | None, int, bool]:
        with self.lock:
            return self.status, self.current_task, self.version, self.stopped

    def registration(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "app_name": self.app_name,
            "session_id": self.session_id,
            "pid": self.pid,
        }
        for key, value in (("user_id", self.user_id), ("host", self.host), ("url", self.url)):
            if value is not None:
                body[key] = value
        return body


class _Offline(Exception):
    """The server or database cannot be used right now."""


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` at most `timeout` seconds; say whether it was set."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


class _Backend:
    """What both backends share: their sessions, the wake-up, kills.

    Everything here runs on the worker thread.
    """

    def __init__(self) -> None:
        self.records: dict[str, _Record] = {}
        self._dirty = asyncio.Event()
        self._online = True  # only for logging each outage once

    def attach(self, record: _Record) -> None:
        self.records[record.session_id] = record
        self._dirty.set()

    def wake(self) -> None:
        self._dirty.set()

    async def run(self) -> None:
        raise NotImplementedError

    def deregister_now(self, deadline: float) -> None:
        """Synchronously deregister every live session (atexit)."""
        raise NotImplementedError

    async def _sync(self, record: _Record) -> None:
        """Bring the server's copy of `record` up to date; raise _Offline."""
        raise NotImplementedError

    async def _pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _sync_loop(self) -> None:
        delay = RETRY_MIN
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                for record in list(self.records.values()):
                    await self._sync(record)
            except _Offline:
                self._dirty.set()  # try everything again after the pause
                await self._pause(delay)
                delay = min(delay * 2, RETRY_MAX)
            else:
                delay = RETRY_MIN

    def _interval(self) -> float:
        # One beat for every session of the process: the shortest asked for.
        intervals = [r.heartbeat_interval for r in self.records.values()]
        return min(intervals, default=DEFAULT_HEARTBEAT_INTERVAL)

    def _live_ids(self) -> list[str]:
        return [r.session_id for r in self.records.values() if r.registered and not r.killed]

    def _forget(self, session_id: str) -> None:
        """The server does not know this session (any more): register again."""
        record = self.records.get(session_id)
        if record is not None and record.registered:
            record.registered = False
            self._dirty.set()

    def _kill(self, session_id: str) -> None:
        record = self.records.get(session_id)
        if record is None or record.killed:
            return
        record.killed = True
        log.info("kill requested for Panel session %s", session_id)
        try:
            record.on_kill()
        except Exception:
            log.exception("closing killed session %s failed", session_id)


class _Beat:
    """A fixed-rate clock: ticks at start + k * interval, never drifting."""

    def __init__(self) -> None:
        self._next = time.monotonic()

    async def sleep(self, interval: float) -> None:
        self._next += interval
        now = time.monotonic()
        if self._next < now:  # we fell behind (suspended laptop): restart the grid
            self._next = now + interval
        await asyncio.sleep(self._next - now)


# --------------------------------------------------------------------------
# HTTP backend
# --------------------------------------------------------------------------


class _HttpBackend(_Backend):
    """Sessions reported to one sessionwatch server over its REST API."""

    def __init__(self, url: str, token: str | None) -> None:
        super().__init__()
        self.url = url.rstrip("/")
        self.token = token
        self._back = asyncio.Event()  # the server answered again
        self._api: AsyncApi | None = None
        self._follower: Follower | None = None
        #: The server rejected the token: no heartbeats, slow retries.
        self.rejected = False

    async def run(self) -> None:
        self._api = AsyncApi(self.url, self.token, timeout_s=5.0)
        self._follower = Follower(self._api, params={"source": "panel"})
        try:
            await asyncio.gather(self._sync_loop(), self._heartbeat_loop(), self._kill_loop())
        finally:
            await self._api.aclose()

    # -- state -------------------------------------------------------------

    def _went_offline(self, error: ClientError) -> None:
        self._back.clear()
        if isinstance(error, AuthError):
            if not self.rejected:
                self.rejected = True
                self._online = False
                log.warning(
                    "%s; the app keeps running untracked, retrying every %.0f s",
                    error,
                    AUTH_RETRY_S,
                )
            return
        if self._online:
            self._online = False
            log.warning(
                "%s; the app keeps running, tracking resumes when it is back", error
            )

    def _came_back(self) -> None:
        if self.rejected:
            self.rejected = False
            self._online = True
            log.info("the sessionwatch server at %s accepts the token again", self.url)
            self._dirty.set()
        elif not self._online:
            self._online = True
            log.info("sessionwatch server at %s is back", self.url)
            if self._follower is not None:
                self._follower.retry_now()  # likely back for the stream too
        self._back.set()

    async def _request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        """A successful answer; raise _Offline (away, token rejected) or ApiError."""
        assert self._api is not None
        try:
            response = await self._api.request(method, path, json=json)
        except (AuthError, ServerUnreachable) as error:
            self._went_offline(error)
            raise _Offline(str(error)) from error
        except ApiError:
            self._came_back()  # it answered
            raise
        self._came_back()
        return response

    # -- registration and status -------------------------------------------

    async def _pause(self, seconds: float) -> None:
        if self.rejected:
            # The same token cannot work until someone changes it: retry
            # rarely, whatever the backoff says (or as soon as the stream,
            # retried as rarely, is accepted).
            await _wait(self._back, AUTH_RETRY_S)
            return
        # A working stream or heartbeat cuts the pause short.
        await _wait(self._back, seconds)

    async def _sync(self, record: _Record) -> None:
        status, task, version, stopped = record.snapshot()
        sid = record.session_id
        if stopped:
            # Even a session we never registered may exist on the server (an
            # earlier attempt whose answer was lost); a 404 answer is fine.
            with contextlib.suppress(ApiError):
                await self._request("DELETE", f"/sessions/{sid}")
            del self.records[sid]
            return
        if not record.registered:
            try:
                response = await self._request("POST", "/sessions", json=record.registration())
            except ApiError as error:
                log.warning("registering session %s failed: %s", sid, error)
                raise _Offline("registration refused") from error
            record.registered = True
            record.registered_at = time.monotonic()
            fresh = response.status_code == 201 and status == "idle" and task is None
            record.synced_version = version if fresh else -1
        if record.synced_version != version:
            try:
                await self._request(
                    "PUT", f"/sessions/{sid}/status", json={"status": status, "current_task": task}
                )
            except ApiError as error:
                if error.status == 404:
                    self._forget(sid)
                    return
                log.warning("status of session %s refused: %s", sid, error)
            record.synced_version = version

    # -- heartbeats ------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        beat = _Beat()
        while True:
            await beat.sleep(self._interval())
            ids = self._live_ids()
            if not ids or self.rejected:
                continue
            try:
                response = await self._request("POST", "/heartbeats", json={"session_ids": ids})
                answer = response.json()
            except (_Offline, ApiError, ValueError):
                continue
            if not isinstance(answer, dict):
                continue
            for sid in answer.get("unknown", []):
                self._forget(sid)
            for sid in answer.get("kill", []):
                self._kill(sid)

    # -- kills from the stream -------------------------------------------------

    async def _kill_loop(self) -> None:
        assert self._follower is not None

        def opened() -> None:
            self._came_back()
            self._dirty.set()

        await self._follower.run(self._on_stream_event, on_open=opened, on_error=self._went_offline)

    def _on_stream_event(self, event: StreamEvent) -> None:
        assert self._follower is not None
        sessions = event.sessions
        if event.type == "session-deleted":
            # Deleted while alive (cleaned up while we were suspended, or
            # deleted by hand): register again.
            for session in sessions:
                self._forget(str(session.get("id")))
            return
        if event.type in ("init", "refresh"):
            # Missing from the server's full list: register again. Only for
            # sessions registered before this stream was requested; a newer
            # one may simply postdate the snapshot.
            known = {str(s.get("id")) for s in sessions}
            requested_at = self._follower.requested_at
            for sid, record in list(self.records.items()):
                if sid not in known and record.registered_at < requested_at:
                    self._forget(sid)
        for session in sessions:
            if session.get("kill_requested"):
                self._kill(str(session.get("id")))

    # -- exit --------------------------------------------------------------------

    def deregister_now(self, deadline: float) -> None:
        ids = [r.session_id for r in list(self.records.values()) if r.registered]
        if not ids or self.rejected:
            return
        with SyncApi(self.url, self.token) as api:
            for sid in ids:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    api.request("DELETE", f"/sessions/{sid}", timeout_s=min(left, 1.0))
                except ApiError:
                    continue  # already gone
                except ClientError:
                    return  # the server is away: the sessions go stale instead


# --------------------------------------------------------------------------
# Direct (SQLite) backend
# --------------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=5.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(PANEL_SCHEMA)
    return conn


@contextlib.contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A short `BEGIN IMMEDIATE` transaction (several processes write the file)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _DbBackend(_Backend):
    """Sessions written straight into the server's SQLite file."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        # One thread owns the connection; blocking SQLite never runs on the loop.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sessionwatch-db")
        self._conn: sqlite3.Connection | None = None

    async def run(self) -> None:
        await asyncio.gather(self._sync_loop(), self._poll_loop())

    async def _db(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._conn is None:
                self._conn = _connect(self.path)
            return fn(self._conn)

        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except (sqlite3.Error, OSError) as error:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None
            if self._online:
                self._online = False
                log.warning("sessionwatch database %s unusable (%s); retrying", self.path, error)
            raise _Offline(str(error)) from error
        if not self._online:
            self._online = True
            log.info("sessionwatch database %s usable again", self.path)
        return result

    async def _sync(self, record: _Record) -> None:
        status, task, version, stopped = record.snapshot()
        sid = record.session_id
        if stopped:
            await self._db(lambda c: _db_delete(c, [sid]))
            del self.records[sid]
            return
        if not record.registered:
            await self._db(lambda c: _db_register(c, record, status, task))
            record.registered = True
            record.synced_version = version
        elif record.synced_version != version:
            if not await self._db(lambda c: _db_status(c, sid, status, task)):
                self._forget(sid)  # the row was cleaned up: insert it again
                return
            record.synced_version = version

    async def _poll_loop(self) -> None:
        # Kills are read every KILL_POLL_INTERVAL, heartbeats written every
        # interval, in the same short visit to the database.
        beat = _Beat()
        last_heartbeat = time.monotonic()
        while True:
            await beat.sleep(KILL_POLL_INTERVAL)
            ids = self._live_ids()
            if not ids:
                continue
            heartbeat = time.monotonic() - last_heartbeat >= self._interval()
            try:
                killed, missing = await self._db(functools.partial(_db_poll, ids=ids, heartbeat=heartbeat))
            except _Offline:
                continue
            if heartbeat:
                last_heartbeat = time.monotonic()
            for sid in missing:
                self._forget(sid)
            for sid in killed:
                self._kill(sid)

    def deregister_now(self, deadline: float) -> None:
        ids = [r.session_id for r in list(self.records.values()) if r.registered]
        if not ids:
            return
        try:
            conn = _connect(self.path)
            try:
                _db_delete(conn, ids)
            finally:
                conn.close()
        except (sqlite3.Error, OSError):
            pass  # the rows go stale and the server cleans them up


def _db_register(conn: sqlite3.Connection, record: _Record, status: str, task: str | None) -> None:
    now = time.time()
    with _write(conn):
        conn.execute(
            """
            INSERT INTO panel_sessions (id, app_name, user_id, host, pid, url, status,
                current_task, started_at, last_activity, last_heartbeat)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET
                app_name = excluded.app_name, user_id = excluded.user_id,
                host = excluded.host, pid = excluded.pid, url = excluded.url,
                status = excluded.status, current_task = excluded.current_task,
                last_activity = excluded.last_activity,
                last_heartbeat = excluded.last_heartbeat
            """,
            (record.session_id, record.app_name, record.user_id, record.host, record.pid,
             record.url, status, task, now, now, now),
        )  # fmt: skip


def _db_status(conn: sqlite3.Connection, sid: str, status: str, task: str | None) -> bool:
    now = time.time()
    with _write(conn):
        cursor = conn.execute(
            "UPDATE panel_sessions SET status = ?, current_task = ?, last_activity = ?,"
            " last_heartbeat = ? WHERE id = ?",
            (status, task, now, now, sid),
        )
    return cursor.rowcount > 0


def _db_delete(conn: sqlite3.Connection, ids: list[str]) -> None:
    with _write(conn):
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            conn.execute(f"DELETE FROM panel_sessions WHERE id IN ({marks})", chunk)


def _db_poll(
    conn: sqlite3.Connection, ids: list[str], heartbeat: bool
) -> tuple[list[str], list[str]]:
    """Refresh heartbeats if due; return (ids flagged for kill, ids missing)."""
    killed: list[str] = []
    present: set[str] = set()
    now = time.time()
    if heartbeat:
        with _write(conn):
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                conn.execute(
                    f"UPDATE panel_sessions SET last_heartbeat = ? WHERE id IN ({marks})",
                    [now, *chunk],
                )
    # A plain read: WAL readers never wait for writers.
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        for sid, kill in conn.execute(
            f"SELECT id, kill_requested FROM panel_sessions WHERE id IN ({marks})", chunk
        ):
            present.add(sid)
            if kill:
                killed.append(sid)
    missing = [sid for sid in ids if sid not in present] if heartbeat else []
    return killed, missing


# --------------------------------------------------------------------------
# The worker: one daemon thread and event loop per process
# --------------------------------------------------------------------------


class _Worker:
    _instance: _Worker | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.backends: dict[tuple[str, str], _Backend] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.thread = threading.Thread(
            target=self._run, name="sessionwatch-tracker", daemon=True
        )
        self.thread.start()

    @classmethod
    def get(cls) -> _Worker:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
                atexit.register(cls._instance.shutdown)
            return cls._instance

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the worker thread soon; never blocks, never raises."""
        with contextlib.suppress(RuntimeError):  # loop closed at exit
            self.loop.call_soon_threadsafe(fn)

    def attach(self, key: tuple[str, str], make: Callable[[], _Backend], record: _Record) -> None:
        def attach() -> None:
            backend = self.backends.get(key)
            if backend is None:
                backend = self.backends[key] = make()
                self._tasks.append(self.loop.create_task(self._guard(backend)))
            backend.attach(record)

        self.call(attach)

    def wake(self, key: tuple[str, str]) -> None:
        def wake() -> None:
            backend = self.backends.get(key)
            if backend is not None:
                backend.wake()

        self.call(wake)

    async def _guard(self, backend: _Backend) -> None:
        # A bug in a backend must never take the app down; restart it.
        while True:
            try:
                await backend.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sessionwatch tracker worker failed; restarting it")
                await asyncio.sleep(RETRY_MAX)

    def shutdown(self) -> None:
        """Stop the worker; deregister live sessions within `EXIT_BUDGET`."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + EXIT_BUDGET

        async def cancel() -> None:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(timeout=1.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=1.0)
        for backend in list(self.backends.values()):
            with contextlib.suppress(Exception):
                backend.deregister_now(deadline)


# --------------------------------------------------------------------------
# Panel touch points
# --------------------------------------------------------------------------


def _tracker_id(panel: _PanelSession | None) -> str:
    """The Panel session's own id when the server accepts it as a tracker id
    (Bokeh's generated ids, signed or not, always are); else a fresh one, as
    outside Panel (Bokeh lets a client choose its id in unsigned mode)."""
    if panel is not None and session_id_problem(panel.session_id) is None:
        return panel.session_id
    return uuid.uuid4().hex


@dataclass
class _PanelSession:
    """What the tracker needs from the Panel session it was created in."""

    session_id: str
    document: Any  # bokeh.document.Document
    user: str | None
    url: str | None


def _panel_session() -> _PanelSession | None:
    """The Panel server session being built or run, or None outside one."""
    try:
        import panel as pn
    except ImportError:
        return None
    doc = pn.state.curdoc
    context = getattr(doc, "session_context", None)
    if doc is None or context is None or not getattr(context, "id", None):
        return None
    user: str | None = None
    with contextlib.suppress(Exception):
        user = pn.state.user or None
    url: str | None = None
    with contextlib.suppress(Exception):
        request = context.request
        app_path = pn.state.app_url or ""
        if request is not None:
            url = f"{request.protocol}://{request.host}{app_path}"
    return _PanelSession(str(context.id), doc, user, url)


async def close_panel_session(session_context: Any, reason: str = KILL_CLOSE_REASON) -> bool:
    """Close every browser connection of a Panel session and destroy it.

    Runs on the Panel server's IOLoop. Panel has no public API for this
    (issue 4), so this is the least private path through bokeh:

    1. `session_context.session` (public) is the bokeh `ServerSession`;
    2. its `_subscribed_connections` and each connection's `_socket` (the
       tornado `WebSocketHandler`) are private; Panel's own
       `panel.io.document` reads the same two attributes;
    3. `WebSocketHandler.close(1001, reason)` is public tornado: the browser
       sees code 1001 and shows `pn.config.disconnect_notification`;
    4. once the connections are gone, `ServerSession.request_expiration()`
       (public) marks the session, and `ApplicationContext._cleanup_sessions`
       (private, what bokeh's own periodic cleanup job calls) destroys it at
       once instead of 17 s later: periodic callbacks stop and the
       `on_session_destroyed` hooks run.

    `tests/test_tracker.py::test_close_panel_session_private_path` fails when
    a Panel or bokeh upgrade breaks any step. Returns whether the session
    was destroyed.
    """
    deadline = time.monotonic() + 6.0
    while session_context.session is None and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # still being created (a killed id that came back)
    session = session_context.session
    if session is None or session.destroyed:
        return session is not None
    for connection in list(session._subscribed_connections):  # private, see 2.
        with contextlib.suppress(Exception):
            connection._socket.close(KILL_CLOSE_CODE, reason)  # private, see 2.
    # tornado calls on_close (which unsubscribes) when the client answers the
    # close frame, or aborts an unresponsive client after 5 s.
    deadline = time.monotonic() + 6.0
    while session.connection_count > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    session.request_expiration()
    application_context = session_context.server_context.application_context
    if application_context is None:
        return False
    # The linger argument only matters for sessions nobody asked to expire.
    await application_context._cleanup_sessions(2**62)  # private, see 4.
    return bool(session.destroyed)


def _schedule(document: Any, coroutine: Callable[[], Coroutine[Any, Any, None]]) -> bool:
    """Run `coroutine` on the Panel session's IOLoop, from any thread.

    Straight onto the IOLoop (`IOLoop.add_callback` is thread-safe; the loop
    is the public `ApplicationContext.io_loop`), not through the document:
    Panel holds the document while an async callback of the app runs, and a
    document callback would wait for it. Returns False once the session is
    gone.
    """
    try:
        context = document.session_context
        context.server_context.application_context.io_loop.add_callback(coroutine)
    except Exception:  # noqa: BLE001 - the session is already gone, whatever bokeh raises
        return False
    return True


# --------------------------------------------------------------------------
# The public face
# --------------------------------------------------------------------------


class SessionTracker:
    """Reports one Panel session to sessionwatch.

    Get one with :meth:`get_tracker`; wrap work in :meth:`task`.

    Tasks nest and overlap: the session is ``running`` while at least one
    task is active and ``idle`` when the last one ends. ``current_task`` is
    the most recently started task that is still active, so a nested task
    shows while it runs and its parent shows again after it.
    """

    _trackers: ClassVar[dict[str, SessionTracker]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()
    _killed: ClassVar[set[str]] = set()

    def __init__(
        self,
        app_name: str,
        *,
        user_id: str | None = None,
        server_url: str | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        db_path: str | os.PathLike[str] | None = None,
        token: str | None = None,
        _panel: _PanelSession | None = None,
    ) -> None:
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        self.app_name = app_name
        self._panel = _panel
        self.session_id = _tracker_id(_panel)
        self.server_url = (
            server_url or os.environ.get("SESSIONWATCH_URL") or DEFAULT_SERVER_URL
        ).rstrip("/")
        self.db_path = Path(db_path).expanduser().resolve() if db_path is not None else None
        token = token if token is not None else os.environ.get("SESSIONWATCH_TOKEN") or None
        self._active: dict[int, str] = {}  # task number -> name, in start order
        self._numbers = itertools.count()
        self._record = _Record(
            session_id=self.session_id,
            app_name=app_name,
            user_id=user_id or (_panel.user if _panel else None),
            host=socket.gethostname(),
            pid=os.getpid(),
            url=_panel.url if _panel else None,
            heartbeat_interval=heartbeat_interval,
            on_kill=self._on_kill,
        )
        self._make: Callable[[], _Backend]
        if self.db_path is not None:
            path = self.db_path
            self._key = ("db", str(path))
            self._make = lambda: _DbBackend(path)
        else:
            url = self.server_url
            self._key = ("http", f"{url} {token or ''}")
            self._make = lambda: _HttpBackend(url, token)

    @classmethod
    def get_tracker(
        cls,
        app_name: str,
        user_id: str | None = None,
        server_url: str | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        db_path: str | os.PathLike[str] | None = None,
    ) -> SessionTracker:
        """The tracker of the current Panel session, created on first use.

        Call it while the session is built (in the app's script or function).
        Outside a Panel server session it returns one tracker per `app_name`
        for the process.

        `server_url` defaults to ``$SESSIONWATCH_URL``, else
        ``http://127.0.0.1:8765``; ``$SESSIONWATCH_TOKEN`` is sent as a bearer
        token. With `db_path` the tracker writes that SQLite file (the
        server's ``--db``) instead of talking to a server.

        >>> tracker = SessionTracker.get_tracker(app_name="reports")
        >>> with tracker.task("Generating report"):
        ...     pass
        """
        panel = _panel_session()
        key = panel.session_id if panel else f"process:{app_name}"
        with cls._registry_lock:
            tracker = cls._trackers.get(key)
            if tracker is not None:
                return tracker
            tracker = cls(
                app_name,
                user_id=user_id,
                server_url=server_url,
                heartbeat_interval=heartbeat_interval,
                db_path=db_path,
                _panel=panel,
            )
            cls._trackers[key] = tracker
            killed = tracker.session_id in cls._killed
        tracker._key_in_registry = key
        if killed and panel is not None:
            # A killed session came back under its id (bokeh recreates the
            # session for a reconnecting browser): close it again, untracked.
            tracker.stop()
            context = panel.document.session_context

            async def close() -> None:
                await close_panel_session(context)

            _schedule(panel.document, close)
            return tracker
        if panel is not None:
            import panel as pn

            pn.state.on_session_destroyed(tracker._on_session_destroyed)
        _Worker.get().attach(tracker._key, tracker._make, tracker._record)
        return tracker

    _key_in_registry: str | None = None

    # -- status --------------------------------------------------------------

    @property
    def status(self) -> str:
        """``"running"`` while a task is active, else ``"idle"``."""
        return self._record.status

    @property
    def current_task(self) -> str | None:
        return self._record.current_task

    @property
    def stopped(self) -> bool:
        return self._record.stopped

    @contextlib.contextmanager
    def task(self, name: str) -> Iterator[None]:
        """Mark the session running `name` for the duration of the block.

        Returns to idle afterwards, also when the block raises. Safe to use
        from any thread; never waits for the network.
        """
        number = next(self._numbers)
        self._update(lambda: self._active.__setitem__(number, name))
        try:
            yield
        finally:
            self._update(lambda: self._active.pop(number, None))

    def _update(self, change: Callable[[], object]) -> None:
        record = self._record
        with record.lock:
            change()
            if self._active:
                status, task = "running", list(self._active.values())[-1]
            else:
                status, task = "idle", None
            if (status, task) == (record.status, record.current_task) or record.stopped:
                return
            record.status, record.current_task = status, task
            record.version += 1
        _Worker.get().wake(self._key)

    def stop(self) -> None:
        """End tracking for this session: deregister it (queued, never blocks)."""
        record = self._record
        with self._registry_lock:
            if self._key_in_registry and self._trackers.get(self._key_in_registry) is self:
                del self._trackers[self._key_in_registry]
        with record.lock:
            if record.stopped:
                return
            record.stopped = True
        _Worker.get().wake(self._key)

    # -- Panel lifecycle ---------------------------------------------------------

    def _on_session_destroyed(self, session_context: Any) -> None:
        self.stop()

    def _on_kill(self) -> None:
        """Called on the worker thread when the server asks for a kill."""
        panel = self._panel
        if panel is None:
            self.stop()
            return
        with self._registry_lock:
            self._killed.add(self.session_id)
        context = panel.document.session_context

        async def close() -> None:
            try:
                if context is not None:
                    await close_panel_session(context)
            finally:
                # Normally on_session_destroyed got here first.
                self.stop()

        if not _schedule(panel.document, close):
            self.stop()

    def __repr__(self) -> str:
        return (
            f"SessionTracker(app_name={self.app_name!r}, session_id={self.session_id!r}, "
            f"status={self.status!r})"
        )

