"""The REST endpoints: sessions, the tracker API, auth, health and metrics.

Every client mistake is a 4xx with ``{"error": "<one sentence>"}``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionwatch.access import identity_of, require
from sessionwatch.engine import Engine
from sessionwatch.errors import ApiError, BadRequest
from sessionwatch.model import PANEL_SETTABLE, Session, encode, to_dict
from sessionwatch.redact import mask
from sessionwatch.sources.hooks.events import HookInputError, UnknownHookEvent, decode_hook
from sessionwatch.store.sqlite import session_id_problem
from sessionwatch.server.fields import Body, Choice, Integer, Number, Strings, Text, takes
from sessionwatch.server.stream import FILTER_PARAMS, parse_filter

MAX_BODY = 1024 * 1024
MAX_ID = 200
MAX_BATCH = 10_000
#: ``"idle" or "running"``: what a tracker may set, for the error that says so.
SETTABLE = " or ".join(f'"{s}"' for s in PANEL_SETTABLE)
#: Process ids are positive and fit a C int everywhere.
MAX_PID = 2**31 - 1


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class OrjsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class SessionsResponse(Response):
    """JSON holding ``model.Session`` structs (model.encode: as orjson wrote the dicts)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode(content)


def engine_of(request: Request) -> Engine:
    e: Engine = request.app.state.engine
    return e


async def read_body(request: Request) -> bytes:
    """The request body, or an ApiError (413) past 1 MiB."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise ApiError(413, "request body is larger than 1 MiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ApiError(413, "request body is larger than 1 MiB")
    return bytes(body)


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or an ApiError saying what is wrong."""
    body = await read_body(request)
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def _session_id(request: Request) -> str:
    sid: str = request.path_params["session_id"]
    if len(sid) > MAX_ID:
        raise ApiError(404, "no such session")
    return sid


async def _shown(engine: Engine, sid: str) -> Session | None:
    """The session as shown; with replicas, one another replica has just
    made may not be read yet: the log is read first."""
    s = engine.hub.sessions.get(sid)
    if s is None and engine.replicated:
        await engine.catch_up()
        s = engine.hub.sessions.get(sid)
    return s


async def _panel_session(engine: Engine, sid: str) -> None:
    s = await _shown(engine, sid)
    if s is None:
        raise ApiError(404, f"no session with id {sid!r}")
    if s.source != "panel":
        raise ApiError(400, "only Panel sessions can be changed through the tracker API")


# --- reading ----------------------------------------------------------------------


#: ``GET /all``'s answer (``Session``: see ``GET /openapi.json``'s components)
ALL_ANSWER = {
    "type": "object",
    "properties": {
        "sessions": {"type": "array", "items": {"$ref": "#/components/schemas/Session"}},
        "last_event_id": {"type": "integer"},
        "timestamp": {"type": "number"},
    },
}


@takes("every session shown (after the filters)", params=FILTER_PARAMS, answer=ALL_ANSWER)
async def all_sessions(request: Request) -> Response:
    hub = engine_of(request).hub
    flt = parse_filter(request)  # BadRequest: 400
    return SessionsResponse(
        {"sessions": hub.snapshot(flt), "last_event_id": hub.last_id, "timestamp": time.time()}
    )


@takes("one session with its recent activity (one-line, masked summaries), pending prompts, budget and kills")
async def session_detail(request: Request) -> Response:
    engine = engine_of(request)
    sid = _session_id(request)
    s = await _shown(engine, sid)
    if s is None:
        raise ApiError(404, f"no session with id {sid!r}")
    detail = to_dict(s)
    if s.source == "claude":
        detail["recent"] = await _recent(engine, sid)
    else:
        row = engine.panel.rows.get(sid)
        detail["recent"] = []
        detail["pid"] = row.pid if row else None
        detail["url"] = mask(row.url) if row and row.url else None
        detail["kills"] = await engine.store.kills(sid)
    detail.update(await request.app.state.control.detail(sid))  # approvals, budget (control/)
    detail.update(await request.app.state.managed.detail(sid))  # a managed session's settings and actions
    return OrjsonResponse(detail)


