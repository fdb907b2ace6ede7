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
from sessionwatch.server.api import _dollars, _int, _session_id, _str, engine_of, read_json
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


def _cap(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    dollars = _dollars(value)
    if dollars is None:
        raise ApiError(400, f"{key} must be a number of dollars, 0 or more")
    return dollars


def _arg(data: dict[str, Any], key: str, *, required: bool = False, limit: int = 1000) -> str | None:
    """A string that goes on Claude Code's command line (or is a path): no NUL character."""
    value = _str(data, key, required=required, limit=limit)
    if value is not None and "\x00" in value:
        raise ApiError(400, f"{key} must not contain a NUL character")
    return value


def _tools(data: dict[str, Any]) -> tuple[str, ...]:
    value = data.get("allowed_tools")
    if value is None:
        return ()
    if isinstance(value, str):
        value = [t for t in value.split(",")]
    if not isinstance(value, list) or len(value) > 100 or not all(
        isinstance(t, str) and t.strip() and len(t) <= 200 and "\x00" not in t for t in value
    ):
        raise ApiError(400, 'allowed_tools must be a list of tool names, like ["Read", "Bash(git:*)"]')
    return tuple(t.strip() for t in value)


def start_request(data: dict[str, Any]) -> StartRequest:
    """``POST /managed``'s body, or a 400 saying what is wrong."""
    known = {"prompt", "cwd", "name", "model", "system_prompt", "max_cost_usd", "permission_mode", "allowed_tools", "max_turns"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(known))})")
    prompt = _str(data, "prompt", required=True, limit=MAX_PROMPT)
    cwd = _arg(data, "cwd", required=True, limit=4096)
    name = _str(data, "name", limit=100)
    if name is not None and not name.strip():
        raise ApiError(400, "name must not be empty")
    mode = _str(data, "permission_mode", limit=40)
    if mode is not None and mode not in PERMISSION_MODES:
        raise ApiError(400, f"permission_mode must be one of {', '.join(PERMISSION_MODES[:3])} (or bypassPermissions, when the server allows it)")
    assert prompt is not None and cwd is not None
    return StartRequest(
        prompt=prompt,
        cwd=cwd,
        name=name.strip() if name else None,
        model=_arg(data, "model", limit=200) or None,
        system_prompt=_arg(data, "system_prompt", limit=MAX_PROMPT) or None,
        max_cost_usd=_cap(data, "max_cost_usd"),
        permission_mode=mode,
        allowed_tools=_tools(data),
        max_turns=_int(data, "max_turns", low=1, high=10_000),
    )


async def start(request: Request) -> Response:
    req = start_request(await read_json(request))
    rec = await manager_of(request).start(req, actor(request))
    return JSONResponse({"session_id": rec.id, "name": rec.name}, status_code=201)


async def messages(request: Request) -> Response:
    sid = _session_id(request)
    text = _str(await read_json(request), "text", required=True, limit=MAX_PROMPT)
    assert text is not None
    return JSONResponse(await manager_of(request).act("messages", sid, {"text": text}, actor(request)), status_code=202)


async def interrupt(request: Request) -> Response:
    sid = _session_id(request)
    await read_json(request)
    return JSONResponse(await manager_of(request).act("interrupt", sid, {}, actor(request)))


async def stop(request: Request) -> Response:
    sid = _session_id(request)
    await read_json(request)
    return JSONResponse(await manager_of(request).act("stop", sid, {}, actor(request)))


async def resume(request: Request) -> Response:
    sid = _session_id(request)
    text = _str(await read_json(request), "text", limit=MAX_PROMPT)
    return JSONResponse(await manager_of(request).act("resume", sid, {"text": text or None}, actor(request)))


