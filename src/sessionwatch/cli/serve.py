"""``sessionwatch serve``: the monitor (web dashboard, ``/stream``, ``/all``, tracker API).

uvicorn, Starlette and the server's modules load inside :func:`run`, so
building the parser (which every command does) stays cheap.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sessionwatch.config import DEFAULT_LOG_LEVEL, log_level
from sessionwatch.cli import common
from sessionwatch.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error")


def add_parser(sub: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the monitor (web dashboard, /stream, /all, tracker API)",
        description="Run the monitor. Every flag also reads SESSIONWATCH_<FLAG>; the flag wins.",
    )
    serve.set_defaults(run=run)
    serve.add_argument("--host", help="bind address; non-loopback needs --token (default 127.0.0.1)")
    serve.add_argument("--port", type=common.port, help="port (default 8765)")
    common.add_claude_options(serve)
    serve.add_argument("--claude-dir", type=Path, help="where Claude Code keeps sessions/<pid>.json, its live processes (default: the parent of --projects-dir)")
    serve.add_argument("--db", help="SQLite file (default <user data dir>/sessionwatch/sessionwatch.db), or a postgresql:// URL for replicas")
    serve.add_argument("--token", help="require this token on every endpoint but /healthz (never empty)")
    serve.add_argument(
        "--allowed-hosts",
        action="append",
        metavar="HOSTS",
        help="Host header values accepted besides localhost, 127.0.0.1, ::1 and --host "
        "(DNS-rebinding guard); comma-separated, repeatable; add the public name when "
        "proxied; * accepts any host",
    )
    serve.add_argument(
        "--trusted-proxies",
        action="append",
        metavar="ADDRS",
        help="addresses or networks (CIDR) of proxies whose X-Forwarded-For/-Proto are "
        "believed; comma-separated, repeatable (default none: the headers are ignored)",
    )
    serve.add_argument("--debounce-ms", type=common.non_negative_int, help="watcher debounce (default 500)")
    serve.add_argument("--keepalive-s", type=common.positive_float, help="SSE keepalive period (default 30)")
    serve.add_argument("--stale-after-s", type=common.positive_float, help="Panel session stale after this long without heartbeat (default 120)")
    serve.add_argument(
        "--agent-stale-after-s", type=common.positive_float, help="an agent silent this long has its sessions shown stale (default 60)"
    )
    serve.add_argument("--cleanup-after-s", type=common.positive_float, help="stale Panel session deleted after this long (default 600)")
    serve.add_argument(
        "--approval-wait-s",
        type=common.positive_float,
        help="in away mode, how long a permission request's hook waits for an answer from a dashboard (default 600)",
    )
    serve.add_argument("--max-cost-usd", type=common.positive_float, help="spend cap per Claude session in USD (default none)")
    serve.add_argument(
        "--max-daily-cost-usd", type=common.positive_float, help="spend cap across all Claude sessions per local day in USD (default none)"
    )
    serve.add_argument("--max-managed", type=common.non_negative_int, help="managed Claude Code processes at once (default 10)")
    serve.add_argument(
        "--default-max-cost-usd", type=common.positive_float, help="spend cap of a managed session that names none, in USD (default 10)"
    )
    serve.add_argument(
        "--log-retention-days", type=common.positive_float, help="managed sessions' logs are deleted after this many days (default 7)"
    )
    serve.add_argument(
        "--claude-bin", metavar="PATH", help="the Claude Code CLI managed sessions start (default: claude on PATH, else the one the Agent SDK bundles)"
    )
    serve.add_argument("--workspace-root", type=Path, help="managed sessions may only start in directories under this one (default: anywhere)")
    serve.add_argument(
        "--allow-bypass-permissions",
        action="store_true",
        default=None,
        help='let POST /managed ask for permission_mode "bypassPermissions" (default: refused)',
    )
    serve.add_argument(
        "--webhook",
        action="append",
        metavar="URL",
        help="POST a JSON message here when a session needs approval, ends a turn, fails, ends "
        "or reaches its budget; comma-separated, repeatable (default none)",
    )
    serve.add_argument(
        "--log-level",
        metavar="LEVELS",
        help="debug, info, warning or error for sessionwatch's own logs (others stay at "
        "info unless named: debug,aiosqlite=debug,uvicorn=debug) (default info)",
    )


def parse_log_levels(text: str) -> tuple[str, dict[str, str]]:
    """``"debug,aiosqlite=info"`` → ``("debug", {"aiosqlite": "info"})``.

    The bare level is sessionwatch's own; a ``name=level`` sets that logger.
    """
    level = "info"
    named: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, value = item.rpartition("=")
        value = value.strip().lower()
        if value not in LOG_LEVELS:
            raise ConfigError(f"--log-level: {item!r} is not one of {', '.join(LOG_LEVELS)} (or name=level)")
        if name.strip():
            named[name.strip()] = value
        else:
            level = value
    return level, named


def configure_logging(level: str, named: dict[str, str]) -> str:
    """sessionwatch's loggers at ``level``; every other logger at info or above
    unless named: aiosqlite's debug lines carry SQL parameters, so prompts,
    titles and paths (issue 8, item 15). Returns the level for uvicorn."""
    import logging

    others = level if LOG_LEVELS.index(level) > LOG_LEVELS.index("info") else "info"
    logging.basicConfig(level=others.upper(), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("sessionwatch").setLevel(level.upper())
    for name, value in named.items():
        logging.getLogger(name).setLevel(value.upper())
    # asyncio logs a traceback for every accept() that finds no free file
    # descriptor, thousands a second under a flood: one line a minute.
    from sessionwatch.server.security import OncePerInterval

    logging.getLogger("asyncio").addFilter(OncePerInterval("socket.accept() out of system resource"))
    return named.get("uvicorn", others)


def run(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from sessionwatch.server import security
    from sessionwatch.server.app import create_app
    from sessionwatch.prices import PriceTable

    settings = common.settings(args)
    level, named = parse_log_levels(log_level(args.log_level))
    if settings.prices:
        PriceTable.from_file(settings.prices)  # fail now, in one line, not in the lifespan
    _check_port(settings.host, settings.port)
    if settings.db_url is not None:
        from sessionwatch.store.postgres import import_asyncpg

        import_asyncpg()  # missing: one line now, not in the lifespan
    else:
        try:
            settings.db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {settings.db.parent}: {exc.strerror}") from None
    uvicorn_level = configure_logging(level, named)
    fd_limit = security.raise_fd_limit()
    max_connections = security.max_connections(fd_limit)
    if max_connections < security.STREAM_CLIENTS:
        logging.getLogger("sessionwatch").warning(
            "the open-file limit (%d) leaves room for %d connections, fewer than %d stream "
            "clients; raise it (ulimit -n, or LimitNOFILE= in the systemd unit)",
            fd_limit, max_connections, security.STREAM_CLIENTS,
        )
    app = create_app(settings)
    engine = app.state.engine
    print(f"sessionwatch on http://{settings.host}:{settings.port}  (projects: {settings.projects_dir})", file=sys.stderr)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            engine.request_shutdown()  # open streams end now, not at the timeout
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=security.guarded_protocol(max_connections),
        log_level=uvicorn_level,
        timeout_graceful_shutdown=3,
        timeout_keep_alive=security.KEEP_ALIVE_S,
        access_log=False,
        # X-Forwarded-* only from the proxies named (uvicorn trusts 127.0.0.1 by default).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
    )
    for name, value in named.items():  # uvicorn.Config has just set its own loggers' levels
        logging.getLogger(name).setLevel(value.upper())
    logging.getLogger("uvicorn.error").addFilter(
        lambda record: app.startup_error is None or "startup failed" not in record.getMessage()
    )
    try:
        Server(config).run()
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the signal after a graceful shutdown, as uvicorn.run() expects
    except SystemExit:
        if app.startup_error is None:
            raise
    if app.startup_error is not None:
        print(f"sessionwatch: error: {app.startup_error}", file=sys.stderr)
        return 1
    return 0


def _check_port(host: str, port: int) -> None:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


