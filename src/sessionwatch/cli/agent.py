"""``sessionwatch agent``: report this machine's Claude Code sessions to a
central server (sessionwatch/agents/client.py).

It listens on 127.0.0.1 (``--port``, 8765 like ``serve``: ``sessionwatch
hooks install`` with no ``--server`` then points Claude Code's hooks at it)
and pushes to ``--server`` with ``--token``. The server, its modules and
uvicorn load inside :func:`run`.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path
from typing import Any

import msgspec

from sessionwatch.cli import common
from sessionwatch.config import ClientSettings, Settings, log_level
from sessionwatch.errors import ConfigError


def default_queue() -> Path:
    """``<user data dir>/sessionwatch/agent-queue.db``."""
    import platformdirs

    return Path(platformdirs.user_data_dir("sessionwatch", appauthor=False)) / "agent-queue.db"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "agent",
        help="report this machine's sessions to a central server",
        description=(
            "Watch this machine's Claude Code sessions (transcripts, live registry, hooks on "
            "127.0.0.1:--port) and push them to a central sessionwatch server; approvals, budgets "
            "and away mode set there apply here. Every flag also reads SESSIONWATCH_<FLAG>; the flag wins."
        ),
    )
    p.set_defaults(run=run)
    p.add_argument("--server", metavar="URL", help="the central server (default $SESSIONWATCH_URL, else http://127.0.0.1:8765)")
    p.add_argument("--token", help="the central server's token (default $SESSIONWATCH_TOKEN, else none)")
    p.add_argument("--host-name", metavar="NAME", help="this machine's name on the dashboards (default: the machine's host name)")
    p.add_argument("--port", type=common.port, help="the local hooks receiver's port on 127.0.0.1 (default 8765)")
    p.add_argument("--projects-dir", type=Path, metavar="DIR", help="Claude Code transcripts (default ~/.claude/projects)")
    p.add_argument("--claude-dir", type=Path, metavar="DIR", help="where Claude Code keeps sessions/<pid>.json (default: the parent of --projects-dir)")
    p.add_argument(
        "--queue", type=Path, metavar="PATH", help="the local SQLite queue; the agent's own state goes beside it (default <user data dir>/sessionwatch/agent-queue.db)"
    )
    p.add_argument(
        "--approval-wait-s",
        type=common.positive_float,
        help="in away mode, how long a permission request's hook waits for an answer from the central dashboard (default 600)",
    )
    p.add_argument("--log-level", metavar="LEVELS", help="debug, info, warning or error (default info)")


def run(args: argparse.Namespace) -> int:
    from sessionwatch.agents.client import AgentOptions, engine_db
    from sessionwatch.agents.client import run as run_agent
    from sessionwatch.agents.wire import name_problem
    from sessionwatch.cli.serve import _check_port, configure_logging, parse_log_levels

    client = ClientSettings.resolve(url=args.server, token=args.token)
    if not client.url.startswith(("http://", "https://")):
        raise ConfigError(f"--server must be an http(s) URL, got {client.url!r}")
    if client.token is not None and not client.token.strip():
        raise ConfigError("--token must not be empty (leave it out for no token)")
    host_name = args.host_name or os.environ.get("SESSIONWATCH_HOST_NAME") or socket.gethostname()
    problem = name_problem("--host-name", host_name)
    if problem:
        raise ConfigError(problem)
    raw_queue = args.queue or (Path(q) if (q := os.environ.get("SESSIONWATCH_QUEUE")) else None)
    queue = (raw_queue.expanduser() if raw_queue else default_queue()).resolve()
    if queue.is_dir():
        raise ConfigError(f"--queue {queue} is a directory, not a file")
    try:
        queue.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {queue.parent}: {exc.strerror}") from None
    settings = Settings.resolve(
        host="127.0.0.1",
        port=args.port,
        projects_dir=args.projects_dir.expanduser() if args.projects_dir else None,
        claude_dir=args.claude_dir.expanduser() if args.claude_dir else None,
        db=engine_db(queue),
        token="unused",  # the central server's token is not the local receiver's: replaced below
        approval_wait_s=args.approval_wait_s,
    )
    settings = msgspec.structs.replace(settings, token=None)
    level, named = parse_log_levels(log_level(args.log_level))
    _check_port(settings.host, settings.port)
    uvicorn_level = configure_logging(level, named)
    options = AgentOptions(client.url, client.token, host_name, queue)
    print(
        f"sessionwatch agent {host_name}: hooks on http://127.0.0.1:{settings.port}, pushing to {client.url}",
        file=sys.stderr,
    )
    return run_agent(settings, options, uvicorn_level=uvicorn_level)
