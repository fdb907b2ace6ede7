"""The monitor: owns the store, the Claude index, the Panel registry and the hub,
and turns file changes, tracker calls and the passing of time into events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Callable
from pathlib import Path
from typing import Any

import anyio

from sessionwatch.config import Settings
from sessionwatch.hub import Hub
from sessionwatch.index import ClaudeIndex
from sessionwatch.metrics import Metrics
from sessionwatch.panel import PanelRegistry
from sessionwatch.prices import PriceTable
from sessionwatch.store import Store
from sessionwatch.watcher import watching

log = logging.getLogger(__name__)

#: How often time-driven changes (idle, stale, cleanup) are looked for.
TICK_S = 1.0

ChangeSource = Callable[[anyio.Event], AsyncIterable[set[Path]]]


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
        self._store: Store | None = None
        self._panel: PanelRegistry | None = None
        self._lock = anyio.Lock()
        self._data_version = 0
        self.ready = anyio.Event()
        self.stop_event = anyio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def store(self) -> Store:
        assert self._store is not None, "monitor not started"
        return self._store

    @property
    def panel(self) -> PanelRegistry:
        assert self._panel is not None, "monitor not started"
        return self._panel

    # --- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store and load the state it holds, then catch up with the disk."""
        self._loop = asyncio.get_running_loop()
        self._store = await Store.open(self.settings.db)
        self._panel = PanelRegistry(
            self._store,
            stale_after_s=self.settings.stale_after_s,
            cleanup_after_s=self.settings.cleanup_after_s,
        )
        self.index.load(await self._store.load_transcripts())
        await self._panel.load()
        self._data_version = await self._store.data_version()
        await anyio.to_thread.run_sync(self.index.scan)
        await self._persist()
        self.hub.load(self._all_sessions(time.time()).values())
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
                if self._changes is not None:
                    async for paths in self._changes(self.stop_event):
                        await self.handle(paths)
                else:
                    s = self.settings
                    async with watching(
                        s.projects_dir,
                        s.db,
                        debounce_ms=s.debounce_ms,
                        step_ms=s.step_ms,
                        stop_event=self.stop_event,
                    ) as batches:
                        async for paths in batches:
                            await self.handle(paths)
                return
            except Exception:  # noqa: BLE001 - the watcher must never die
                log.exception("watcher failed; restarting it in 1 s")
                await anyio.sleep(1)

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
                self.hub.apply({sid: self.index.session(sid, now) for sid in touched})
            if db_changed:
                await self._reload_panel()

    def _update_paths(self, paths: list[Path]) -> set[str]:
        touched: set[str] = set()
        for p in paths:
            if p.suffix != ".jsonl" and p.name != "sessions-index.json" and p.is_dir():
                touched |= self.index.scan_dir(p)
            else:
                touched |= self.index.update(p)
        return touched

    async def _persist(self) -> None:
        rows, removed = self.index.take_changes()
        await self.store.save_transcripts(rows, removed)

    async def _reload_panel(self) -> None:
        version = await self.store.data_version()
        if version == self._data_version:
            return  # only our own writes: the hub already has them
        self._data_version = version
        await self.panel.load()
        self._publish_panel()

    def _publish_panel(self, ids: list[str] | None = None) -> None:
        now = time.time()
        current = self.panel.sessions(now)
        if ids is None:
            changes: dict[str, dict[str, Any] | None] = dict(current)
            for sid, s in self.hub.sessions.items():
                if s["source"] == "panel" and sid not in current:
                    changes[sid] = None
        else:
            changes = {i: current.get(i) for i in ids}
        self.hub.apply(changes)

    async def rescan(self, *, publish_refresh: bool = True) -> None:
        """Read every transcript again from where it was; publish ``refresh``."""
        async with self._lock:
            await anyio.to_thread.run_sync(self.index.scan)
            await self._persist()
            await self.panel.load()
            self._data_version = await self.store.data_version()
            sessions = self._all_sessions(time.time())
            if publish_refresh:
                self.hub.refresh(sessions.values())
            else:
                changes: dict[str, dict[str, Any] | None] = dict(sessions)
                for sid in self.hub.sessions:
                    changes.setdefault(sid, None)
                self.hub.apply(changes)

    async def tick(self) -> None:
        """Time-driven changes: Claude sessions going idle, Panel ones going stale
        or being cleaned up; and the batched heartbeat write."""
        now = time.time()
        async with self._lock:
            changes: dict[str, dict[str, Any] | None] = {}
            if self.index.partial:
                for sid in await anyio.to_thread.run_sync(self.index.settle, now):
                    changes[sid] = self.index.session(sid, now)
                await self._persist()
            for sid, s in self.hub.sessions.items():
                if s["source"] == "claude" and sid not in changes:
                    if self.index.status(sid, now) != s["status"]:
                        changes[sid] = self.index.session(sid, now)
            panel = self.panel
            for sid, row in panel.rows.items():
                shown = self.hub.sessions.get(sid)
                if shown is None or shown["is_stale"] != panel.is_stale(row, now):
                    changes[sid] = panel.session(row, now)
            doomed = panel.stale_ids(self.settings.cleanup_after_s, now)
            if doomed:
                for sid in await panel.delete(doomed):
                    changes[sid] = None
            await panel.flush_heartbeats()
            if changes:
                self.hub.apply(changes)

    def _all_sessions(self, now: float) -> dict[str, dict[str, Any]]:
        sessions: dict[str, dict[str, Any]] = {}
        for sid in self.index.session_ids():
            s = self.index.session(sid, now)
            if s is not None:
                sessions[sid] = s
        sessions.update(self.panel.sessions(now))
        return sessions

    # --- tracker operations (used by the API) ---------------------------------------------

    async def register(self, app_name: str, **fields: Any) -> bool:
        async with self._lock:
            new = await self.panel.register(app_name, **fields)
            self._publish_panel([fields["session_id"]])
            return new

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
            self._publish_panel(revived)
        return kill, unknown

    async def set_status(self, sid: str, status: str, current_task: str | None) -> bool:
        async with self._lock:
            ok = await self.panel.set_status(sid, status, current_task)
            if ok:
                self._publish_panel([sid])
            return ok

    async def kill(self, sid: str, by: str | None) -> bool:
        async with self._lock:
            ok = await self.panel.kill(sid, by)
            if ok:
                self._publish_panel([sid])
            return ok

    async def delete(self, ids: list[str]) -> list[str]:
        async with self._lock:
            gone = await self.panel.delete(ids)
            self.hub.apply({i: None for i in gone})
            return gone

    async def delete_stale(self, older_than_s: float) -> int:
        async with self._lock:
            gone = await self.panel.delete(self.panel.stale_ids(older_than_s, time.time()))
            self.hub.apply({i: None for i in gone})
            return len(gone)
