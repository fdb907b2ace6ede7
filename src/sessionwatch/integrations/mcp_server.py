"""``sessionwatch mcp``: sessionwatch's sessions as MCP tools, on stdio.

An MCP server built on the official ``mcp`` SDK (its ``MCPServer``, the v1
``FastMCP``: the tools' input schemas come from their annotated signatures),
and a client of a running ``sessionwatch serve``: every tool is one REST call
through :class:`sessionwatch.clients.http.AsyncApi`, so the base URL, the
token and the meaning of each status are those of every other client.

What an agent reads costs it tokens, so the answers are compact JSON: a
session is a one-line summary (id, title, status and why, project, host,
cost, last activity, the managed process, the pending prompt) unless
``verbose`` asks for the whole row; details, logs and stats are trimmed.

Failures are MCP tool errors (``isError`` results) with one sentence: the
API's own for a refused request (``{"error": ...}`` of a 4xx), "no
sessionwatch server at URL: ..." when nothing answers, "... rejected the
token" for a wrong one. None of them ends the process; the next call tries
again.

No resources or prompts: every read takes arguments (filters, paging), which
tools carry and resources do not, and Claude Code hands tools to the model
while a resource waits for a person to @-mention it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Annotated, Any, Final, Literal
from urllib.parse import quote

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from sessionwatch import __version__
from sessionwatch.clients.control import approve_body
from sessionwatch.clients.http import ApiError, AsyncApi, AuthError, ServerUnreachable
from sessionwatch.model import Status

__all__ = ["build_server", "main", "session_summary", "trim_detail", "trim_logs", "trim_stats"]

#: A stop walks interrupt → close stdin → SIGTERM → SIGKILL a few seconds apart.
TIMEOUT_S: Final = 30.0
#: Reads are retried after these delays when the server does not answer (or 5xx);
#: actions are sent once (a 5xx may have done them).
READ_RETRIES: Final = (0.5, 1.0)
TITLE_CHARS: Final = 100
LIST_LIMIT: Final = 50
DETAIL_ITEMS: Final = 10
TOP: Final = 5

LogLevel = Literal["debug", "info", "warn", "error"]
LogKind = Literal["prompt", "reply", "tool", "result", "permission", "system", "raw"]
LogSource = Literal["stdin", "stdout", "stderr", "system"]
PermissionMode = Literal["default", "acceptEdits", "plan", "bypassPermissions"]
#: Every kind but ``raw`` (tool outputs and protocol lines), the default of get_session_logs.
READABLE_KINDS: Final = ("prompt", "reply", "tool", "result", "permission", "system")

SessionId = Annotated[str, Field(description="the session's id, as list_sessions shows it", min_length=1, max_length=200)]

INSTRUCTIONS: Final = (
    "sessionwatch sees every Claude Code session it knows (on this machine and on others that report "
    "to it), Panel app sessions, and the Claude Code sessions it runs itself (managed sessions). "
    "Start with list_sessions; get_session and get_session_logs give one session's detail and "
    "conversation; start_session, send_message, interrupt_session, stop_session, resume_session and "
    "approve drive managed sessions."
)


# --- what an agent reads -------------------------------------------------------------


def _cut(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def _money(value: Any) -> float | None:
    return round(float(value), 4) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _dropped(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` without the keys that say nothing (None, false, empty)."""
    return {k: v for k, v in data.items() if v is not None and v is not False and v != [] and v != {} and v != ""}


def session_summary(s: Mapping[str, Any]) -> dict[str, Any]:
    """One session as list_sessions shows it: what tells sessions apart and what to act on."""
    managed = s.get("managed")
    pending = s.get("pending")
    return _dropped(
        {
            "id": s.get("id"),
            "title": _cut(s.get("title"), TITLE_CHARS),
            "status": s.get("status"),
            "reason": s.get("status_reason"),
            "source": s.get("source"),
            "project": s.get("project"),
            "host": s.get("host"),
            "task": _cut(s.get("current_task"), TITLE_CHARS),
            "cost_usd": _money(s.get("cost_usd")),
            "last_activity": s.get("last_activity"),
            "managed": {"name": managed.get("name"), "state": managed.get("state")} if isinstance(managed, dict) else None,
            "pending": _dropped({"id": pending.get("id"), "tool": pending.get("tool"), "summary": pending.get("summary")})
            if isinstance(pending, dict)
            else None,
            "controls": s.get("controls"),
        }
    )


def select(
    sessions: Sequence[Mapping[str, Any]], *, status: Sequence[str] | None = None, host: str | None = None
) -> list[Mapping[str, Any]]:
    """The sessions with one of ``status`` on ``host`` (case-insensitive), most recently active first."""
    wanted = set(status or ())
    chosen = [
        s
        for s in sessions
        if (not wanted or s.get("status") in wanted) and (host is None or (s.get("host") or "").lower() == host.lower())
    ]
    return sorted(chosen, key=_activity, reverse=True)


