"""The tracker's worker: one daemon thread and event loop per process.

Panel callbacks never touch the network or the database: a
:class:`~sessionwatch.integrations.panel.tracker.SessionTracker` records what
changed in its :class:`Record` and wakes the worker. On the worker thread each
:class:`Backend` (one per server URL and token, or per database file; see
:mod:`.backends`)

- syncs records in bursts: the latest state wins, so a burst of changes
  costs one request (:meth:`Backend._sync_loop`);
- retries with backoff (``RETRY_MIN`` to ``RETRY_MAX``) while the server or
  database is away, and registers again what the server forgot;
- sends one batched heartbeat per interval for every session of the process
  (:class:`Beat`, the shortest interval any session asked for);
- closes a session when the server asks (``Backend._kill``).

At interpreter exit :meth:`Worker.shutdown` deregisters the live sessions
within ``EXIT_BUDGET`` seconds.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "EXIT_BUDGET",
    "RETRY_MAX",
    "RETRY_MIN",
    "Backend",
    "Beat",
    "Offline",
    "Record",
    "Worker",
    "wait",
]

log = logging.getLogger("sessionwatch.tracker")

#: Seconds between batched heartbeats; well inside the server's default
#: `--stale-after-s` of 120.
DEFAULT_HEARTBEAT_INTERVAL = 15.0
RETRY_MIN = 0.5
RETRY_MAX = 5.0
#: Time budget for deregistering at interpreter exit.
EXIT_BUDGET = 2.0


@dataclass
class Record:
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
        """What registering says of the session: the body of ``POST /sessions``,
        and the row direct mode writes."""
        body: dict[str, Any] = {
            "app_name": self.app_name,
            "session_id": self.session_id,
            "pid": self.pid,
        }
        for key, value in (("user_id", self.user_id), ("host", self.host), ("url", self.url)):
            if value is not None:
                body[key] = value
        return body


class Offline(Exception):
    """The server or database cannot be used right now."""


async def wait(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` at most `timeout` seconds; say whether it was set."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


class Backend:
    """What both backends share: their sessions, the wake-up, kills.

    Everything here runs on the worker thread.
    """

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self._dirty = asyncio.Event()
        self._online = True  # only for logging each outage once

    def attach(self, record: Record) -> None:
        self.records[record.session_id] = record
        self._dirty.set()

    def wake(self) -> None:
        self._dirty.set()

    async def run(self) -> None:
        raise NotImplementedError

    def deregister_now(self, deadline: float) -> None:
        """Synchronously deregister every live session (atexit)."""
        raise NotImplementedError

    async def _sync(self, record: Record) -> None:
        """Bring the server's copy of `record` up to date; raise Offline."""
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
            except Offline:
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


class Beat:
    """A fixed-rate clock: ticks at start + k * interval, never drifting."""

    def __init__(self) -> None:
        self._next = time.monotonic()

    async def sleep(self, interval: float) -> None:
        self._next += interval
        now = time.monotonic()
        if self._next < now:  # we fell behind (suspended laptop): restart the grid
            self._next = now + interval
        await asyncio.sleep(self._next - now)


class Worker:
    """The one worker thread and event loop of the process, and its backends."""

    _instance: Worker | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.backends: dict[tuple[str, str], Backend] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.thread = threading.Thread(
            target=self._run, name="sessionwatch-tracker", daemon=True
        )
        self.thread.start()

    @classmethod
    def get(cls) -> Worker:
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

    def attach(self, key: tuple[str, str], make: Callable[[], Backend], record: Record) -> None:
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

    async def _guard(self, backend: Backend) -> None:
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
