"""``GET /stream``: Server-Sent Events from the hub, through sse-starlette.

sse-starlette's own ping is off (``ping=0``): the monitor runs one keepalive
timer for the whole server instead of one task per connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from sessionwatch.errors import SessionwatchError
from sessionwatch.hub import Filter, Hub

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class BadRequest(SessionwatchError):
    """A client sent something we cannot use; answered with 400."""


def parse_filter(request: Request) -> Filter:
    source = request.query_params.get("source") or None
    if source is not None and source not in ("claude", "panel"):
        raise BadRequest('source must be "claude" or "panel"')
    project = request.query_params.get("project") or None
    return Filter(source, project)


def parse_last_event_id(request: Request) -> int | None:
    raw = request.query_params.get("last_event_id")
    if raw is not None:
        try:
            return int(raw)
        except ValueError:
            raise BadRequest("last_event_id must be an integer") from None
    header = request.headers.get("last-event-id")
    if header:
        try:
            return int(header)
        except ValueError:
            return None  # an id we never sent: start over with init
    return None


async def _messages(hub: Hub, flt: Filter, last_id: int | None) -> AsyncIterator[bytes]:
    # Subscribe when the response starts streaming, so a request that never
    # gets that far leaves no subscriber behind.
    sub = hub.subscribe(flt, last_id)
    try:
        while True:
            chunk = await sub.next()
            if chunk is None:
                return
            yield chunk
    finally:
        hub.unsubscribe(sub)


def stream_response(request: Request, hub: Hub) -> Response:
    flt = parse_filter(request)
    last_id = parse_last_event_id(request)
    return EventSourceResponse(
        _messages(hub, flt, last_id),
        headers=HEADERS,
        ping=0,
        send_timeout=30,
    )