def _activity(s: Mapping[str, Any]) -> float:
    """A session's last activity as a Unix time (its ISO text has 0 to 6 decimals), never first."""
    try:
        return datetime.fromisoformat(str(s.get("last_activity"))).timestamp()
    except ValueError:
        return float("-inf")


def trim_detail(detail: Mapping[str, Any], recent: int = DETAIL_ITEMS) -> dict[str, Any]:
    """``GET /sessions/{id}`` without empty fields; its lists cut to their newest entries."""
    out = _dropped(detail)
    out.pop("is_stale", None)
    for key in ("recent", "actions", "approvals", "kills"):
        items = out.get(key)
        if isinstance(items, list):
            keep = recent if key == "recent" else DETAIL_ITEMS
            if keep <= 0:
                out.pop(key)
            elif len(items) > keep:
                out[key] = items[-keep:]
                out[f"{key}_omitted"] = len(items) - keep
    if isinstance(out.get("title"), str):
        out["title"] = _cut(out["title"], 300)
    for key, value in list(out.items()):
        if isinstance(value, dict):
            inner = _dropped(value)
            if inner:
                out[key] = inner
            else:
                out.pop(key)
    return out


def _when(ts: Any) -> Any:
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ts


def trim_logs(body: Mapping[str, Any], limit: int) -> dict[str, Any]:
    """``GET /sessions/{id}/logs``: each line without what is usual (level info, source stdout, no tool)."""
    lines = []
    for line in body.get("logs") or []:
        lines.append(
            _dropped(
                {
                    "id": line.get("id"),
                    "ts": _when(line.get("ts")),
                    "kind": line.get("kind"),
                    "level": None if line.get("level") == "info" else line.get("level"),
                    "source": None if line.get("source") == "stdout" else line.get("source"),
                    "tool": line.get("tool_name"),
                    "cost_usd": _money(line.get("cost_usd")),
                    "content": line.get("content"),
                }
            )
        )
    return {
        "session_id": body.get("session_id"),
        "logs": lines,
        "last_id": body.get("last_id"),
        # a full page: there may be more after last_id
        "more": len(lines) >= limit,
    }


def _top(by: Any) -> dict[str, float | None]:
    if not isinstance(by, dict):
        return {}
    ranked = sorted(by.items(), key=lambda kv: -(kv[1].get("cost_usd") or 0.0) if isinstance(kv[1], dict) else 0.0)
    return {name: _money(v.get("cost_usd")) if isinstance(v, dict) else None for name, v in ranked[:TOP]}


def trim_stats(body: Mapping[str, Any]) -> dict[str, Any]:
    """``GET /stats``: counts that are not zero; per period the tokens, the cost and the
    five most expensive models and projects."""
    sessions = body.get("sessions") or {}
    out: dict[str, Any] = {
        "today": body.get("today"),
        "sessions": {
            "total": sessions.get("total"),
            **{k: {n: c for n, c in (sessions.get(k) or {}).items() if c} for k in ("by_status", "by_source", "by_host")},
        },
        "usage": {},
    }
    for period, usage in (body.get("usage") or {}).items():
        if isinstance(usage, dict):
            out["usage"][period] = _dropped(
                {
                    "cost_usd": _money(usage.get("cost_usd")),
                    "tokens": usage.get("tokens") if any((usage.get("tokens") or {}).values()) else None,
                    "top_models": _top(usage.get("by_model")),
                    "top_projects": _top(usage.get("by_project")),
                }
            )
    if body.get("unpriced_models"):
        out["unpriced_models"] = body["unpriced_models"]
    return out


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def sessions_text(head: Mapping[str, Any], rows: Sequence[Any]) -> str:
    """``{...head, "sessions": [...]}`` with one session per line."""
    body = dumps(dict(head))[:-1]
    if not rows:
        return body + ',"sessions":[]}'
    return body + ',"sessions":[\n' + ",\n".join(dumps(r) for r in rows) + "\n]}"


# --- the calls -------------------------------------------------------------------------


