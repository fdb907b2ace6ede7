"""The ``sessionwatch`` command.

A user mistake is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

# Only what every command needs is imported here: `scan` is timed against
# ccusage with process start-up included (DESIGN.md "Speed and size"), so the
# server's modules (uvicorn, Starlette, prometheus_client, aiosqlite, logging)
# load in `serve`, orjson when JSON is printed.
from sessionwatch import __version__
from sessionwatch.config import Settings
from sessionwatch.errors import ConfigError, SessionwatchError

LOG_LEVELS = ("debug", "info", "warning", "error")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return value


def _int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="sessionwatch",
        description="See every live Claude Code and Panel session as it happens.",
    )
    parser.add_argument("--version", action="version", version=f"sessionwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    serve = sub.add_parser(
        "serve",
        help="run the monitor (web dashboard, /stream, /all, tracker API)",
        description="Run the monitor. Every flag also reads SESSIONWATCH_<FLAG>; the flag wins.",
    )
    serve.add_argument("--host", help="bind address; non-loopback needs --token (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port (default 8765)")
    _common(serve)
    serve.add_argument("--db", type=Path, help="SQLite file (default <user data dir>/sessionwatch/sessionwatch.db)")
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
    serve.add_argument("--debounce-ms", type=_int, help="watcher debounce (default 500)")
    serve.add_argument("--keepalive-s", type=_positive_float, help="SSE keepalive period (default 30)")
    serve.add_argument("--stale-after-s", type=_positive_float, help="Panel session stale after this long without heartbeat (default 120)")
    serve.add_argument("--cleanup-after-s", type=_positive_float, help="stale Panel session deleted after this long (default 600)")
    serve.add_argument(
        "--log-level",
        metavar="LEVELS",
        help="debug, info, warning or error for sessionwatch's own logs (others stay at "
        "info unless named: debug,aiosqlite=debug,uvicorn=debug); default info",
    )

    scan = sub.add_parser(
        "scan",
        help="print Claude Code sessions once, without a server",
        description="Read every transcript once and print its sessions (no server, no database).",
    )
    _common(scan)
    scan.add_argument("--json", action="store_true", help="print JSON ({\"sessions\": [...], \"totals\": {...}})")

    dash = sub.add_parser(
        "dashboard",
        help="serve the Panel dashboard for a running monitor",
        description="Serve the Panel dashboard, a client of a running `sessionwatch serve`.",
    )
    dash.add_argument("--server-url", default=None, help="monitor URL (default $SESSIONWATCH_URL or http://127.0.0.1:8765)")
    dash.add_argument("--port", type=_port, default=5007, help="dashboard port (default 5007)")
    dash.add_argument("--token", default=None, help="the monitor's token (default $SESSIONWATCH_TOKEN)")
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--projects-dir", type=Path, help="Claude Code transcripts (default ~/.claude/projects)")
    p.add_argument("--idle-after-s", type=_positive_float, help="Claude session idle after this long unchanged (default 300)")
    p.add_argument("--prices", type=Path, help="JSON price table replacing the embedded one and genai-prices' bundled data")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "scan":
            return scan(args)
        if args.command == "dashboard":
            return dashboard(args)
    except SessionwatchError as exc:
        print(f"sessionwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`sessionwatch scan --json | head`): stop
        # quietly, with the status of a program ended by SIGPIPE (128 + 13),
        # and point stdout at /dev/null so the exit's flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return 2


def _settings(args: argparse.Namespace) -> Settings:
    if getattr(args, "db", None):
        db: Path | None = args.db.expanduser()
    elif args.command == "scan":
        db = Path(os.devnull)  # scan opens no database: no need to find the user data dir
    else:
        db = None
    return Settings.resolve(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        projects_dir=args.projects_dir.expanduser() if args.projects_dir else None,
        db=db,
        token=getattr(args, "token", None),
        allowed_hosts=getattr(args, "allowed_hosts", None),
        trusted_proxies=getattr(args, "trusted_proxies", None),
        debounce_ms=getattr(args, "debounce_ms", None),
        keepalive_s=getattr(args, "keepalive_s", None),
        stale_after_s=getattr(args, "stale_after_s", None),
        cleanup_after_s=getattr(args, "cleanup_after_s", None),
        idle_after_s=args.idle_after_s,
        prices=args.prices.expanduser() if args.prices else None,
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


def serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from sessionwatch.server import security
    from sessionwatch.server.app import create_app
    from sessionwatch.prices import PriceTable

    settings = _settings(args)
    level, named = parse_log_levels(args.log_level or os.environ.get("SESSIONWATCH_LOG_LEVEL") or "info")
    if settings.prices:
        PriceTable.from_file(settings.prices)  # fail now, in one line, not in the lifespan
    _check_port(settings.host, settings.port)
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
    monitor = app.state.monitor
    print(f"sessionwatch on http://{settings.host}:{settings.port}  (projects: {settings.projects_dir})", file=sys.stderr)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            monitor.request_shutdown()  # open streams end now, not at the timeout
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


def scan(args: argparse.Namespace) -> int:
    from sessionwatch.sources.claude.index import ClaudeIndex
    from sessionwatch.metrics import Tally
    from sessionwatch.prices import PriceTable

    settings = _settings(args)
    if not settings.projects_dir.is_dir():
        raise ConfigError(f"--projects-dir {settings.projects_dir} does not exist")
    prices = PriceTable.from_file(settings.prices) if settings.prices else PriceTable.embedded()
    progress = _progress if sys.stderr.isatty() else None
    index = ClaudeIndex(
        settings.projects_dir, prices, idle_after_s=settings.idle_after_s, progress=progress, metrics=Tally()
    )
    index.settle_s = 0.0  # a one-shot read: an unterminated last line is final
    started = time.perf_counter()
    index.scan()
    now = time.time()
    sessions = [s for sid in index.session_ids() if (s := index.session(sid, now)) is not None]
    sessions.sort(key=lambda s: s["last_activity"] or "", reverse=True)
    if progress is not None:
        print(f"\r{len(sessions)} sessions in {time.perf_counter() - started:.2f} s" + " " * 20, file=sys.stderr)
    if args.json:
        import orjson

        sys.stdout.buffer.write(
            orjson.dumps({"sessions": sessions, "totals": _totals(sessions)}, option=orjson.OPT_INDENT_2)
        )
        sys.stdout.buffer.write(b"\n")
    else:
        _print_table(sessions)
    sys.stdout.flush()  # a closed pipe fails here, inside main()'s handler, not at exit
    return 0


def _progress(done: int, total: int) -> None:
    print(f"\rreading transcripts: {done}/{total}", end="", file=sys.stderr, flush=True)


def _totals(sessions: list[dict[str, Any]]) -> dict[str, Any]:
    tokens = {"input": 0, "output": 0, "cache_creation": 0, "cache_read": 0}
    cost = 0.0
    unpriced = 0
    for s in sessions:
        for k in tokens:
            tokens[k] += s["tokens"][k]
        if s["cost_usd"] is None:
            unpriced += 1
        else:
            cost += s["cost_usd"]
    return {"sessions": len(sessions), "tokens": tokens, "cost_usd": round(cost, 6), "unpriced_sessions": unpriced}


def _print_table(sessions: list[dict[str, Any]]) -> None:
    header = f"{'STATUS':8} {'LAST ACTIVITY':20} {'TOKENS':>12} {'COST':>9}  PROJECT / TITLE"
    print(header)
    for s in sessions:
        t = s["tokens"]
        total = t["input"] + t["output"] + t["cache_creation"] + t["cache_read"]
        cost = "-" if s["cost_usd"] is None else f"${s['cost_usd']:.2f}"
        last = (s["last_activity"] or "")[:19].replace("T", " ")
        print(f"{s['status']:8} {last:20} {total:>12,} {cost:>9}  {s['project']}  {s['title'] or ''}"[:200])


def dashboard(args: argparse.Namespace) -> int:
    try:
        from sessionwatch.integrations.panel import dashboard as dash
    except ImportError as exc:
        raise ConfigError(f"the Panel dashboard needs Panel: pip install 'sessionwatch[panel]' ({exc})") from None
    url = args.server_url or os.environ.get("SESSIONWATCH_URL") or "http://127.0.0.1:8765"
    token = args.token or os.environ.get("SESSIONWATCH_TOKEN")
    dash.main(url, args.port, token)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
