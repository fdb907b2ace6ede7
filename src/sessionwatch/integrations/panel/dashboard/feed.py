"""The dashboard's feed: one connection to the server per dashboard process.

:class:`Feed` drives :class:`sessionwatch.clients.feed.FeedMachine` (the web
page's Live/Reconnecting/Polling/Offline rules, checked against the same test
vectors, ``tests/vectors/feed.json``) with the rest of
:mod:`sessionwatch.clients`: the HTTP client, its errors and the ``/stream``
follower. On an error it reconnects after 1, 2, 4, 8 and 16 s, then falls
back to polling ``/all`` every 3 s while it keeps trying the stream every
15 s. A rejected token (401/403) shows "Token rejected" and the stream is
tried again every 15 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from sessionwatch.clients.feed import Close, Command, FeedMachine, FeedOptions, Open, Poll
from sessionwatch.clients.follow import (
    CONNECT_TIMEOUT_S,
    SILENCE_S,
    Follower,
    StreamEvent,
    apply_event,
    parse_event,
)
from sessionwatch.clients.http import BACKOFF_S, AsyncApi, AuthError, ClientError
from sessionwatch.integrations.panel.dashboard.rows import Session

__all__ = ["POLL_S", "REQUEST_TIMEOUT_S", "SSE_RETRY_S", "Feed", "Listener"]

log = logging.getLogger("sessionwatch.dashboard")

# The web page's timings (frontend/connection.js, DEFAULT_OPTIONS), as the
# machine has them.
POLL_S = FeedOptions().poll_s
SSE_RETRY_S = FeedOptions().sse_retry_s
REQUEST_TIMEOUT_S = 10.0

Listener = Callable[[str], None]


class Feed:
    """The server's sessions, kept current from ``/stream`` (or ``/all``).

    Runs on its own daemon thread. Listeners are called on that thread with
    ``"snapshot"`` (replace everything), ``"changed"`` (some sessions changed)
    or ``"state"`` (the connection state changed); they must only schedule
    work, never block. When to reconnect, poll or give up is decided by
    :class:`~sessionwatch.clients.feed.FeedMachine`, the web page's rules.
    """

    def __init__(
        self,
        server_url: str,
        token: str | None = None,
        *,
        backoff_s: tuple[float, ...] = BACKOFF_S,
        poll_s: float = POLL_S,
        sse_retry_s: float = SSE_RETRY_S,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.backoff_s = backoff_s
        self.poll_s = poll_s
        self.sse_retry_s = sse_retry_s
        self.state = "connecting"
        self.last_event_id: str | None = None
        self._machine = FeedMachine(
            FeedOptions(
                backoff_s=backoff_s,
                poll_s=poll_s,
                sse_retry_s=sse_retry_s,
                connect_timeout_s=CONNECT_TIMEOUT_S,
                # The token cannot change while the dashboard runs; the
                # server's can: look again now and then.
                auth_retry_s=sse_retry_s,
            )
        )
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._listeners: set[Listener] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._inputs: asyncio.Queue[tuple[str, int, Any]] | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._stream_number = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def attempt(self) -> int:
        """Reconnect attempts since the stream last opened."""
        return self._machine.attempt

    # -- public, any thread ----------------------------------------------------

    def sessions(self) -> dict[str, Session]:
        with self._lock:
            return dict(self._sessions)

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.add(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.discard(listener)

    def start(self) -> Feed:
        if self._thread is None:
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(ready,), name="sessionwatch-feed", daemon=True
            )
            self._thread.start()
            ready.wait(5)
        return self

    def stop(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def retry_now(self) -> None:
        """Try the stream now instead of at the next scheduled attempt."""
        loop, inputs = self._loop, self._inputs
        if loop is not None and inputs is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(inputs.put_nowait, ("retry", 0, None))

    # -- the driver of the machine (feed thread) -----------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._inputs = asyncio.Queue()
        self._task = loop.create_task(self._main())
        ready.set()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(self._task)
        loop.close()

    async def _main(self) -> None:
        assert self._inputs is not None
        machine = self._machine
        async with AsyncApi(self.server_url, self.token, timeout_s=REQUEST_TIMEOUT_S) as api:
            follower = Follower(api, connect_timeout_s=CONNECT_TIMEOUT_S, silence_s=SILENCE_S)
            try:
                self._carry_out(machine.start(time.monotonic()), api, follower)
                while True:
                    due = machine.next_due()
                    wait = None if due is None else max(0.0, due - time.monotonic())
                    try:
                        kind, number, value = await asyncio.wait_for(self._inputs.get(), wait)
                    except TimeoutError:
                        self._carry_out(machine.tick(time.monotonic()), api, follower)
                        continue
                    now = time.monotonic()
                    if kind == "retry":
                        commands = machine.retry_now(now)
                    elif kind == "poll":
                        answer, body = value
                        if answer == "ok" and machine.wants_poll(number):
                            if body.get("last_event_id") is not None:
                                self.last_event_id = str(body["last_event_id"])
                            self._replace(body.get("sessions", []))
                        commands = machine.poll_answered(now, number, answer)
                    elif number != self._stream_number:
                        continue  # from a stream attempt the machine dropped
                    elif kind == "opened":
                        commands = machine.opened(now)
                    elif kind == "rejected":
                        commands = machine.rejected(now)
                    else:
                        commands = machine.failed(now)
                    self._carry_out(commands, api, follower)
            finally:
                self._close_stream()
                for task in list(self._tasks):
                    task.cancel()

    def _carry_out(self, commands: list[Command], api: AsyncApi, follower: Follower) -> None:
        for command in commands:
            if isinstance(command, Open):
                self._close_stream()
                self._stream_task = self._spawn(self._follow(follower, self._stream_number))
            elif isinstance(command, Close):
                self._close_stream()
            elif isinstance(command, Poll):
                self._spawn(self._poll(api, command.number))
            else:
                self._set_state(command.state, command.forced)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _close_stream(self) -> None:
        self._stream_number += 1
        if self._stream_task is not None:
            self._stream_task.cancel()
            self._stream_task = None

    def _input(self, kind: str, number: int, value: Any = None) -> None:
        assert self._inputs is not None
        self._inputs.put_nowait((kind, number, value))

    async def _follow(self, follower: Follower, number: int) -> None:
        """One stream attempt; tells the machine how it went."""
        follower.last_event_id = self.last_event_id  # a poll may have moved it
        try:
            await follower.follow(self._apply_event, lambda: self._input("opened", number))
        except AuthError as error:
            log.warning("%s", error)
            self._input("rejected", number)
        except ClientError as error:
            log.debug("stream failed: %s", error)
            self._input("failed", number)

    async def _poll(self, api: AsyncApi, number: int) -> None:
        try:
            body = await api.get_json("/all")
        except AuthError:
            self._input("poll", number, ("auth", None))
        except ClientError:
            self._input("poll", number, ("error", None))
        else:
            self._input("poll", number, ("ok", body if isinstance(body, dict) else {}))

    def _on_event(self, event: str, event_id: str, data: str) -> None:
        """One raw stream event (what the follower hands over, parsed)."""
        parsed = parse_event(event, event_id, data)
        if parsed is not None:
            self._apply_event(parsed)

    def _apply_event(self, event: StreamEvent) -> None:
        if event.id:
            self.last_event_id = event.id
        with self._lock:
            replaced = apply_event(self._sessions, event)
        self._notify("snapshot" if replaced else "changed")

    def _replace(self, sessions: Iterable[Session]) -> None:
        with self._lock:
            self._sessions = {str(s.get("id")): s for s in sessions}
        self._notify("snapshot")

    def _set_state(self, state: str, force: bool = False) -> None:
        if state != self.state or force:
            self.state = state
            self._notify("state")

    def _notify(self, what: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(what)
            except Exception:
                log.exception("dashboard listener failed")