class Calls:
    """The REST calls behind the tools, each failure turned into one tool error."""

    def __init__(self, api: AsyncApi) -> None:
        self.api = api

    async def json(
        self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None, read: bool = False
    ) -> Any:
        api = self.api
        try:
            response = await api.request(method, path, json=body, params=params, retries=READ_RETRIES if read else ())
        except AuthError as exc:
            raise ToolError(
                f"the sessionwatch server at {api.base_url} rejected the token ({exc.status}): "
                "give `sessionwatch mcp` the server's token with --token or SESSIONWATCH_TOKEN"
            ) from None
        except ServerUnreachable as exc:
            if exc.status is None:
                raise ToolError(
                    f"no sessionwatch server at {api.base_url}: {exc.reason} "
                    "(start one with `sessionwatch serve`, or point `sessionwatch mcp --server` at it)"
                ) from None
            raise ToolError(f"the sessionwatch server at {api.base_url} failed: {exc.reason}") from None
        except ApiError as exc:
            raise ToolError(f"{exc.sentence} ({exc.status})") from None
        try:
            return response.json()
        except ValueError:
            raise ToolError(f"the sessionwatch server at {api.base_url} answered something that is not JSON") from None


def _sid(session_id: str) -> str:
    return "/sessions/" + quote(session_id, safe="")


READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ADD = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
CHANGE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)


