"""The routes of managed sessions and runs: ``POST /managed``,
``POST /sessions/{id}/messages|interrupt|stop|resume``, ``GET
/sessions/{id}/logs`` (``?follow=1``: SSE), ``POST /runs`` (a ``sessionwatch
run`` reporting). ``DELETE /sessions/{id}`` of a managed session and ``POST
/sessions/{id}/approve`` of its permission requests go through the routes
that already exist (server/api.py, control/api.py). Every action is recorded
with who, when and from where."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sessionwatch.control.api import actor
from sessionwatch.errors import ApiError
from sessionwatch.managed.manager import Manager, StartRequest
from sessionwatch.managed.protocol import LOG_SOURCES, PERMISSION_MODES
from sessionwatch.server.api import _session_id, engine_of, read_json
from sessionwatch.server.fields import AnyOf, Body, Choice, Custom, Dollars, Integer, Nested, OneOf, Text, Whole, takes
from sessionwatch.store.base import LOG_LEVELS, LogQuery
from sessionwatch.store.schema import session_id_problem

#: The longest prompt or message sent to Claude Code.
MAX_PROMPT: Final = 100_000
MAX_LOGS: Final = 1000
KINDS: Final = ("prompt", "reply", "tool", "result", "permission", "system", "raw")
RUN_STATES: Final = ("starting", "running", "waiting", "ended", "failed")


def manager_of(request: Request) -> Manager:
    m: Manager = request.app.state.managed
    return m


def _tools(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [t for t in value.split(",")]
    if not isinstance(value, list) or len(value) > 100 or not all(
        isinstance(t, str) and t.strip() and len(t) <= 200 and "\x00" not in t for t in value
    ):
        raise ApiError(400, 'allowed_tools must be a list of tool names, like ["Read", "Bash(git:*)"]')
    return tuple(t.strip() for t in value)


#: ``allowed_tools`` as :func:`_tools` reads it.
TOOLS_SCHEMA = {
    "oneOf": [
        {"type": "array", "maxItems": 100, "items": {"type": "string", "minLength": 1, "maxLength": 200}},
        {"type": "string", "description": "comma-separated"},
        {"type": "null"},
    ]
}
START = Body(
    Text("prompt", required=True, limit=MAX_PROMPT, example="Fix the failing test"),
    Text("cwd", required=True, limit=4096, no_nul=True, example="/srv/app"),
    Text("name", limit=100, nonblank=True, example="fix-tests"),
    Choice("permission_mode", PERMISSION_MODES, example="default", message=(
        f"permission_mode must be one of {', '.join(PERMISSION_MODES[:3])} (or bypassPermissions, when the server allows it)")),
    Text("model", limit=200, no_nul=True, example="claude-sonnet-4-5"),
    Text("system_prompt", limit=MAX_PROMPT, no_nul=True),
    Dollars("max_cost_usd", wrong="max_cost_usd must be a number of dollars, 0 or more", example=2.0,
            description="the spend cap (default: the server's --default-max-cost-usd)"),
    Custom("allowed_tools", _tools, TOOLS_SCHEMA, example=["Read", "Bash(git:*)"]),
    Integer("max_turns", low=1, high=10_000, example=20),
    closed=True,
    description="a Claude Code session sessionwatch starts and runs",
)


def start_request(data: dict[str, Any]) -> StartRequest:
    """``POST /managed``'s body, or a 400 saying what is wrong."""
    v = START.read(data)
    return StartRequest(
        prompt=v["prompt"],
        cwd=v["cwd"],
        name=v["name"].strip() if v["name"] else None,
        model=v["model"] or None,
        system_prompt=v["system_prompt"] or None,
        max_cost_usd=v["max_cost_usd"],
        permission_mode=v["permission_mode"],
        allowed_tools=v["allowed_tools"],
        max_turns=v["max_turns"],
    )


@takes("start a Claude Code session", body=START, status=201,
       answer={"type": "object", "properties": {"session_id": {"type": "string"}, "name": {"type": "string"}}})
async def start(request: Request) -> Response:
    req = start_request(await read_json(request))
    rec = await manager_of(request).start(req, actor(request))
    return JSONResponse({"session_id": rec.id, "name": rec.name}, status_code=201)