async def _recent(engine: Engine, sid: str) -> list[dict[str, Any]]:
    return await anyio.to_thread.run_sync(engine.index.recent, sid)


@takes("read every transcript again; broadcasts `refresh`")
async def refresh(request: Request) -> Response:
    engine = engine_of(request)
    await engine.rescan()
    return OrjsonResponse({"sessions": len(engine.hub.sessions), "last_event_id": engine.hub.last_id})


@takes("counts by status, source and host; tokens and cost today, the last 7 days and in all, by model and project")
async def stats(request: Request) -> Response:
    from sessionwatch.server.stats import compute

    engine = engine_of(request)
    now = engine.clock.now()
    body = await engine.read("stats", lambda: compute(engine.hub.sessions, engine.index, engine.prices, now))
    return OrjsonResponse(body)


@takes("liveness")
async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@takes("Prometheus text", media="text/plain")
async def metrics(request: Request) -> Response:
    return Response(
        generate_latest(engine_of(request).metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


# --- Claude Code's hooks ------------------------------------------------------------------


@takes("a Claude Code hook event, as Claude Code sends it; the answer is the hook's output",
       raw={"$ref": "#/components/schemas/HookEvent"}, answer={"type": "object"})
async def hooks(request: Request) -> Response:
    """One hook event as Claude Code sends it; the answer is the hook's output
    (sources/hooks/answer.py). The state is published before the answer is
    asked for: a held PermissionRequest shows while it waits."""
    engine = engine_of(request)
    body = await read_body(request)
    try:
        event = decode_hook(body)
    except UnknownHookEvent:
        return OrjsonResponse({})  # a newer Claude Code's event: nothing to do, no error for it to show
    except HookInputError as exc:
        raise ApiError(400, str(exc)) from None
    hold = engine.answerer.holds(event)
    await engine.hook(event, hold=hold)
    try:
        answer = await engine.answerer.answer(event, engine.hub.sessions.get(event.session_id))
    finally:
        if hold:  # answered, timed out or the hook went away: nothing left to approve from here
            with anyio.CancelScope(shield=True):
                await engine.unhold(event.session_id)
    return OrjsonResponse(answer)


# --- the tracker API ------------------------------------------------------------------


REGISTER = Body(
    Text("app_name", required=True, limit=MAX_ID, example="sales-dashboard"),
    Text("session_id", limit=MAX_ID, description="chosen by the tracker; made up when absent", example="a1b2c3"),
    Integer("pid", low=1, high=MAX_PID, example=4242),
    Text("user_id", limit=MAX_ID, example="ana"),
    Text("host", limit=MAX_ID, example="web-1"),
    Text("url", limit=2000, example="http://web-1:5006/sales"),
    description="a Panel session (sessionwatch.tracker)",
)


@takes("register a tracker session", body=REGISTER, status=201,
       answer={"type": "object", "properties": {"session_id": {"type": "string"}}})
async def register(request: Request) -> Response:
    v = REGISTER.read(await read_json(request))
    sid = v["session_id"]
    if sid is None:
        sid = uuid.uuid4().hex
    problem = session_id_problem(sid)
    if problem is not None:
        raise ApiError(400, problem)
    new = await engine_of(request).register(  # IdTaken: 409
        v["app_name"], session_id=sid, user_id=v["user_id"], host=v["host"], pid=v["pid"], url=v["url"]
    )
    return JSONResponse({"session_id": sid}, status_code=201 if new else 200)


@takes("a tracker session's heartbeat (no event)",
       answer={"type": "object", "properties": {"kill_requested": {"type": "boolean"}}})
async def heartbeat(request: Request) -> Response:
    engine = engine_of(request)
    sid = _session_id(request)
    kill, unknown = await engine.heartbeat([sid])
    if unknown:
        raise ApiError(404, f"no session with id {sid!r}")
    return JSONResponse({"kill_requested": bool(kill)})


HEARTBEATS = Body(Strings("session_ids", required=True, most=MAX_BATCH, example=["a1b2c3"]))


@takes("many tracker sessions' heartbeats at once (no event)", body=HEARTBEATS, answer={
    "type": "object", "properties": {"kill": {"type": "array", "items": {"type": "string"}},
                                     "unknown": {"type": "array", "items": {"type": "string"}}}})
async def heartbeats(request: Request) -> Response:
    ids = HEARTBEATS.read(await read_json(request))["session_ids"]
    kill, unknown = await engine_of(request).heartbeat(ids)
    return JSONResponse({"kill": kill, "unknown": unknown})


STATUS = Body(
    Choice("status", PANEL_SETTABLE, required=True, message=f"status must be {SETTABLE}", example="running"),
    Text("current_task", limit=500, example="rendering the report"),
)


@takes("a tracker session's status and current task", body=STATUS, answer={"$ref": "#/components/schemas/Session"})
async def set_status(request: Request) -> Response:
    engine = engine_of(request)
    sid = _session_id(request)
    v = STATUS.read(await read_json(request))
    await _panel_session(engine, sid)
    if not await engine.set_status(sid, v["status"], v["current_task"]):
        raise ApiError(404, f"no session with id {sid!r}")
    return SessionsResponse(engine.hub.sessions.get(sid))


KILL = Body(Text("by", limit=MAX_ID, description="who asks, as the client says (after the token's name)", example="ana"))


@takes("flag a Panel session for termination (its tracker ends it at its next heartbeat)", body=KILL,
       answer={"type": "object", "properties": {"kill_requested": {"type": "boolean"}}})
async def kill(request: Request) -> Response:
    engine = engine_of(request)
    sid = _session_id(request)
    by = KILL.read(await read_json(request))["by"]
    await _panel_session(engine, sid)
    ident = identity_of(request)
    if ident is None or ident.name == "local":  # no token: what the client says, else its address
        who = by or (request.client.host if request.client else None)
    else:  # the token's name; what the client says of itself after it
        who = f"{ident.name} ({by})" if by else ident.name
    await engine.kill(sid, who)
    return JSONResponse({"kill_requested": True})


@takes("deregister a Panel session (agent), or forget a stopped managed session or ended run (operator)")
async def delete_session(request: Request) -> Response:
    engine = engine_of(request)
    sid = _session_id(request)
    managed = request.app.state.managed
    if managed.knows(sid):  # a stopped managed session or an ended run: forget its record and logs
        from sessionwatch.control.api import actor

        require(request, "operator", "DELETE /sessions/{session_id} of a managed session")
        return JSONResponse(await managed.act("delete", sid, {}, actor(request)))
    await _panel_session(engine, sid)
    await engine.delete([sid])
    return JSONResponse({"deleted": True})


OLDER_THAN = Number("older_than_minutes", "minutes without a heartbeat (default: the server's --stale-after-s)",
                    low=1, unit="minutes")  # 0 would take fresh sessions too (a heartbeat is always some ms old)


@takes("delete Panel sessions without a heartbeat for this long", params=[OLDER_THAN],
       answer={"type": "object", "properties": {"deleted": {"type": "integer"}}})
async def delete_stale(request: Request) -> Response:
    engine = engine_of(request)
    minutes = OLDER_THAN.get(request.query_params)
    older = engine.settings.stale_after_s if minutes is None else minutes * 60
    return JSONResponse({"deleted": await engine.delete_stale(older)})


routes = [
    Route("/all", all_sessions, methods=["GET"]),
    Route("/refresh", refresh, methods=["POST"]),
    Route("/sessions", all_sessions, methods=["GET"]),
    Route("/sessions", register, methods=["POST"]),
    Route("/sessions/stale", delete_stale, methods=["DELETE"]),
    Route("/heartbeats", heartbeats, methods=["POST"]),
    Route("/hooks", hooks, methods=["POST"]),
    Route("/sessions/{session_id}", session_detail, methods=["GET"]),
    Route("/sessions/{session_id}", delete_session, methods=["DELETE"]),
    Route("/sessions/{session_id}/heartbeat", heartbeat, methods=["POST"]),
    Route("/sessions/{session_id}/status", set_status, methods=["PUT"]),
    Route("/sessions/{session_id}/kill", kill, methods=["POST"]),
    Route("/stats", stats, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]