def build_server(api: AsyncApi) -> MCPServer[Any]:
    """The MCP server whose tools call the sessionwatch server behind ``api``."""
    calls = Calls(api)
    server: MCPServer[Any] = MCPServer(
        name="sessionwatch",
        title="sessionwatch",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
    )

    @server.tool(annotations=READ, structured_output=False)
    async def list_sessions(
        status: Annotated[
            list[Status] | None,
            Field(description="only sessions in one of these statuses (needs_approval: waiting for a permission answer)"),
        ] = None,
        source: Annotated[Literal["claude", "panel"] | None, Field(description="only Claude Code or only Panel sessions")] = None,
        project: Annotated[str | None, Field(description="only projects whose path contains this text (case-insensitive)")] = None,
        host: Annotated[str | None, Field(description="only sessions reported from this machine (sessions of the server's own machine have no host)")] = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="at most this many, most recently active first")] = LIST_LIMIT,
        verbose: Annotated[bool, Field(description="whole Session objects (tokens, model, branch, ...) instead of one-line summaries")] = False,
    ) -> str:
        """List the sessions sessionwatch knows: Claude Code sessions (on any machine that reports
        to it, including the ones it runs itself) and Panel app sessions, most recently active first.
        Each is a summary: id, title, status and its reason, project, host, cost in USD, last activity,
        the managed process (name, state) if sessionwatch runs it, the pending permission prompt
        (its id is what approve needs) and the controls that apply now."""
        params = {k: v for k, v in (("source", source), ("project", project)) if v}
        body = await calls.json("GET", "/all", params=params or None, read=True)
        chosen = select(body.get("sessions") or [], status=status, host=host)
        rows = chosen[:limit]
        head = {"total": len(chosen), "shown": len(rows)}
        return sessions_text(head, [dict(s) if verbose else session_summary(s) for s in rows])

    @server.tool(annotations=READ, structured_output=False)
    async def get_session(
        session_id: SessionId,
        recent: Annotated[int, Field(ge=0, le=100, description="how many of the newest activity entries (prompts, replies, tools) to include")] = DETAIL_ITEMS,
        verbose: Annotated[bool, Field(description="the whole detail as the API returns it")] = False,
    ) -> str:
        """One session in detail: the Session fields (tokens, model, branch, cost, status and
        reason, pending prompt, controls), its recent activity, and for a managed session how it
        was started and every action taken on it. Empty fields are left out."""
        detail = await calls.json("GET", _sid(session_id), read=True)
        return dumps(detail if verbose else trim_detail(detail, recent))

    @server.tool(annotations=READ, structured_output=False)
    async def get_session_logs(
        session_id: SessionId,
        after: Annotated[int, Field(ge=0, description="only lines after this log id (the last_id of the previous page)")] = 0,
        limit: Annotated[int, Field(ge=1, le=1000, description="at most this many lines, oldest first")] = 100,
        level: Annotated[LogLevel | None, Field(description="only this level and above")] = None,
        kind: Annotated[
            list[LogKind] | None,
            Field(description="only these kinds; default every kind but raw (tool outputs and protocol lines)"),
        ] = None,
        source: Annotated[list[LogSource] | None, Field(description="only lines from these streams of the process")] = None,
    ) -> str:
        """The log of a session sessionwatch runs (a managed session or a `sessionwatch run`):
        prompts, replies, tool calls, turn results with their cost, permission requests, system
        lines. Page with after=last_id while more is true."""
        params = {"after": str(after), "limit": str(limit), "kind": ",".join(kind or READABLE_KINDS)}
        if level:
            params["level"] = level
        if source:
            params["source"] = ",".join(source)
        body = await calls.json("GET", _sid(session_id) + "/logs", params=params, read=True)
        return dumps(trim_logs(body, limit))

    @server.tool(annotations=READ, structured_output=False)
    async def session_stats(
        verbose: Annotated[bool, Field(description="every model and project, as the API returns them")] = False,
    ) -> str:
        """Totals across every session: how many by status, source and host; tokens and cost in
        USD today, in the last 7 days and overall, with the most expensive models and projects."""
        body = await calls.json("GET", "/stats", read=True)
        return dumps(body if verbose else trim_stats(body))

    @server.tool(annotations=CHANGE, structured_output=False)
    async def delete_session(session_id: SessionId) -> str:
        """Forget a session: a stopped managed session or an ended run (its record and logs; the
        audit stays), or a Panel session (deregistered). Claude Code's own transcripts are never
        deleted."""
        return dumps(await calls.json("DELETE", _sid(session_id)))

    @server.tool(annotations=ADD, structured_output=False)
    async def start_session(
        prompt: Annotated[str, Field(min_length=1, description="the first message to Claude Code")],
        cwd: Annotated[str, Field(min_length=1, description="absolute path of an existing directory to run in")],
        name: Annotated[str | None, Field(description="a short name, unique among running managed sessions")] = None,
        model: Annotated[str | None, Field(description="the model, e.g. claude-sonnet-4-5 (default: Claude Code's)")] = None,
        system_prompt: Annotated[str | None, Field(description="appended to Claude Code's own system prompt")] = None,
        max_cost_usd: Annotated[float | None, Field(ge=0, description="spend cap in USD; past it the session is stopped (default: the server's)")] = None,
        permission_mode: Annotated[
            PermissionMode | None,
            Field(description="default: tools that need permission wait for approve; acceptEdits: file edits allowed; plan: no changes"),
        ] = None,
        allowed_tools: Annotated[list[str] | None, Field(description='tools allowed without asking, like ["Read", "Bash(git:*)"]')] = None,
        max_turns: Annotated[int | None, Field(ge=1, le=10000, description="stop after this many agent turns")] = None,
    ) -> str:
        """Start a new Claude Code session that sessionwatch runs and watches (a managed session).
        Returns its session_id and name at once; follow it with get_session / get_session_logs,
        talk to it with send_message, answer its permission prompts with approve."""
        body: dict[str, Any] = {"prompt": prompt, "cwd": cwd}
        optional = {
            "name": name, "model": model, "system_prompt": system_prompt, "max_cost_usd": max_cost_usd,
            "permission_mode": permission_mode, "allowed_tools": allowed_tools, "max_turns": max_turns,
        }  # fmt: skip
        body.update({k: v for k, v in optional.items() if v is not None})
        return dumps(await calls.json("POST", "/managed", body=body))

    @server.tool(annotations=ADD, structured_output=False)
    async def send_message(
        session_id: SessionId,
        text: Annotated[str, Field(min_length=1, description="the message")],
    ) -> str:
        """Send a message to a managed session; one sent during a turn waits for that turn to end."""
        return dumps(await calls.json("POST", _sid(session_id) + "/messages", body={"text": text}))

    @server.tool(annotations=CHANGE, structured_output=False)
    async def interrupt_session(session_id: SessionId) -> str:
        """End a managed session's current turn (like Escape); its process stays for the next message."""
        return dumps(await calls.json("POST", _sid(session_id) + "/interrupt", body={}))

    @server.tool(annotations=CHANGE, structured_output=False)
    async def stop_session(session_id: SessionId) -> str:
        """Stop a managed session's process (its record and logs stay; resume_session starts it
        again), or ask a `sessionwatch run` to stop."""
        return dumps(await calls.json("POST", _sid(session_id) + "/stop", body={}))

    @server.tool(annotations=ADD, structured_output=False)
    async def resume_session(
        session_id: SessionId,
        text: Annotated[str | None, Field(description="a message to continue with")] = None,
    ) -> str:
        """Start a stopped managed session again under its id, with its conversation."""
        return dumps(await calls.json("POST", _sid(session_id) + "/resume", body={"text": text} if text else {}))

    @server.tool(annotations=ADD, structured_output=False)
    async def approve(
        session_id: SessionId,
        pending_id: Annotated[str, Field(min_length=1, description="the id of the session's pending prompt (list_sessions or get_session shows it)")],
        decision: Annotated[Literal["allow", "deny"], Field(description="allow or deny the tool call")],
        message: Annotated[str | None, Field(description="with deny: why, told to Claude")] = None,
    ) -> str:
        """Answer a session's pending permission prompt (status needs_approval): allow or deny
        the tool call it waits on."""
        body = approve_body(pending_id, decision, message)
        return dumps(await calls.json("POST", _sid(session_id) + "/approve", body=body))

    return server


async def serve(url: str, token: str | None) -> None:
    """Speak MCP on stdin/stdout until stdin closes."""
    async with AsyncApi(url, token, timeout_s=TIMEOUT_S) as api:
        await build_server(api).run_stdio_async()


def main(url: str, token: str | None) -> None:
    anyio.run(serve, url, token)
