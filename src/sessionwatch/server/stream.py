"""``GET /stream``: Server-Sent Events from the hub.

Two ways to serve a connection, chosen by ``SESSIONWATCH_STREAM_BACKEND``:

- ``lean`` (default): :class:`LeanSSEResponse`, the request's own task
  writing the hub's pre-encoded bytes, plus one small task waiting for the
  client to go away. Measured at about 15 KiB per idle connection (14.8 KiB
  with 10,000 idle clients), which is what makes 10,000 clients fit the
  contract's 16 KiB each (docs/benchmarks.md, "memory per SSE connection").
- ``sse-starlette``: sse-starlette's ``EventSourceResponse``, which runs a task
  group of three tasks per connection (about 48 KiB each, measured the same way).

Both send the same bytes. sse-starlette's own ping is off (``ping=0``) and the
monitor runs one keepalive timer for the whole server instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sessionwatch.hub.core import Hub
from sessionwatch.model import SOURCES, STATUSES
from sessionwatch.hub.events import Filter
from sessionwatch.server.fields import AnyOf, OneOf, Takes, Word

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: A client that cannot take one chunk in this long is dropped.
SEND_TIMEOUT_S = 30.0
BACKENDS = ("lean", "sse-starlette")


SOURCE = OneOf("source", SOURCES, "only sessions of this source",
               message="source must be " + " or ".join(f'"{s}"' for s in SOURCES))
PROJECT = Word("project", "only sessions of this project")
HOST = Word("host", "only sessions on this host")
STATUS = AnyOf("status", STATUSES, "only sessions in these statuses (comma-separated, or repeated)",
               message=f"status must be one or more of {', '.join(STATUSES)} (comma-separated), got {{bad!r}}")
#: The filters of ``/stream``, ``/all`` and ``/sessions``.
FILTER_PARAMS = (SOURCE, PROJECT, HOST, STATUS)
LAST_EVENT_ID = Word("last_event_id", "resume after this event id (or the Last-Event-ID header); an id that "
                     "is not one this deployment gave gets `init`, never an error")

#: ``GET /stream`` for ``GET /openapi.json``: served ahead of Starlette (server/app.py).
STREAM = Takes(
    "Server-Sent Events: `init`, then `session-created` / `-updated` / `-deleted`, `refresh`, `keepalive`",
    None, None, (*FILTER_PARAMS, LAST_EVENT_ID), None, 200, "text/event-stream",
)


def parse_filter(request: Request) -> Filter:
    q = request.query_params
    source = SOURCE.get(q)
    statuses = STATUS.get(q)
    return Filter(source, PROJECT.get(q), HOST.get(q), frozenset(statuses) if statuses else None)


def parse_last_event_id(request: Request) -> int | None:
    """The id to resume after (``?last_event_id=`` wins over the header), or None.

    An id that is not a number is one we never sent: the client starts over
    with ``init``. Never an error: a browser's EventSource takes any answer
    but 200 as final and stops reconnecting for good (issue 8, item 22). An
    id past the latest, or one another server (or an earlier run of this one)
    gave, gets ``init`` from the hub the same way (``Hub.resume``).
    """
    raw = LAST_EVENT_ID.get(request.query_params) or request.headers.get("last-event-id")
    if not raw or len(raw) > 20:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


async def _messages(hub: Hub, flt: Filter, last_id: int | None) -> AsyncIterator[bytes]:
    # Subscribe when the response starts streaming, so a request that never
    # gets that far leaves no subscriber behind.
    sub = await hub.resume(flt, last_id)
    try:
        while True:
            chunk = await sub.next()
            if chunk is None:
                return
            yield chunk
    finally:
        hub.unsubscribe(sub)


class LeanSSEResponse(Response):
    """An event stream with one task per connection plus a disconnect waiter."""

    media_type = "text/event-stream"

    def __init__(self, hub: Hub, flt: Filter, last_id: int | None) -> None:
        # No Response.__init__: it would declare a Content-Length of 0.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            (b"connection", b"keep-alive"),
        ]
        self.hub = hub
        self.filter = flt
        self.last_id = last_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        if scope.get("method") == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        sub = await self.hub.resume(self.filter, self.last_id)
        # The only other task: notice the client leaving even while nothing is sent.
        gone = asyncio.ensure_future(_until_disconnect(receive))
        gone.add_done_callback(lambda _: sub.close())
        try:
            while True:
                chunk = await sub.next()
                if chunk is None:
                    break
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not gone.done():
                await send({"type": "http.response.body", "body": b""})
        except (TimeoutError, OSError):
            pass  # a client too slow to take a chunk, or gone: it reconnects and resumes
        finally:
            gone.cancel()
            with suppress(asyncio.CancelledError):
                await gone
            self.hub.unsubscribe(sub)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def stream_response(request: Request, hub: Hub, backend: str = "lean") -> Response:
    flt = parse_filter(request)
    last_id = parse_last_event_id(request)
    if backend == "lean":
        return LeanSSEResponse(hub, flt, last_id)
    return EventSourceResponse(
        _messages(hub, flt, last_id),
        headers=HEADERS,
        ping=0,
        send_timeout=30,
    )
