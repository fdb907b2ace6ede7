"""The routes of control: ``GET``/``PUT /away``, ``POST /sessions/{id}/approve``,
``PUT /sessions/{id}/budget`` (their roles: server/auth.py ``ROUTE_ROLES``).
Every change is recorded with who (the token's name), when and from where."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionwatch.access import identity_of
from sessionwatch.control.core import DECISIONS, Control, Decision, NotPending, UnknownSession
from sessionwatch.errors import ApiError
from sessionwatch.server.api import _dollars, _session_id, _str, read_json
from sessionwatch.store.base import Actor

#: The longest ``message`` a deny may carry to the model.
MAX_MESSAGE = 2000
MAX_HEADER = 300


def control_of(request: Request) -> Control:
    c: Control = request.app.state.control
    return c


def actor(request: Request) -> Actor:
    """Who is asking: the token's name (a named token's, "admin" for the
    ``--token``, "local" when the server has no token), the client address
    (the proxy's client behind ``--trusted-proxies``), and ``Origin`` /
    ``User-Agent`` when sent."""
    ident = identity_of(request)  # server/auth.py TokenMiddleware put it there
    h = request.headers
    return Actor(
        who=ident.name if ident is not None else "local",
        address=request.client.host if request.client else None,
        origin=(h.get("origin") or None) and h["origin"][:MAX_HEADER],
        user_agent=(h.get("user-agent") or None) and h["user-agent"][:MAX_HEADER],
    )


async def get_away(request: Request) -> Response:
    return JSONResponse(await control_of(request).away_json())


async def put_away(request: Request) -> Response:
    data = await read_json(request)
    on = data.get("on")
    if not isinstance(on, bool):
        raise ApiError(400, "on must be true or false")
    return JSONResponse(await control_of(request).set_away(on, actor(request)))


async def approve(request: Request) -> Response:
    sid = _session_id(request)
    data = await read_json(request)
    pending_id = _str(data, "pending_id", required=True, limit=200)
    decision = data.get("decision")
    if decision not in DECISIONS:
        raise ApiError(400, 'decision must be "allow" or "deny"')
    message = _str(data, "message", limit=MAX_MESSAGE)
    assert pending_id is not None
    chosen: Decision = "allow" if decision == "allow" else "deny"
    try:
        answer = await control_of(request).approve(sid, pending_id, chosen, message or None, actor(request))
    except UnknownSession as exc:
        raise ApiError(404, str(exc)) from None
    except NotPending as exc:
        raise ApiError(409, str(exc)) from None
    return JSONResponse(answer)


def _cap(data: dict[str, Any]) -> float | None:
    if "max_cost_usd" not in data:
        raise ApiError(400, "max_cost_usd is required (a number of dollars, or null for the server's default)")
    value = data["max_cost_usd"]
    if value is None:
        return None
    dollars = _dollars(value)
    if dollars is None:
        raise ApiError(400, "max_cost_usd must be a number of dollars, 0 or more, or null")
    return dollars


async def put_budget(request: Request) -> Response:
    sid = _session_id(request)
    cap = _cap(await read_json(request))
    try:
        return JSONResponse(await control_of(request).set_budget(sid, cap, actor(request)))
    except UnknownSession as exc:
        raise ApiError(404, str(exc)) from None


routes = [
    Route("/away", get_away, methods=["GET"]),
    Route("/away", put_away, methods=["PUT"]),
    Route("/sessions/{session_id}/approve", approve, methods=["POST"]),
    Route("/sessions/{session_id}/budget", put_budget, methods=["PUT"]),
]
