"""Following ``GET /stream``: one implementation for every client.

A :class:`Follower` keeps the id of the last event it handed over and sends
it as ``Last-Event-ID`` when it connects again, so the server replays what
was missed (or answers ``refresh`` when it cannot). Its watchdog is the read
timeout: nothing at all, not even a keepalive, for `silence_s` (2.5 x the
server's default 30 s keepalive) and the connection counts as dead, whatever
the socket says.

:meth:`Follower.follow` is one connection; :meth:`Follower.run` reconnects
for ever with the web page's backoff (1, 2, 4, 8, 16 s, then every 16 s),
slowly (`auth_retry_s`) after the token was rejected, and at once after
:meth:`Follower.retry_now`. The dashboards' fallback to polling lives in
their own machine, which calls :meth:`follow` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from sessionwatch.clients.http import (
    AsyncApi,
    AuthError,
    Backoff,
    ClientError,
    ServerUnreachable,
    check,
    unreachable,
)

__all__ = [
    "AUTH_RETRY_S",
    "CONNECT_TIMEOUT_S",
    "SILENCE_S",
    "Follower",
    "StreamEvent",
    "apply_event",
    "parse_event",
]

#: An EventSource that has not opened after this long counts as failed.
CONNECT_TIMEOUT_S = 10.0
#: Nothing received for this long: the connection is dead.
SILENCE_S = 75.0
#: After a rejected token: try again this rarely (someone has to change the
#: server's token or the client's before it can work).
AUTH_RETRY_S = 60.0


@dataclass(frozen=True)
class StreamEvent:
    """One event of ``/stream`` (keepalives are never handed over)."""

    type: str
    id: str | None
    sessions: list[dict[str, Any]] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)


def parse_event(event: str, event_id: str | None, data: str) -> StreamEvent | None:
    """The event, or None for a keepalive, an empty or a garbled one (skipped)."""
    if event == "keepalive" or not data:
        return None
    try:
        payload = json.loads(data)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    sessions = payload.get("sessions")
    if not isinstance(sessions, list):
        sessions = []
    return StreamEvent(
        event or "message",
        event_id or None,
        [s for s in sessions if isinstance(s, dict)],
        payload,
    )


def apply_event(sessions: dict[str, dict[str, Any]], event: StreamEvent) -> bool:
    """Bring a client's copy of the sessions (id -> Session) up to `event`.

    Returns whether the whole copy was replaced (``init``/``refresh``).
    """
    if event.type in ("init", "refresh"):
        sessions.clear()
        sessions.update((str(s.get("id")), s) for s in event.sessions)
        return True
    for session in event.sessions:
        sid = str(session.get("id"))
        if event.type == "session-deleted":
            sessions.pop(sid, None)
        elif event.type in ("session-created", "session-updated"):
            sessions[sid] = session
    return False


OnEvent = Callable[[StreamEvent], None]
OnOpen = Callable[[], None]
OnError = Callable[[ClientError], None]


class Follower:
    """Follows one server's ``/stream`` (optionally ``?source=...``)."""

    def __init__(
        self,
        api: AsyncApi,
        *,
        params: dict[str, str] | None = None,
        path: str = "/stream",
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        silence_s: float = SILENCE_S,
        backoff_s: tuple[float, ...] | None = None,
        auth_retry_s: float = AUTH_RETRY_S,
        last_event_id: str | None = None,
    ) -> None:
        self.api = api
        self.params = params or {}
        self.path = path
        self.timeout = httpx.Timeout(
            api.http.timeout.read or 10.0, connect=connect_timeout_s, read=silence_s
        )
        self.backoff = Backoff(backoff_s) if backoff_s else Backoff()
        self.auth_retry_s = auth_retry_s
        self.last_event_id = last_event_id
        #: time.monotonic() when the current (or last) connection was asked for.
        self.requested_at = 0.0
        self._wake: asyncio.Event | None = None

    async def follow(self, on_event: OnEvent, on_open: OnOpen | None = None) -> None:
        """Follow one connection until it ends; raise what ended it.

        :class:`AuthError` for 401/403, :class:`ServerUnreachable` for no
        answer, a 5xx, silence or a stream that simply ended,
        :class:`~sessionwatch.clients.http.ApiError` for another 4xx.
        """
        headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
        base = self.api.base_url
        self.requested_at = time.monotonic()
        try:
            async with aconnect_sse(
                self.api.http,
                "GET",
                self.path,
                params=self.params,
                headers=headers,
                timeout=self.timeout,
            ) as source:
                response = source.response
                if response.status_code >= 400:
                    await response.aread()
                check(base, response)
                if response.status_code != 200:
                    raise ServerUnreachable(base, f"/stream answered {response.status_code}")
                if on_open is not None:
                    on_open()
                async for message in source.aiter_sse():
                    event = parse_event(message.event, message.id, message.data)
                    if event is None:
                        continue
                    if event.id is not None:
                        self.last_event_id = event.id
                    on_event(event)
        except httpx.HTTPError as error:
            raise unreachable(base, error) from error
        raise ServerUnreachable(base, "the stream ended")

    def retry_now(self) -> None:
        """Cut the current pause short (call on the follower's loop)."""
        if self._wake is not None:
            self._wake.set()

    async def run(
        self,
        on_event: OnEvent,
        *,
        on_open: OnOpen | None = None,
        on_error: OnError | None = None,
    ) -> None:
        """Follow for ever: reconnect with backoff; slowly after a rejected token."""
        self._wake = asyncio.Event()

        def opened() -> None:
            self.backoff.reset()
            if on_open is not None:
                on_open()

        while True:
            try:
                await self.follow(on_event, opened)
            except AuthError as error:
                delay = self.auth_retry_s
                if on_error is not None:
                    on_error(error)
            except ClientError as error:
                delay = self.backoff.next()
                if on_error is not None:
                    on_error(error)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
