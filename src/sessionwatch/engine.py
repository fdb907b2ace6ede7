"""The monitor: owns the store, the Claude index, the Panel registry and the hub,
and turns file changes, tracker calls and the passing of time into events.

Robustness: an unexpected error while reading one transcript is logged (once
per file, with its traceback), counted in ``sessionwatch_monitor_errors_total``
and skipped; every other file of the batch is still read. Anything else that
breaks the watcher restarts it; the new watch sends the projects dir once
it is up (sources/watcher.py), and the rescan that follows catches up with what
changed meanwhile.

One id, one session: a Claude session wins over a Panel row with the same id.
Registration refuses any id the Claude index knows (409), and a Panel row
whose id a Claude transcript claims later stays in the registry, hidden:
Panel writes never replace or delete a session of another source.

Every change reaches the hub through ``await hub.update()`` (or ``replace()``
for ``POST /refresh``): the hub diffs it, runs the change's store writes (a
tracker write's, ``writes=``) and appends the batch's events to the event
log in one transaction (their ids), then applies and sends them. The clock
task trims the log every ``TRIM_EVERY_S``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Callable
from pathlib import Path
from typing import Any

import anyio
from prometheus_client import Counter

from sessionwatch.config import Settings
from sessionwatch.hub.core import Hub
from sessionwatch.sources.claude.index import ClaudeIndex
from sessionwatch.metrics import Metrics
from sessionwatch.sources.panel.registry import PanelRegistry
from sessionwatch.prices import PriceTable
from sessionwatch.store.base import Database, EventLog, Write
from sessionwatch.store.sqlite import Store
from sessionwatch.sources.watcher import watching

log = logging.getLogger(__name__)

#: How often time-driven changes (idle, stale, cleanup) are looked for.
TICK_S = 1.0
#: How often the clock trims the event log to its retention (hub/log.py).
TRIM_EVERY_S = 10.0

ChangeSource = Callable[[anyio.Event], AsyncIterable[set[Path]]]

#: Pause before a failed watcher starts again.
RESTART_S = 1.0


class IdTaken(Exception):
    """A tracker tried to register an id that belongs to a Claude session."""


class Monitor:
    def __init__(self, settings: Settings, *, changes: ChangeSource | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.prices = (
            PriceTable.from_file(settings.prices) if settings.prices else PriceTable.embedded()
        )
        self.hub = Hub(
            buffer_size=settings.replay_buffer,
            queue_size=settings.subscriber_queue,
            metrics=self.metrics,
        )
        self.index = ClaudeIndex(
            settings.projects_dir,
            self.prices,
            idle_after_s=settings.idle_after_s,
            metrics=self.metrics,
        )
        self._changes = changes
        self.errors = Counter(
            "sessionwatch_monitor_errors",
            "Unexpected errors while reading transcripts or applying changes (each skipped)",
            ["where"],
            registry=self.metrics.registry,
        )
        self._failed_paths: set[str] = set()
        self._store: Database | None = None
        self._log: EventLog | None = None
        self._trimmed = 0.0
        self._panel: PanelRegistry | None = None
        self._lock = anyio.Lock()
        self._data_version = 0
        self.ready = anyio.Event()
        self.stop_event = anyio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def store(self) -> Database:
        assert self._store is not None, "monitor not started"
        return self._store

    @property
    def log(self) -> EventLog:
        assert self._log is not None, "monitor not started"
        return self._log

    @property
    def panel(self) -> PanelRegistry:
        assert self._panel is not None, "monitor not started"
        return self._panel

    # --- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store and load the state it holds, then catch up with the disk."""
        self._loop = asyncio.get_running_loop()
        self._store = await Store.open(self.settings.db)
        try:
            self._panel = PanelRegistry(
                self._store,
                stale_after_s=self.settings.stale_after_s,
                cleanup_after_s=self.settings.cleanup_after_s,
            )
            self.index.load(await self._store.load_transcripts())
            await self._panel.load()
            self._data_version = await self._store.data_version()
            # Event ids from the store's log from here on (this run's start row first).
            self._log = self._store.event_log()
            await self.hub.attach(self._log)
            await anyio.to_thread.run_sync(self._scan)
            await self._persist()
            self.hub.load(self._all_sessions(time.time()).values())
        except BaseException:
            await self._store.close()  # no worker thread left to hold the process
            raise
        self.ready.set()

    def request_shutdown(self) -> None:
        """End every open stream now; safe from a signal handler or another thread.

        The server waits for open responses before it shuts down, and an event
        stream never ends by itself: without this, Ctrl-C would hang until the
        graceful-shutdown timeout.
        """
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.hub.close_all)

    async def close(self) -> None:
        self.stop_event.set()
        self.hub.close_all()
        if self._store is not None:
            try:
                await self._panel.flush_heartbeats() if self._panel else None
            finally:
                await self._store.close()

    async def run(self) -> None:
        """Background work until cancelled: the watcher, the clock."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch)
            tg.start_soon(self._clock)
            tg.start_soon(self._keepalive)

    async def _watch(self) -> None:
        while not self.stop_event.is_set():
            try:
                await self._watch_once()
                if self._changes is not None or self.stop_event.is_set():
                    return  # an injected source that ended (tests), or shutdown
                raise RuntimeError("the filesystem watcher ended by itself")
            except Exception:  # noqa: BLE001 - the watcher must never die
                self.errors.labels("watcher").inc()
                log.exception("watcher failed; restarting it in %g s", RESTART_S)
                await anyio.sleep(RESTART_S)

    async def _watch_once(self) -> None:
        # Each run gets its own stop event: the watcher sets the one it is
        # given when it ends, and a failed run must not stop the next one.
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def relay_stop() -> None:
                await self.stop_event.wait()
                stop.set()

            tg.start_soon(relay_stop)
            if self._changes is not None:
                async for paths in self._changes(stop):
                    await self.handle(paths)
            else:
                s = self.settings
                async with watching(
                    s.projects_dir,
                    s.db,
                    debounce_ms=s.debounce_ms,
                    step_ms=s.step_ms,
                    stop_event=stop,
                ) as batches:
                    async for paths in batches:
                        await self.handle(paths)
            tg.cancel_scope.cancel()

    async def _clock(self) -> None:
        while True:
            await anyio.sleep(TICK_S)
            try:
                await self.tick()
            except Exception:  # noqa: BLE001
                log.exception("periodic update failed")

    async def _keepalive(self) -> None:
        # One timer for the whole server: every half period, subscribers silent
        # for a whole period get a keepalive.
        period = self.settings.keepalive_s
        while True:
            await anyio.sleep(period / 2)
            self.hub.keepalive(period)

    # --- changes --------------------------------------------------------------------

    async def handle(self, paths: set[Path]) -> None:
        """Apply one batch of changed paths (one debounce window) to the hub."""
        db_names = {self.settings.db.name, self.settings.db.name + "-wal"}
        db_dir = self.settings.db.parent.resolve()
        transcript_paths: list[Path] = []
        db_changed = False
        root = self.settings.projects_dir
        for p in paths:
            if p.name in db_names and p.parent.resolve() == db_dir:
                db_changed = True
            elif p == root:
                transcript_paths = []
                await self.rescan(publish_refresh=False)
            else:
                transcript_paths.append(p)
        async with self._lock:
            if transcript_paths:
                touched = await anyio.to_thread.run_sync(self._update_paths, transcript_paths)
                await self._persist()
                now = time.time()
                await self.hub.update({sid: self._view(sid, now) for sid in touched})
            if db_changed:
                await self._reload_panel()

    def _update_paths(self, paths: list[Path]) -> set[str]:
        touched: set[str] = set()
        for p in paths:
            if p.suffix != ".jsonl" and p.name != "sessions-index.json" and p.is_dir():
                try:
                    touched |= self.index.scan_dir(p)
                except Exception:  # noqa: BLE001 - one bad file: read the others one by one
                    self._failed("read", str(p))
                    for f in self._transcripts_under(p):
                        touched |= self._update_one(f)
            else:
                touched |= self._update_one(p)
        return touched

    def _update_one(self, path: Path) -> set[str]:
        try:
            touched = self.index.update(path)
        except Exception:  # noqa: BLE001 - whatever one file holds, the others go on
            self._failed("read", str(path))
            return set()
        self._failed_paths.discard(str(path))
        return touched

    @staticmethod
    def _transcripts_under(directory: Path) -> list[Path]:
        try:
            return sorted(
                p for p in directory.rglob("*")
                if p.name.endswith(".jsonl") or p.name == "sessions-index.json"
            )
        except OSError:
            return []

    def _scan(self) -> set[str]:
        """``index.scan``; if it fails, every file again one by one, skipping the bad."""
        try:
            return self.index.scan()
        except Exception:  # noqa: BLE001
            self._failed("scan", None)
        touched: set[str] = set()
        for path in self.index.discover():
            touched |= self._update_one(path)
        return touched

    def _failed(self, where: str, path: str | None) -> None:
        """Count an unexpected error; log its traceback once per file."""
        self.errors.labels(where).inc()
        if path is None:
            log.exception("unexpected error (%s); reading file by file", where)
        elif path not in self._failed_paths:
            self._failed_paths.add(path)
            log.exception("%s: unexpected error, file skipped until it changes again", path)
        else:
            log.debug("%s: unexpected error again", path, exc_info=True)

    def _claude(self, sid: str, now: float) -> dict[str, Any] | None:
        try:
            return self.index.session(sid, now)
        except Exception:  # noqa: BLE001 - one broken session must not hide the others
            self._failed("session", sid)
            return None

    def _view(self, sid: str, now: float) -> dict[str, Any] | None:
        """What the hub shows for ``sid``: the Claude session, else the Panel row."""
        claude = self._claude(sid, now)
        if claude is not None:
            return claude
        return self.panel.view(sid, now)

    def claude_knows(self, sid: str) -> bool:
        """Whether any transcript is named by ``sid`` (timestamped or not yet)."""
        shown = self.hub.sessions.get(sid)
        return sid in self.index.members or (shown is not None and shown["source"] != "panel")

    async def _persist(self) -> None:
        rows, removed = self.index.take_changes()
        await self.store.save_transcripts(rows, removed)

    async def _reload_panel(self) -> None:
        version = await self.store.data_version()
        if version == self._data_version:
            return  # only our own writes: the hub already has them
        self._data_version = version
        await self.panel.load()
        await self._publish_panel()

    async def _publish_panel(self, ids: list[str] | None = None, writes: list[Write] | None = None) -> None:
        """Show the Panel rows ``ids`` as they are now (all of them if None);
        ``writes``: the store statements of the change, run with its events.

        Per write this is one row's snapshot: never every session. Ids a
        session of another source shows are left alone.
        """
        now = time.time()
        changes: dict[str, dict[str, Any] | None] = {}
        hub = self.hub.sessions
        if ids is None:
            ids = list(self.panel.rows)
            for sid, s in hub.items():
                if s["source"] == "panel" and sid not in self.panel.rows:
                    changes[sid] = None
        for sid in ids:
            shown = hub.get(sid)
            if shown is None or shown["source"] == "panel":
                changes[sid] = self.panel.view(sid, now)
        await self.hub.update(changes, writes=writes or ())

    async def rescan(self, *, publish_refresh: bool = True) -> None:
        """Read every transcript again from where it was; publish ``refresh``."""
        async with self._lock:
            await anyio.to_thread.run_sync(self._scan)
            await self._persist()
            await self.panel.load()
            self._data_version = await self.store.data_version()
            sessions = self._all_sessions(time.time())
            if publish_refresh:
                await self.hub.replace(sessions.values())
            else:
                changes: dict[str, dict[str, Any] | None] = dict(sessions)
                for sid in self.hub.sessions:
                    changes.setdefault(sid, None)
                await self.hub.update(changes)

    async def tick(self) -> None:
        """Time-driven changes: Claude sessions going idle, Panel ones going stale
        or being cleaned up; and the batched heartbeat write."""
        now = time.time()
        async with self._lock:
            changes: dict[str, dict[str, Any] | None] = {}
            if self.index.partial:
                for sid in await anyio.to_thread.run_sync(self.index.settle, now):
                    changes[sid] = self._view(sid, now)
                await self._persist()
            for sid, s in self.hub.sessions.items():
                if s["source"] == "claude" and sid not in changes:
                    if self.index.status(sid, now) != s["status"]:
                        changes[sid] = self._view(sid, now)
            panel = self.panel
            for sid, row in panel.rows.items():
                shown = self.hub.sessions.get(sid)
                if shown is None or (
                    shown["source"] == "panel" and shown["is_stale"] != panel.is_stale(row, now)
                ):
                    if sid not in changes:
                        changes[sid] = panel.session(row, now)
            gone, writes = panel.deleting(panel.stale_ids(self.settings.cleanup_after_s, now))
            for sid in gone:
                changes[sid] = self._after_panel_delete(sid, now)
            await panel.flush_heartbeats()
            await self.hub.update(changes, writes=writes)
            panel.forget(gone)
        if now - self._trimmed >= TRIM_EVERY_S:
            self._trimmed = now
            await self.log.trim(now)

    def _all_sessions(self, now: float) -> dict[str, dict[str, Any]]:
        sessions: dict[str, dict[str, Any]] = {}
        for sid in self.index.session_ids():
            s = self._claude(sid, now)
            if s is not None:
                sessions[sid] = s
        for sid, row in self.panel.rows.items():
            if sid not in sessions:  # a Claude session wins its id
                sessions[sid] = self.panel.session(row, now)
        return sessions

    def _after_panel_delete(self, sid: str, now: float) -> dict[str, Any] | None:
        """What to show for ``sid`` once its Panel row is gone: a Claude session
        with that id stays."""
        shown = self.hub.sessions.get(sid)
        if shown is not None and shown["source"] != "panel":
            return shown
        return None

    # --- tracker operations (used by the API) ---------------------------------------------

    async def register(self, app_name: str, **fields: Any) -> bool:
        """Register a tracker session; True if new. IdTaken if a Claude
        session (or a transcript not yet timestamped) has the id."""
        sid = fields["session_id"]
        async with self._lock:
            if self.claude_knows(sid):
                raise IdTaken(sid)
            return await self.panel.register(
                app_name, **fields, publish=lambda writes: self._publish_panel([sid], writes)
            )

    async def heartbeat(self, ids: list[str]) -> tuple[list[str], list[str]]:
        """Record heartbeats; returns (ids to kill, unknown ids). No event unless a
        stale session came back."""
        kill: list[str] = []
        unknown: list[str] = []
        revived: list[str] = []
        for sid in ids:
            flag = self.panel.heartbeat(sid)
            if flag is None:
                unknown.append(sid)
                continue
            if flag:
                kill.append(sid)
            s = self.hub.sessions.get(sid)
            if s is not None and s["is_stale"]:
                revived.append(sid)
        self.metrics.heartbeats.inc(len(ids))
        if revived:
            await self._publish_panel(revived)
        return kill, unknown

    async def set_status(self, sid: str, status: str, current_task: str | None) -> bool:
        async with self._lock:
            ok = await self.panel.set_status(
                sid, status, current_task, publish=lambda writes: self._publish_panel([sid], writes)
            )
            if not ok:
                await self._publish_panel([sid])  # gone (deleted by another process)
            return ok

    async def kill(self, sid: str, by: str | None) -> bool:
        async with self._lock:
            return await self.panel.kill(sid, by, publish=lambda writes: self._publish_panel([sid], writes))

    async def delete(self, ids: list[str]) -> list[str]:
        async with self._lock:
            gone, writes = self.panel.deleting(ids)
            now = time.time()
            await self.hub.update({i: self._after_panel_delete(i, now) for i in gone}, writes=writes)
            self.panel.forget(gone)
            return gone

    async def delete_stale(self, older_than_s: float) -> int:
        async with self._lock:
            now = time.time()
            gone, writes = self.panel.deleting(self.panel.stale_ids(older_than_s, now))
            await self.hub.update({i: self._after_panel_delete(i, now) for i in gone}, writes=writes)
            self.panel.forget(gone)
            return len(gone)
