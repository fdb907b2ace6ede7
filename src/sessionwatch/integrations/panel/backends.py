"""Where the tracker's worker reports sessions: a server, or its database.

- :class:`HttpBackend`: the server's REST API through
  :mod:`sessionwatch.clients` (the one HTTP client, its error vocabulary and
  the ``/stream`` follower every sessionwatch client uses). Kills come from
  ``GET /stream?source=panel``, with the heartbeat answer as the fallback
  while the stream is down. A server that rejects the token (401/403) is
  not hammered: one warning, no heartbeats, one retry a minute
  (``AUTH_RETRY_S``) until the token is accepted again.
- :class:`DbBackend` (direct mode, ``db_path=...``): the server's SQLite file
  through :mod:`sessionwatch.store.sqlite_sync`; kills are read every
  ``KILL_POLL_INTERVAL`` seconds.

Both run on the worker thread (:mod:`.worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx

from sessionwatch.clients.follow import AUTH_RETRY_S, Follower, StreamEvent
from sessionwatch.clients import ApiError, AsyncApi, AuthError, ClientError, ServerUnreachable, SyncApi
from sessionwatch.integrations.panel.worker import Backend, Beat, Offline, Record, wait
from sessionwatch.store import sqlite_sync

__all__ = ["KILL_POLL_INTERVAL", "DbBackend", "HttpBackend"]

log = logging.getLogger("sessionwatch.tracker")

#: Direct mode reads `kill_requested` this often (the 2 s kill budget, issue 4).
KILL_POLL_INTERVAL = 0.5

T = TypeVar("T")


class HttpBackend(Backend):
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
        """A successful answer; raise Offline (away, token rejected) or ApiError."""
        assert self._api is not None
        try:
            response = await self._api.request(method, path, json=json)
        except (AuthError, ServerUnreachable) as error:
            self._went_offline(error)
            raise Offline(str(error)) from error
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
            await wait(self._back, AUTH_RETRY_S)
            return
        # A working stream or heartbeat cuts the pause short.
        await wait(self._back, seconds)

    async def _sync(self, record: Record) -> None:
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
                raise Offline("registration refused") from error
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
        beat = Beat()
        while True:
            await beat.sleep(self._interval())
            ids = self._live_ids()
            if not ids or self.rejected:
                continue
            try:
                response = await self._request("POST", "/heartbeats", json={"session_ids": ids})
                answer = response.json()
            except (Offline, ApiError, ValueError):
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


class DbBackend(Backend):
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
                self._conn = sqlite_sync.connect(self.path)
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
            raise Offline(str(error)) from error
        if not self._online:
            self._online = True
            log.info("sessionwatch database %s usable again", self.path)
        return result

    async def _sync(self, record: Record) -> None:
        status, task, version, stopped = record.snapshot()
        sid = record.session_id
        if stopped:
            await self._db(lambda c: sqlite_sync.delete(c, [sid]))
            del self.records[sid]
            return
        if not record.registered:
            await self._db(lambda c: sqlite_sync.register(c, record.registration(), status, task))
            record.registered = True
            record.synced_version = version
        elif record.synced_version != version:
            if not await self._db(lambda c: sqlite_sync.set_status(c, sid, status, task)):
                self._forget(sid)  # the row was cleaned up: insert it again
                return
            record.synced_version = version

    async def _poll_loop(self) -> None:
        # Kills are read every KILL_POLL_INTERVAL, heartbeats written every
        # interval, in the same short visit to the database.
        beat = Beat()
        last_heartbeat = time.monotonic()
        while True:
            await beat.sleep(KILL_POLL_INTERVAL)
            ids = self._live_ids()
            if not ids:
                continue
            heartbeat = time.monotonic() - last_heartbeat >= self._interval()
            try:
                killed, missing = await self._db(functools.partial(sqlite_sync.poll, ids=ids, heartbeat=heartbeat))
            except Offline:
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
            conn = sqlite_sync.connect(self.path)
            try:
                sqlite_sync.delete(conn, ids)
            finally:
                conn.close()
        except (sqlite3.Error, OSError):
            pass  # the rows go stale and the server cleans them up