MESSAGE = Body(Text("text", required=True, limit=MAX_PROMPT, example="Now run the linter"))
NOTHING = Body()
RESUME = Body(Text("text", limit=MAX_PROMPT, description="sent once it runs again", example="Go on"))


@takes("send a managed session a message", body=MESSAGE, status=202)
async def messages(request: Request) -> Response:
    sid = _session_id(request)
    text = MESSAGE.read(await read_json(request))["text"]
    return JSONResponse(await manager_of(request).act("messages", sid, {"text": text}, actor(request)), status_code=202)


@takes("end a managed session's current turn", body=NOTHING)
async def interrupt(request: Request) -> Response:
    sid = _session_id(request)
    NOTHING.read(await read_json(request))
    return JSONResponse(await manager_of(request).act("interrupt", sid, {}, actor(request)))


@takes("stop a managed session's process", body=NOTHING)
async def stop(request: Request) -> Response:
    sid = _session_id(request)
    NOTHING.read(await read_json(request))
    return JSONResponse(await manager_of(request).act("stop", sid, {}, actor(request)))


@takes("start a stopped managed session again (--resume)", body=RESUME)
async def resume(request: Request) -> Response:
    sid = _session_id(request)
    text = RESUME.read(await read_json(request))["text"]
    return JSONResponse(await manager_of(request).act("resume", sid, {"text": text or None}, actor(request)))


LOG_AFTER = Whole("after", "lines after this log id", low=0, high=2**62, default=0)
LOG_LIMIT = Whole("limit", "at most this many lines", low=1, high=MAX_LOGS, default=200)
LOG_LEVEL = OneOf("level", LOG_LEVELS, "this level and above",
                  message=f"level must be one of {', '.join(LOG_LEVELS)} (that level and above)")
LOG_SOURCE = AnyOf("source", LOG_SOURCES, "only these sources, comma-separated",
                   message=f"source must be one of {', '.join(LOG_SOURCES)}, got {{bad!r}}")
LOG_KIND = AnyOf("kind", KINDS, "only these kinds, comma-separated",
                 message=f"kind must be one of {', '.join(KINDS)}, got {{bad!r}}")
LOG_FOLLOW = OneOf("follow", ("0", "1", "true", "false"), "1: follow them as Server-Sent Events (`event: log`)",
                   message="follow must be 1 or 0")


def log_query(request: Request, sid: str) -> LogQuery:
    q = request.query_params
    level = LOG_LEVEL.get(q)
    return LogQuery(
        session_id=sid,
        after=LOG_AFTER.get(q),
        limit=LOG_LIMIT.get(q),
        min_level=level,
        sources=LOG_SOURCE.get(q),
        kinds=LOG_KIND.get(q),
    )


@takes("a managed session's or run's logs (masked)",
       params=(LOG_AFTER, LOG_LIMIT, LOG_LEVEL, LOG_SOURCE, LOG_KIND, LOG_FOLLOW))
