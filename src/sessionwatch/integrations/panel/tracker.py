"""Report Panel sessions to sessionwatch: register, heartbeat, tasks, kill.

Embed it in any Panel app::

    from sessionwatch.tracker import SessionTracker

    tracker = SessionTracker.get_tracker(app_name="reports")  # one per Panel session
    with tracker.task("Generating report"):
        run_expensive_operation()

A tracker only records what changed and wakes the one worker thread of the
process (:mod:`.worker`); the network or the database is never touched in
a Panel callback. The worker reports to a server over HTTP or, in direct
mode (``db_path=...``), writes the server's SQLite file (:mod:`.backends`).
Every access to Panel's and bokeh's insides (which session is being built,
closing a killed session's websocket) is in :mod:`.bokeh_compat`.

A tracker that cannot reach its server changes nothing for the app: calls
return at once and the app behaves as it would without tracking.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

# httpx imports httpcore lazily, on its first client; httpcore's package tries
# optional imports (socks, http2) that fail and leave sys.modules again. Done
# in the tracker's worker thread while Panel runs an app module, that races
# Panel's module recording (panel/io/reload.py) into a KeyError that kills the
# session. Importing it here, on the importing thread, settles sys.modules first.
import httpcore  # noqa: F401

from sessionwatch.config import DEFAULT_SERVER_URL, ClientSettings
from sessionwatch.clients.follow import AUTH_RETRY_S
from sessionwatch.integrations.panel import bokeh_compat
from sessionwatch.integrations.panel.backends import DbBackend, HttpBackend
from sessionwatch.integrations.panel.bokeh_compat import PanelSession
from sessionwatch.integrations.panel.worker import DEFAULT_HEARTBEAT_INTERVAL, Backend, Record, Worker
from sessionwatch.store.schema import PANEL_DDL, session_id_problem

__all__ = [
    "AUTH_RETRY_S",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_SERVER_URL",
    "KILL_CLOSE_CODE",
    "KILL_CLOSE_REASON",
    "PANEL_SCHEMA",
    "SessionTracker",
]

#: 1001 "going away": the browser shows the app's `disconnect_notification`.
KILL_CLOSE_CODE = 1001
KILL_CLOSE_REASON = "Session ended from the sessionwatch dashboard"
#: The direct-mode tables: the server's own DDL, so the two cannot drift.
PANEL_SCHEMA = PANEL_DDL

#: The old private name (tests/test_panel.py builds one).
_PanelSession = PanelSession


def _tracker_id(panel: PanelSession | None) -> str:
    """The Panel session's own id when the server accepts it as a tracker id
    (Bokeh's generated ids, signed or not, always are); else a fresh one, as
    outside Panel (Bokeh lets a client choose its id in unsigned mode)."""
    if panel is not None and session_id_problem(panel.session_id) is None:
        return panel.session_id
    return uuid.uuid4().hex


async def close_panel_session(session_context: Any, reason: str = KILL_CLOSE_REASON) -> bool:
    """Close every browser connection of a Panel session (close code
    ``KILL_CLOSE_CODE``, `reason`) and destroy it; see
    :func:`.bokeh_compat.close_session`. Runs on the Panel server's IOLoop."""
    return await bokeh_compat.close_session(session_context, KILL_CLOSE_CODE, reason)


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
        _panel: PanelSession | None = None,
    ) -> None:
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        self.app_name = app_name
        self._panel = _panel
        self.session_id = _tracker_id(_panel)
        client = ClientSettings.resolve(url=server_url, token=token)
        self.server_url = client.url
        self.db_path = Path(db_path).expanduser().resolve() if db_path is not None else None
        token = client.token
        self._active: dict[int, str] = {}  # task number -> name, in start order
        self._numbers = itertools.count()
        self._record = Record(
            session_id=self.session_id,
            app_name=app_name,
            user_id=user_id or (_panel.user if _panel else None),
            host=socket.gethostname(),
            pid=os.getpid(),
            url=_panel.url if _panel else None,
            heartbeat_interval=heartbeat_interval,
            on_kill=self._on_kill,
        )
        self._make: Callable[[], Backend]
        if self.db_path is not None:
            path = self.db_path
            self._key = ("db", str(path))
            self._make = lambda: DbBackend(path)
        else:
            url = self.server_url
            self._key = ("http", f"{url} {token or ''}")
            self._make = lambda: HttpBackend(url, token)

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
        panel = bokeh_compat.current_session()
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
            context = bokeh_compat.session_context(panel.document)

            async def close() -> None:
                await close_panel_session(context)

            bokeh_compat.call_soon(panel.document, close)
            return tracker
        if panel is not None:
            bokeh_compat.on_session_destroyed(tracker._on_session_destroyed)
        Worker.get().attach(tracker._key, tracker._make, tracker._record)
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
        Worker.get().wake(self._key)

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
        Worker.get().wake(self._key)

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
        context = bokeh_compat.session_context(panel.document)

        async def close() -> None:
            try:
                if context is not None:
                    await close_panel_session(context)
            finally:
                # Normally on_session_destroyed got here first.
                self.stop()

        if not bokeh_compat.call_soon(panel.document, close):
            self.stop()

    def __repr__(self) -> str:
        return (
            f"SessionTracker(app_name={self.app_name!r}, session_id={self.session_id!r}, "
            f"status={self.status!r})"
        )