def log_query(request: Request, sid: str) -> LogQuery:
    q = request.query_params

    def number(name: str, default: int, low: int, high: int) -> int:
        raw = q.get(name)
        if raw is None or raw == "":
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ApiError(400, f"{name} must be a whole number from {low} to {high}")
        return int(raw)

    def choices(name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
        values = tuple(v for raw in q.getlist(name) for v in raw.split(",") if v)
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ApiError(400, f"{name} must be one of {', '.join(allowed)}, got {bad[0]!r}")
        return values

    level = q.get("level") or None
    if level is not None and level not in LOG_LEVELS:
        raise ApiError(400, f"level must be one of {', '.join(LOG_LEVELS)} (that level and above)")
    return LogQuery(
        session_id=sid,
        after=number("after", 0, 0, 2**62),
        limit=number("limit", 200, 1, MAX_LOGS),
        min_level=level,
        sources=choices("source", LOG_SOURCES),
        kinds=choices("kind", KINDS),
    )


async def logs(request: Request) -> Response:
    sid = _session_id(request)
    manager = manager_of(request)
    query = log_query(request, sid)
    if not manager.knows(sid):
        raise ApiError(404, f"no managed session or run with id {sid!r}")
    follow = request.query_params.get("follow")
    if follow not in (None, "", "0", "1", "true", "false"):
        raise ApiError(400, "follow must be 1 or 0")
    if follow in ("1", "true"):
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
            raise ApiError(400, "each log line must be an object")
        ts, level, source, kind, content = x.get("ts"), x.get("level"), x.get("source"), x.get("kind"), x.get("content")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
            raise ApiError(400, "a log line's ts must be a Unix time")
        if level not in LOG_LEVELS or source not in LOG_SOURCES or kind not in KINDS:
            raise ApiError(400, f"a log line's level, source or kind is not one of {LOG_LEVELS}, {LOG_SOURCES}, {KINDS}")
        if not isinstance(content, str):
            raise ApiError(400, "a log line's content must be a string")
        tool = x.get("tool_name")
        cost = x.get("cost_usd")
        out.append({
            "ts": float(ts), "level": level, "source": source, "kind": kind, "content": content[:4096],
            "tool_name": tool[:200] if isinstance(tool, str) else None,
            "cost_usd": float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) and math.isfinite(cost) else None,
        })  # fmt: skip
    return out


async def runs(request: Request) -> Response:
    """``POST /runs``: a ``sessionwatch run`` reports its process (agent role)."""
    data = await read_json(request)
    sid = _str(data, "session_id", required=True, limit=128)
    assert sid is not None
    problem = session_id_problem(sid)
    if problem:
        raise ApiError(400, problem)
    state = data.get("state")
    if state not in RUN_STATES:
        raise ApiError(400, f"state must be one of {', '.join(RUN_STATES)}")
    figures = data.get("figures", {})
    if figures is None:
        figures = {}
    if not isinstance(figures, dict):
        raise ApiError(400, "figures must be an object")
    clean: dict[str, Any] = {
        "state": state,
        "name": _str(data, "name", limit=100),
        "cwd": _str(data, "cwd", limit=4096),
        "status_reason": _str(data, "status_reason", limit=120),
        "model": _str(data, "model", limit=200),
        "current_task": _str(data, "current_task", limit=1000),
        "pid": _int(data, "pid", low=0, high=2**31),
        "exit_code": _int(data, "exit_code", low=-255, high=255),
        "figures": {
            "total_cost_usd": _cap(figures, "total_cost_usd"),
            "num_turns": _int(figures, "num_turns", low=0, high=10**9) or 0,
            "duration_ms": _int(figures, "duration_ms", low=0, high=2**62),
        },
        "logs": _run_logs(data.get("logs")),
        "user": actor(request).who,
    }
    if "max_cost_usd" in data:
        clean["max_cost_usd"] = _cap(data, "max_cost_usd")
    return JSONResponse(await manager_of(request).act("report", sid, clean, actor(request)))


routes = [
    Route("/managed", start, methods=["POST"]),
    Route("/runs", runs, methods=["POST"]),
    Route("/sessions/{session_id}/messages", messages, methods=["POST"]),
    Route("/sessions/{session_id}/interrupt", interrupt, methods=["POST"]),
    Route("/sessions/{session_id}/stop", stop, methods=["POST"]),
    Route("/sessions/{session_id}/resume", resume, methods=["POST"]),
    Route("/sessions/{session_id}/logs", logs, methods=["GET"]),
]