async def logs(request: Request) -> Response:
    sid = _session_id(request)
    manager = manager_of(request)
    query = log_query(request, sid)
    follow = LOG_FOLLOW.get(request.query_params) in ("1", "true")
    if not manager.knows(sid):
        raise ApiError(404, f"no managed session or run with id {sid!r}")
    if follow:
        keepalive = engine_of(request).settings.keepalive_s
        return StreamingResponse(
            _sse(manager, query, keepalive),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    lines = await manager.logs(query)
    return JSONResponse({"session_id": sid, "logs": lines, "last_id": lines[-1]["id"] if lines else query.after})


async def _sse(manager: Manager, query: LogQuery, keepalive_s: float) -> AsyncIterator[bytes]:
    yield b": logs\n\n"
    async for batch in manager.follow(query, keepalive_s):
        if not batch:
            yield b"event: keepalive\ndata: {}\n\n"
            continue
        for line in batch:
            yield b"id: %d\nevent: log\ndata: %s\n\n" % (line["id"], orjson.dumps(line))


def _run_logs(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 1000:
        raise ApiError(400, "logs must be a list of at most 1000 lines")
    out = []
    for x in value:
        if not isinstance(x, dict):
            raise ApiError(400, "each line of logs must be an object")
        ts, level, source, kind, content = x.get("ts"), x.get("level"), x.get("source"), x.get("kind"), x.get("content")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
            raise ApiError(400, "a line of logs: its ts must be a Unix time")
        if level not in LOG_LEVELS or source not in LOG_SOURCES or kind not in KINDS:
            raise ApiError(400, f"a line of logs: its level, source or kind is not one of {LOG_LEVELS}, {LOG_SOURCES}, {KINDS}")
        if not isinstance(content, str):
            raise ApiError(400, "a line of logs: its content must be a string")
        tool = x.get("tool_name")
        cost = x.get("cost_usd")
        out.append({
            "ts": float(ts), "level": level, "source": source, "kind": kind, "content": content[:4096],
            "tool_name": tool[:200] if isinstance(tool, str) else None,
            "cost_usd": float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) and math.isfinite(cost) else None,
        })  # fmt: skip
    return out


#: ``logs`` as :func:`_run_logs` reads them.
RUN_LOGS_SCHEMA = {
    "type": ["array", "null"],
    "maxItems": 1000,
    "items": {
        "type": "object",
        "required": ["ts", "level", "source", "kind", "content"],
        "properties": {
            "ts": {"type": "number"}, "level": {"enum": list(LOG_LEVELS)}, "source": {"enum": list(LOG_SOURCES)},
            "kind": {"enum": list(KINDS)}, "content": {"type": "string"},
            "tool_name": {"type": ["string", "null"]}, "cost_usd": {"type": ["number", "null"]},
        },
    },
}
RUN = Body(
    Text("session_id", required=True, limit=128, example="0d9c3f4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f"),
    Choice("state", RUN_STATES, required=True, message=f"state must be one of {', '.join(RUN_STATES)}",
           example="running"),
    Nested("figures", Body(
        Dollars("total_cost_usd", wrong="total_cost_usd must be a number of dollars, 0 or more"),
        Integer("num_turns", low=0, high=10**9),
        Integer("duration_ms", low=0, high=2**62),
    )),
    Text("name", limit=100, example="nightly-fix"),
    Text("cwd", limit=4096, example="/srv/app"),
    Text("status_reason", limit=120),
    Text("model", limit=200),
    Text("current_task", limit=1000),
    Integer("pid", low=0, high=2**31),
    Integer("exit_code", low=-255, high=255),
    Custom("logs", _run_logs, RUN_LOGS_SCHEMA),
    Dollars("max_cost_usd", wrong="max_cost_usd must be a number of dollars, 0 or more",
            description="absent: unchanged"),
    description="a `sessionwatch run` reporting its process",
)


@takes("a `sessionwatch run` reports its process; the answer says whether to stop", body=RUN)
async def runs(request: Request) -> Response:
    """``POST /runs``: a ``sessionwatch run`` reports its process (agent role)."""
    data = await read_json(request)
    v = RUN.read(data)
    problem = session_id_problem(v["session_id"])
    if problem:
        raise ApiError(400, problem)
    figures = v["figures"]
    clean: dict[str, Any] = {
        key: v[key] for key in ("state", "name", "cwd", "status_reason", "model", "current_task", "pid", "exit_code")
    } | {
        "figures": {
            "total_cost_usd": figures["total_cost_usd"],
            "num_turns": figures["num_turns"] or 0,
            "duration_ms": figures["duration_ms"],
        },
        "logs": v["logs"],
        "user": actor(request).who,
    }
    if "max_cost_usd" in data:
        clean["max_cost_usd"] = v["max_cost_usd"]
    return JSONResponse(await manager_of(request).act("report", v["session_id"], clean, actor(request)))


routes = [
    Route("/managed", start, methods=["POST"]),
    Route("/runs", runs, methods=["POST"]),
    Route("/sessions/{session_id}/messages", messages, methods=["POST"]),
    Route("/sessions/{session_id}/interrupt", interrupt, methods=["POST"]),
    Route("/sessions/{session_id}/stop", stop, methods=["POST"]),
    Route("/sessions/{session_id}/resume", resume, methods=["POST"]),
    Route("/sessions/{session_id}/logs", logs, methods=["GET"]),
]
