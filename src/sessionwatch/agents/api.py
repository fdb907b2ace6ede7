"""The server's agent routes: ``POST /agents/push`` (agent role once tokens
have roles; ``--token`` today), ``GET /agents/{agent}/commands`` (the agent's
long poll for what comes down to it) and ``GET /agents`` (who reports)."""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionwatch.agents.registry import AgentRegistry
from sessionwatch.agents.wire import PUSH_SCHEMA, name_problem, parse_push
from sessionwatch.errors import ApiError
from sessionwatch.server.api import read_json
from sessionwatch.server.fields import Number, Whole, takes

#: The longest a commands request waits for something to send.
MAX_WAIT_S: Final = 60.0


def agents_of(request: Request) -> AgentRegistry:
    a: AgentRegistry = request.app.state.agents
    return a


@takes("an agent's batch: its machine's sessions changed, deleted, or all of them (sync)", raw=PUSH_SCHEMA)
async def push(request: Request) -> Response:
    batch = parse_push(await read_json(request))
    return JSONResponse(await agents_of(request).push(batch))


AFTER = Whole("after", "the last command id the agent has", low=0, high=2**62, default=0)
WAIT = Number("wait", "seconds to wait for a command (default 25)", low=0, high=MAX_WAIT_S, unit="seconds")


@takes("an agent's long poll for what comes down to it (approvals, budgets, kills)", params=[AFTER, WAIT])
async def commands(request: Request) -> Response:
    agent = request.path_params["agent"]
    problem = name_problem("the agent id", agent)
    if problem:
        raise ApiError(404, problem)
    after = AFTER.get(request.query_params)
    wait = WAIT.get(request.query_params)
    return JSONResponse(await agents_of(request).commands(agent, after, 25.0 if wait is None else wait))


@takes("the agents that report, their hosts, last sign of life and sessions")
async def list_agents(request: Request) -> Response:
    reg = agents_of(request)
    listed = [(a, st.host, st.seq, st.last_seen, st.stale) for a, st in sorted(reg.agents.items())]
    if reg.engine.replicated:
        # replicas: each one hears only the batches nginx sends it; the database has every agent's
        listed = sorted(await reg.engine.store.agent_states())
    return JSONResponse(
        {
            "agents": [
                {"agent": a, "host": host, "seq": seq, "last_seen": seen, "stale": stale, "sessions": reg.count(a)}
                for a, host, seq, seen, stale in listed
            ],
            "stale_after_s": reg.stale_after_s,
        }
    )


routes = [
    Route("/agents", list_agents, methods=["GET"]),
    Route("/agents/push", push, methods=["POST"]),
    Route("/agents/{agent}/commands", commands, methods=["GET"]),
]
