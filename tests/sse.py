"""A test SSE client that collects events in a background thread.

A probe of the protocol, not a client: it records the raw status, headers
and every event of one connection and never reconnects, so tests can check
what the server sends. Clients (tracker, dashboards, tests that keep a copy
of the sessions) follow the stream with ``sessionwatch.clients.follow``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import connect_sse


@dataclass
class Received:
    event: str
    id: str | None
    data: dict[str, Any]
    at: float


@dataclass
class SSEClient:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    events: queue.Queue[Received] = field(default_factory=queue.Queue)
    response_headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    closed: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SSEClient:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(5, read=30)) as client:
                with connect_sse(client, "GET", self.url, headers=self.headers) as source:
                    self.status = source.response.status_code
                    self.response_headers = dict(source.response.headers)
                    for sse in source.iter_sse():
                        if self._stop.is_set():
                            break
                        if not sse.data:
                            continue  # a bare `retry:` message, as browsers ignore it
                        self.events.put(Received(sse.event, sse.id or None, json.loads(sse.data), time.time()))
        except Exception:  # noqa: BLE001 - the test sees `closed`
            pass
        finally:
            self.closed.set()

    def next(self, timeout: float = 10.0, skip: tuple[str, ...] = ("keepalive",)) -> Received:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no event within {timeout} s")
            try:
                item = self.events.get(timeout=left)
            except queue.Empty:
                raise AssertionError(f"no event within {timeout} s") from None
            if item.event not in skip:
                return item

    def drain(self) -> list[Received]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def stop(self) -> None:
        self._stop.set()
