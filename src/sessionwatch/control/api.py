"""The routes of control: ``GET``/``PUT /away``, ``POST /sessions/{id}/approve``,
``PUT /sessions/{id}/budget`` (their roles: server/auth.py ``ROUTE_ROLES``).
Every change is recorded with who (the token's name), when and from where."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionwatch.access import identity_of
from sessionwatch.control.core import DECISIONS, Control, Decision, NotPending, UnknownSession
from sessionwatch.errors import ApiError
from sessionwatch.server.api import _session_id, read_json
from sessionwatch.server.fields import Body, Choice, Dollars, Flag, Text, takes
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


@takes("whether away mode is on, and the permission prompts waiting for an answer here")
async def get_away(request: Request) -> Response:
    return JSONResponse(await control_of(request).away_json())


AWAY = Body(Flag("on", required=True, message="on must be true or false", example=True))


@takes("away mode: while on, permission prompts wait for an answer here (up to --approval-wait-s)", body=AWAY)
async def put_away(request: Request) -> Response:
    on: bool = AWAY.read(await read_json(request))["on"]
    return JSONResponse(await control_of(request).set_away(on, actor(request)))


APPROVE = Body(
    Text("pending_id", required=True, limit=200, description="the prompt's id, as `pending` shows it", example="p_1"),
    Choice("decision", DECISIONS, required=True, message='decision must be "allow" or "deny"', example="allow"),
    Text("message", limit=MAX_MESSAGE, description="told to the model with a deny", example="not on main"),
)


@takes("answer a permission prompt; 409 if it is no longer pending", body=APPROVE)
async def approve(request: Request) -> Response:
    sid = _session_id(request)
    v = APPROVE.read(await read_json(request))
    chosen: Decision = "allow" if v["decision"] == "allow" else "deny"
    try:
        answer = await control_of(request).approve(sid, v["pending_id"], chosen, v["message"] or None, actor(request))
    except UnknownSession as exc:
        raise ApiError(404, str(exc)) from None
    except NotPending as exc:
        raise ApiError(409, str(exc)) from None
    return JSONResponse(answer)


BUDGET = Body(Dollars(
    "max_cost_usd", required=True, example=5.0, description="null: the server's default",
    missing="max_cost_usd is required (a number of dollars, or null for the server's default)",
    wrong="max_cost_usd must be a number of dollars, 0 or more, or null",
))


@takes("a session's spend cap", body=BUDGET)
async def put_budget(request: Request) -> Response:
    sid = _session_id(request)
    cap = BUDGET.read(await read_json(request))["max_cost_usd"]
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
