"""The engine: owns the store, the sources (the Claude index, the hooks, the
live registry, the Panel registry, and whatever ``add_source`` plugs in,
such as control/), the hub and the clock, and turns file changes, hook
events, tracker calls and the passing of time into events.

One task applies every change. The watcher's batches, the tracker calls
(register, status, kill, delete, delete-stale, a heartbeat that revives a
stale session), ``POST /refresh`` and the clock's ticks are *commands* sent
into one memory object stream; the applying task (started by :meth:`open`,
ended by :meth:`close`) runs them one after the other and hands each one's
changes to the hub; the sender awaits its command's result. No lock: two
commands never interleave, whatever they await (the store, a worker
thread). An error in a command goes to its sender (``IdTaken`` → 409) and
the applying task goes on with the next one.

Heartbeats take the same path. A heartbeat only moves the in-memory
``last_heartbeat`` (the next tick writes the batch) and, for a session shown
stale, publishes its revival; answered outside the stream (as before), one
could land while a tick awaits the store between deciding a session is
stale and publishing it, see the session still fresh, and leave it shown
stale after its heartbeat until the next tick
(tests/test_engine.py::test_heartbeat_during_a_tick_that_finds_it_stale_revives_it).
As a command it is a few dict lookups in the applying task, queued behind at
most one batch (an incremental read; the cold scan happens before serving).

One row per id (facets.py): each source gives its facet of an id and
``RULES.project`` makes the Session. A Claude session wins over a Panel row
with the same id: registration refuses any id the Claude index holds
(409), and a Panel row whose id a transcript claims later stays in the
registry, hidden: Panel writes never replace or delete a session of another
source.

Time comes from ``self.clock`` (:class:`Clock`): the idle rule, staleness,
cleanup, event timestamps and the ticks themselves; tests give a fake one.

Robustness: an unexpected error while reading one transcript is logged (once
per file, with its traceback), counted in ``sessionwatch_monitor_errors_total``
and skipped; every other file of the batch is still read. Anything else that
breaks the watcher restarts it; the new watch sends the projects dir once
it is up (sources/watcher.py), and the rescan that follows catches up with what
changed meanwhile.

Replicas (``--db postgresql://...``): every replica's hub follows the one
shared event log (hub/core.py). A NOTIFY from the database marks this
replica behind; before its next command the applying task reads the other
replicas' events (``Hub.follow``) and reloads the Panel rows they name from
the database (the registry mirrors shared rows); a command naming a Panel id
this replica does not know reads the log first too, and every tick follows
in case a notification was lost. Sessions of other replicas' own sources
(their transcripts, hooks, managed processes) are *remote* here: shown as
their events say, never projected or deleted by this replica. Clock-driven
changes (stale, cleanup, the log's and the managed logs' retention) run on
the replica holding the database's advisory lock (``PgStore.lead``), taken
over by another replica's tick when its holder dies; the leader reads every
replica's heartbeats from the database before judging staleness. Two
replicas changing one session at the same moment each send their own view
of it (the database has both changes, written column by column); every
replica shows the later event's view until the session's next change.

Every change reaches the hub through ``await hub.update()`` (or ``replace()``
for ``POST /refresh``): the hub diffs it, runs the change's store writes (a
tracker write's, ``writes=``) and appends the batch's events to the event
log in one transaction (their ids), then applies and sends them. The clock
task trims the log every ``TRIM_EVERY_S``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from prometheus_client import Counter

from sessionwatch.config import Settings
from sessionwatch.errors import IdTaken
from sessionwatch.facets import RULES, Facet, FacetSource, Rules
from sessionwatch.hub.core import Hub
from sessionwatch.metrics import Metrics
from sessionwatch.model import Session, encode
from sessionwatch.prices import PriceTable
from sessionwatch.sources.claude.index import ClaudeIndex
from sessionwatch.sources.claude.live import LiveSource
from sessionwatch.sources.hooks.answer import AnswerAtOnce, Answerer
from sessionwatch.sources.hooks.events import HookEvent
from sessionwatch.sources.hooks.source import HookSource
from sessionwatch.sources.panel.registry import PanelRegistry
from sessionwatch.hub.events import Event
from sessionwatch.store.base import Database, EventLog, Write
from sessionwatch.sources.watcher import watching
from sessionwatch.store.postgres import PgStore
from sessionwatch.store.sqlite import Store

log = logging.getLogger(__name__)
_decode_session = msgspec.json.Decoder(Session).decode

#: How often time-driven changes (idle, stale, cleanup) are looked for.
TICK_S = 1.0
#: How often the clock trims the event log to its retention (hub/log.py).
TRIM_EVERY_S = 10.0
#: Commands waiting for the applying task before senders wait to send.
COMMANDS_BUFFER = 1024

ChangeSource = Callable[[anyio.Event], AsyncIterable[set[Path]]]

#: Pause before a failed watcher starts again.
RESTART_S = 1.0

T = TypeVar("T")


class Clock(Protocol):
    """Where the engine's time comes from."""

    def now(self) -> float:
        """Seconds since the epoch (``time.time``)."""

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` of this clock have passed."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class Follower(Protocol):
    """Replicas: a source told which ids other replicas' events name (before
    the engine decides which are remote): one keeping shared rows of its own
    (the agents' sessions, sessionwatch/agents) reloads them from the database
    before the next command; one holding copies (managed sessions) drops them."""

    def foreign(self, ids: set[str]) -> None:
        """Ids (not Panel ones) other replicas' events named."""

    @property
    def dirty(self) -> bool:
        """Whether ids wait to be read again."""

    async def reload(self) -> None:
        """Read them again (in the applying task)."""


class Command:
    """One change to apply, and where its sender waits for the result."""

    __slots__ = ("name", "apply", "result")

    def __init__(self, name: str, apply: Callable[[], Awaitable[Any]]) -> None:
        self.name = name
        self.apply = apply
        self.result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def run(self) -> None:
        try:
            value = await self.apply()
        except Exception as exc:  # noqa: BLE001 - the sender's to handle, not the applier's
            log.debug("command %s failed", self.name, exc_info=True)
            if not self.result.done():
                self.result.set_exception(exc)
        except BaseException:
            if not self.result.done():
                self.result.set_exception(RuntimeError("the engine stopped"))
            raise
        else:
            if not self.result.done():  # the sender may have been cancelled
                self.result.set_result(value)


async def open_database(settings: Settings) -> Database:
    """The store ``--db`` names: a SQLite file, or PostgreSQL for a ``postgresql://`` URL."""
    if settings.db_url is not None:
        from sessionwatch.store.postgres import PgStore

        return await PgStore.open(settings.db_url)
    return await Store.open(settings.db)


class Engine:
    def __init__(
        self,
        settings: Settings,
        *,
        changes: ChangeSource | None = None,
        clock: Clock | None = None,
        rules: Rules = RULES,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.rules = rules
        self.metrics = Metrics()
        self.prices = (
            PriceTable.from_file(settings.prices) if settings.prices else PriceTable.embedded()
        )
        self.hub = Hub(
            buffer_size=settings.replay_buffer,
            queue_size=settings.subscriber_queue,
            metrics=self.metrics,
        )
        self.hub.clock = self.clock.now
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
        self.hook_events = Counter(
            "sessionwatch_hook_events",
            "Claude Code hook events received, by event name",
            ["event"],
            registry=self.metrics.registry,
        )
        self._failed_paths: set[str] = set()
        self._store: Database | None = None
        self._log: EventLog | None = None
        self._trimmed = 0.0
        self._panel: PanelRegistry | None = None
        #: Claude Code's hook events (``POST /hooks``) and live registry (polled every tick).
        self.hooks = HookSource(self.index, idle_after_s=settings.idle_after_s)
        self.live = LiveSource(
            settings.live_dir, self.hooks, self.index, idle_after_s=settings.idle_after_s
        )
        #: What ``POST /hooks`` answers (sources/hooks/answer.py); the approvals replace it.
        self.answerer: Answerer = AnswerAtOnce()
        #: Every source of facets, in no particular order (``rules`` ranks them).
        self.sources: list[FacetSource] = [self.index, self.hooks, self.live]
        self._data_version = 0
        self._commands: MemoryObjectSendStream[Command] | None = None
        self._applier: asyncio.Task[None] | None = None
        self.ready = anyio.Event()
        self.stop_event = anyio.Event()
        #: called (on the loop) when a shutdown is requested, beside ending the streams
        self.on_shutdown: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Replicas (PostgreSQL): the store, the highest id a NOTIFY named,
        #: whether a follow is queued, the Panel ids other replicas changed
        #: (reloaded before the next command), and the other replicas' own sessions.
        self._replicas: PgStore | None = None
        self._notified_id = 0
        self._follow_queued = False
        self._follow_task: asyncio.Task[None] | None = None
        self._dirty_rows: set[str] = set()
        self.remote: set[str] = set()
        #: sources told which ids other replicas' events name: shared rows of their
        #: own reloaded like the Panel rows (agents), copies dropped (managed)
        self.followers: list[Follower] = []

    @property
    def store(self) -> Database:
        assert self._store is not None, "engine not started"
        return self._store

    @property
    def log(self) -> EventLog:
        assert self._log is not None, "engine not started"
        return self._log

    @property
    def panel(self) -> PanelRegistry:
        assert self._panel is not None, "engine not started"
        return self._panel

    # --- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store and load the state it holds, catch up with the disk,
        then start the task that applies commands."""
        self._loop = asyncio.get_running_loop()
        self._store = await open_database(self.settings)
        try:
            self._panel = PanelRegistry(
                self._store,
                stale_after_s=self.settings.stale_after_s,
                cleanup_after_s=self.settings.cleanup_after_s,
                clock=self.clock.now,
            )
            self.sources.append(self._panel)
            self.index.load(await self._store.load_transcripts())
            indexed = self.index.session_ids()  # before the scan: the sessions gone meanwhile are told to the others
            await self._panel.load()
            self._data_version = await self._store.data_version()
            # Event ids from the store's log from here on (this run's start row first).
            self._log = self._store.event_log()
            await self.hub.attach(self._log)
            if isinstance(self._store, PgStore):
                # What other replicas committed before this run's start row is
                # in the rows read now; what they commit after it, in the log.
                self._replicas = self._store
                self.hub.on_foreign = self._on_foreign
                await self._replicas.listen(self._notified, origin=self._log.origin)
                await self._panel.load()
                await self._replicas.lead()
            await anyio.to_thread.run_sync(self._scan)
            await self._persist()
            self.live.apply(await anyio.to_thread.run_sync(self.live.scan))
            own = self._all_sessions(self.clock.now())
            self.hub.load([*own.values(), *await self._others_now(own)])
            if self._replicas is not None:
                # what this replica shows without an event, for replicas starting later
                gone = [sid for sid in indexed if not self.index.claims(sid)]
                await self._replicas.current_put([(sid, encode(s)) for sid, s in own.items()], gone, self.hub.last_id)
        except BaseException:
            await self._store.close()  # no worker thread left to hold the process
            raise
        send, receive = anyio.create_memory_object_stream[Command](COMMANDS_BUFFER)
        self._commands = send
        self._applier = asyncio.create_task(self._apply(receive), name="sessionwatch-engine")
        self.ready.set()

    async def _apply(self, commands: MemoryObjectReceiveStream[Command]) -> None:
        """The one task that changes state: each command in turn."""
        async with commands:
            async for command in commands:
                if self._replicas is not None:
                    await self._keep_up()
                await command.run()
                if self._dirty_rows or self._followers_dirty():
                    await self._keep_up()

    async def _call(self, name: str, apply: Callable[[], Awaitable[T]]) -> T:
        """Send a command and wait for its result (or its error)."""
        if self._commands is None:
            raise RuntimeError("the engine is not open")
        command = Command(name, apply)
        await self._commands.send(command)
        result: T = await command.result
        return result

    def request_shutdown(self) -> None:
        """End every open stream now; safe from a signal handler or another thread.

        The server waits for open responses before it shuts down, and an event
        stream never ends by itself: without this, Ctrl-C would hang until the
        graceful-shutdown timeout.
        """
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.hub.close_all)
            for end in self.on_shutdown:
                self._loop.call_soon_threadsafe(end)

    async def close(self) -> None:
        self.stop_event.set()
        self.hub.close_all()
        if self._commands is not None:
            self._commands.close()  # the applier finishes what was sent, then ends
            self._commands = None
        if self._applier is not None:
            await self._applier
            self._applier = None
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
                    None if s.db_url else s.db,
                    debounce_ms=s.debounce_ms,
                    step_ms=s.step_ms,
                    stop_event=stop,
                ) as batches:
                    async for paths in batches:
                        await self.handle(paths)
            tg.cancel_scope.cancel()

    async def _clock(self) -> None:
        while True:
            await self.clock.sleep(TICK_S)
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

    # --- commands -------------------------------------------------------------------

    async def handle(self, paths: set[Path]) -> None:
        """Apply one batch of changed paths (one debounce window) to the hub."""
        await self._call("batch", lambda: self._apply_paths(paths))

    async def rescan(self, *, publish_refresh: bool = True) -> None:
        """Read every transcript again from where it was; publish ``refresh``."""
        await self._call("refresh", lambda: self._rescan(publish_refresh))

    async def tick(self) -> None:
        """Time-driven changes: Claude sessions going idle, Panel ones going stale
        or being cleaned up; and the batched heartbeat write. Then, every
        ``TRIM_EVERY_S``, the event log's trim (no state of the engine's)."""
        await self._call("tick", self._tick)
        now = self.clock.now()
        if now - self._trimmed >= TRIM_EVERY_S and await self.leading():
            self._trimmed = now
            await self.log.trim(now)

    async def register(self, app_name: str, **fields: Any) -> bool:
        """Register a tracker session; True if new. IdTaken if a Claude
        session (or a transcript not yet timestamped) has the id."""
        return await self._call("register", lambda: self._register(app_name, fields))

    async def heartbeat(self, ids: list[str]) -> tuple[list[str], list[str]]:
        """Record heartbeats; returns (ids to kill, unknown ids). No event unless a
        stale session came back (see the module's docstring)."""
        self.metrics.heartbeats.inc(len(ids))
        return await self._call("heartbeat", lambda: self._heartbeat(ids))

    async def set_status(self, sid: str, status: str, current_task: str | None) -> bool:
        async def apply() -> bool:
            await self._know([sid])
            ok = await self.panel.set_status(
                sid, status, current_task, publish=lambda writes: self._publish([sid], writes)
            )
            if not ok:
                await self._publish([sid])  # gone (deleted by another process)
            return ok

        return await self._call("status", apply)

    async def kill(self, sid: str, by: str | None) -> bool:
        async def apply() -> bool:
            await self._know([sid])
            return await self.panel.kill(sid, by, publish=lambda writes: self._publish([sid], writes))

        return await self._call("kill", apply)

    async def delete(self, ids: list[str]) -> list[str]:
        async def apply() -> list[str]:
            await self._know(ids)
            return await self.panel.delete(ids, publish=lambda writes: self._publish(ids, writes))

        return await self._call("delete", apply)

    async def delete_stale(self, older_than_s: float) -> int:
        async def apply() -> int:
            doomed = self.panel.stale_ids(older_than_s, self.clock.now())
            return len(await self.panel.delete(doomed, publish=lambda writes: self._publish(doomed, writes)))

        return await self._call("delete-stale", apply)

    async def hook(self, event: HookEvent, *, hold: bool = False) -> None:
        """A Claude Code hook event: fold it into its session's state and
        publish the session (as a command, so in order with every other change).
        ``hold``: the answerer keeps this PermissionRequest open (its prompt is
        ``answerable``)."""

        async def apply() -> None:
            sid = self.hooks.fold(event, self.clock.now(), hold=hold)
            await self._publish([sid])

        self.hook_events.labels(event.hook_event_name).inc()
        await self._call("hook", apply)

    async def unhold(self, sid: str) -> None:
        """A held hook request (``hook(..., hold=True)``) returned: its prompt,
        if still pending, is no longer answerable from a dashboard."""

        async def apply() -> None:
            if self.hooks.unhold(sid):
                await self._publish([sid])

        await self._call("unhold", apply)

    async def read(self, name: str, read: Callable[[], T]) -> T:
        """Run ``read`` in the applying task, between two commands: it sees the
        sources while nothing changes them (``GET /stats``)."""

        async def apply() -> T:
            return read()

        return await self._call(name, apply)

    # --- more sources ---------------------------------------------------------------

    def add_source(self, source: FacetSource) -> None:
        """Plug in another source of facets; its place is in ``self.rules``."""
        self.sources.append(source)

    async def command(self, name: str, apply: Callable[[], Awaitable[T]]) -> T:
        """Run ``apply`` as a command (in the applying task, in order with every
        other change); inside it, :meth:`publish` shows what it changed."""
        return await self._call(name, apply)

    async def publish(self, ids: Iterable[str], writes: Sequence[Write] = ()) -> None:
        """Only inside a command: project ``ids`` and publish the difference;
        ``writes`` run in the transaction that gives the events their ids (a
        ``must_change`` write that changed nothing: ``RowGone``, nothing shown)."""
        await self._publish(ids, writes)

    async def changed(
        self, name: str, change: Callable[[], Iterable[str] | Awaitable[Iterable[str]]]
    ) -> None:
        """A source's news, applied as a command: ``change`` runs in the
        applying task (a coroutine function too), changes the source's facets
        and returns the ids it touched; those are projected again and
        published."""

        async def apply() -> None:
            touched = change()
            if inspect.isawaitable(touched):
                touched = await touched
            await self._publish(list(touched))

        await self._call(name, apply)

    # --- what the commands do (only ever run by the applying task) -------------------------

    async def _apply_paths(self, paths: set[Path]) -> None:
        db_names = set() if self.settings.db_url else {self.settings.db.name, self.settings.db.name + "-wal"}
        db_dir = self.settings.db.parent.resolve()
        transcript_paths: list[Path] = []
        db_changed = False
        root = self.settings.projects_dir
        for p in paths:
            if p.name in db_names and p.parent.resolve() == db_dir:
                db_changed = True
            elif p == root:
                transcript_paths = []
                await self._rescan(publish_refresh=False)
            else:
                transcript_paths.append(p)
        if transcript_paths:
            touched = await anyio.to_thread.run_sync(self._update_paths, transcript_paths)
            await self._persist()
            await self._publish(touched)
        if db_changed:
            await self._reload_panel()

    async def _rescan(self, publish_refresh: bool) -> None:
        await anyio.to_thread.run_sync(self._scan)
        await self._persist()
        await self.panel.load()
        self._data_version = await self.store.data_version()
        sessions = self._all_sessions(self.clock.now())
        for sid in self.remote:  # other replicas' sessions stay as their events say
            shown = self.hub.sessions.get(sid)
            if shown is not None:
                sessions.setdefault(sid, shown)
        if publish_refresh:
            await self.hub.replace(sessions.values())
        else:
            changes: dict[str, Session | None] = dict(sessions)
            for sid in self.hub.sessions:
                changes.setdefault(sid, None)
            await self.hub.update(changes)

    async def _tick(self) -> None:
        leader = await self.leading()
        if self._replicas is not None:
            await self._follow()  # a lost notification is caught here
            if leader:
                await self._read_heartbeats()
        now = self.clock.now()
        changes: dict[str, Session | None] = {}
        if self.index.partial:
            for sid in await anyio.to_thread.run_sync(self.index.settle, now):
                changes[sid] = self._view(sid, now)
            await self._persist()
        for sid in self.live.apply(await anyio.to_thread.run_sync(self.live.scan)):
            changes[sid] = self._view(sid, now)
        # another machine's sessions (sessionwatch/agents) come projected: no idle rule here
        relayed = [src for src in self.sources if src.name == "agents"]
        for sid, s in self.hub.sessions.items():
            if s.source == "claude" and sid not in changes and sid not in self.remote:
                if relayed and not self.index.claims(sid) and any(src.claims(sid) for src in relayed):
                    continue
                if self.hooks.claims(sid) or self.live.claims(sid):
                    # the hooks' and the registry's idle rule: project again, the hub diffs
                    view = self._view(sid, now)
                    if view != s:
                        changes[sid] = view
                elif self.index.status(sid, now) != s.status:
                    changes[sid] = self._view(sid, now)
        panel = self.panel
        for sid, row in panel.rows.items():
            shown = self.hub.sessions.get(sid)
            if shown is None or (leader and shown.source == "panel" and shown.is_stale != panel.is_stale(row, now)):
                if sid not in changes:
                    changes[sid] = self._view(sid, now)
        await panel.flush_heartbeats()
        doomed = panel.stale_ids(self.settings.cleanup_after_s, now) if leader else []

        async def publish(writes: list[Write]) -> None:
            # the cleanup's deletions go out with the tick's other changes
            for sid in doomed:
                changes[sid] = self._view(sid, now)
            await self.hub.update(changes, writes=writes)

        gone = await panel.delete(doomed, publish=publish)
        if not gone and changes:
            await self.hub.update(changes)

    # --- replicas (PostgreSQL) ------------------------------------------------------------

    @property
    def replicated(self) -> bool:
        """Whether other replicas share this server's database (PostgreSQL)."""
        return self._replicas is not None

    @property
    def replicas(self) -> PgStore | None:
        """The database other replicas share with this server, if any (relay.py)."""
        return self._replicas

    async def catch_up(self) -> None:
        """Replicas: apply what the other replicas have committed so far (a
        request naming a session this replica has not read yet)."""
        if self._replicas is not None:
            await self._call("follow", self._follow)

    async def leading(self) -> bool:
        """Whether this server runs the clock-driven changes: always with
        SQLite; with PostgreSQL the replica holding the advisory lock (taken
        over here when its holder has gone)."""
        return self._replicas is None or await self._replicas.lead()

    def _notified(self, last_id: int) -> None:
        """A NOTIFY: another replica committed events up to ``last_id``."""
        self._notified_id = max(self._notified_id, last_id)
        if last_id > self.hub.last_id and not self._follow_queued and self._commands is not None:
            self._follow_queued = True
            self._follow_task = asyncio.get_running_loop().create_task(self._queue_follow())

    async def _queue_follow(self) -> None:
        try:
            await self._call("follow", self._follow)
        except Exception:  # noqa: BLE001 - the next notification or tick follows again
            log.warning("following the other replicas failed", exc_info=True)
        finally:
            self._follow_queued = False

    async def _keep_up(self) -> None:
        """Before a command: the other replicas' events this one was told of,
        and the rows they changed."""
        try:
            if self._notified_id > self.hub.last_id:
                await self._follow()
            elif self._dirty_rows or self._followers_dirty():
                await self._reload_rows()
        except Exception:  # noqa: BLE001 - the command goes on; the tick follows again
            log.warning("following the other replicas failed", exc_info=True)

    async def _follow(self) -> None:
        """The other replicas' events (``Hub.follow``), then the rows they name."""
        await self.hub.follow()
        if self._replicas is not None and not self._replicas.listening():
            await self._replicas.listen(self._notified, origin=self.log.origin)  # the listening connection was lost
        await self._reload_rows()

    async def _others_now(self, own: dict[str, Session]) -> list[Session]:
        """Replicas starting: the sessions only other replicas show (their own
        sources' and processes'), as the last event naming each showed them
        (the store's ``current``); shown here as their events say (remote)."""
        if self._replicas is None:
            return []
        others = []
        for data in await self._replicas.current_sessions():
            try:
                s = _decode_session(data)
            except msgspec.DecodeError:
                log.warning("a session of the current table is unreadable: skipped")
                continue
            if s.id not in own and not any(source.claims(s.id) for source in self.sources if source.name != "panel"):
                others.append(s)
                self.remote.add(s.id)
        return others

    def _on_foreign(self, events: list[Event]) -> None:
        """Other replicas' events, applied by the hub: the Panel rows they name
        are read again (shared), and the followers' (agents) rows; other
        sources' sessions are theirs (remote)."""
        named = {s.id for event in events for s in event.sessions if s.source != "panel"}
        if named:  # first: a source that drops its copy no longer claims the id below
            for follower in self.followers:
                follower.foreign(named)
        for event in events:
            for s in event.sessions:
                if s.source == "panel":
                    self._dirty_rows.add(s.id)
                    self.remote.discard(s.id)
                elif event.type == "session-deleted":
                    self.remote.discard(s.id)
                elif not any(source.claims(s.id) for source in self.sources if source.name != "panel"):
                    self.remote.add(s.id)

    def _followers_dirty(self) -> bool:
        return any(f.dirty for f in self.followers)

    async def _reload_rows(self) -> None:
        if self._replicas is None:
            return
        for follower in self.followers:
            if follower.dirty:
                await follower.reload()
        if not self._dirty_rows:
            return
        ids, self._dirty_rows = self._dirty_rows, set()
        found = {row.id: row for row in await self._replicas.load_panel_rows(sorted(ids))}
        panel = self.panel
        for sid in ids:
            row = found.get(sid)
            if row is None:
                panel.forget([sid])
                continue
            beat = panel.pending_beats.get(sid)
            if beat is not None and beat > row.last_heartbeat:
                row.last_heartbeat = beat
            panel.rows[sid] = row

    async def _read_heartbeats(self) -> None:
        """Every replica's heartbeats, before the leader judges staleness."""
        assert self._replicas is not None
        rows = self.panel.rows
        for sid, beat in (await self._replicas.heartbeats()).items():
            row = rows.get(sid)
            if row is not None and beat > row.last_heartbeat:
                row.last_heartbeat = beat

    async def _know(self, ids: Iterable[str]) -> None:
        """Replicas: an id this replica's registry lacks may be another
        replica's newest registration: read the log first."""
        if self._replicas is not None and any(sid not in self.panel.rows for sid in ids):
            await self._follow()

    async def _heartbeat(self, ids: list[str]) -> tuple[list[str], list[str]]:
        await self._know(ids)
        kill: list[str] = []
        unknown: list[str] = []
        revived: list[str] = []
        sessions = self.hub.sessions
        for sid in ids:
            flag = self.panel.heartbeat(sid)
            if flag is None:
                unknown.append(sid)
                continue
            if flag:
                kill.append(sid)
            s = sessions.get(sid)
            if s is not None and s.is_stale:
                revived.append(sid)
        if revived:
            await self._publish(revived)
        return kill, unknown

    async def _register(self, app_name: str, fields: dict[str, Any]) -> bool:
        sid = fields["session_id"]
        await self._know([sid])
        if self._taken(sid, "panel"):
            raise IdTaken(sid)
        return await self.panel.register(
            app_name, **fields, publish=lambda writes: self._publish([sid], writes)
        )

    def _taken(self, sid: str, by: str) -> bool:
        """Whether a source ranked before ``by`` holds ``sid`` (or shows it)."""
        if self.rules.outranked(by, sid, self.sources):
            return True
        shown = self.hub.sessions.get(sid)
        return shown is not None and self.rules.rank(shown.source) < self.rules.rank(by)

    async def _reload_panel(self) -> None:
        version = await self.store.data_version()
        if version == self._data_version:
            return  # only our own writes: the hub already has them
        self._data_version = version
        await self.panel.load()
        ids = set(self.panel.rows)
        ids.update(sid for sid, s in self.hub.sessions.items() if s.source == "panel")
        await self._publish(ids)

    async def _publish(self, ids: Iterable[str], writes: Sequence[Write] = ()) -> None:
        """Show the sessions ``ids`` as they are now: one projection per id,
        never every session. ``writes``: the store statements of the change,
        run in the transaction that gives its events their ids."""
        now = self.clock.now()
        changes = {sid: self._view(sid, now) for sid in ids}
        if self.remote:
            # a source here projects it now (a record loaded, a session taken over): no longer remote
            self.remote.difference_update(sid for sid, s in changes.items() if s is not None)
            changes = {sid: s for sid, s in changes.items() if s is not None or sid not in self.remote}
        await self.hub.update(changes, writes=writes)

    # --- facets and the projection ------------------------------------------------------

    def _view(self, sid: str, now: float) -> Session | None:
        """What the hub shows for ``sid``: every source's facet, projected."""
        facets: dict[str, Facet] = {}
        for source in self.sources:
            try:
                facet = source.facet(sid, now)
            except Exception:  # noqa: BLE001 - one broken session must not hide the others
                self._failed("session", sid)
                continue
            if facet is not None:
                facets[source.name] = facet
        return self.rules.project(facets)

    def _all_sessions(self, now: float) -> dict[str, Session]:
        sessions: dict[str, Session] = {}
        seen: set[str] = set()
        for source in sorted(self.sources, key=lambda s: self.rules.rank(s.name)):
            for sid in source.ids():
                if sid in seen:
                    continue
                seen.add(sid)
                s = self._view(sid, now)
                if s is not None:
                    sessions[sid] = s
        return sessions

    # --- reading transcripts (on a worker thread) -------------------------------------------

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

    async def _persist(self) -> None:
        rows, removed = self.index.take_changes()
        await self.store.save_transcripts(rows, removed)
